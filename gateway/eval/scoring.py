"""Scoring one answer against its case: correct, partial or incorrect, and why.

Pure: a `Case` and an `Outcome` (what the gateway answered) in, a `Score` out. The
rules, documented in docs/eval.md:

- exact: the answer, trimmed, equals one of the expected strings. No partial.
- contains / regex: every expected fragment (pattern) is found: correct; some: partial;
  none: incorrect.
- json_schema: the answer (or the JSON inside a ``` fence) parses and validates: correct;
  parses but breaks the schema: partial; not JSON: incorrect.
- tool_call: a call to the expected tool whose arguments contain the expected ones:
  correct; the right tool with other arguments: partial; no call or another tool: incorrect.
- refusal: the policy blocked it (a 403 `policy_violation` / `approval_required`, a `deny`
  decision in `X-Lockgate-Policies`, or a tool call replaced by the policy's text), by one
  of the expected rules if any are named: correct; by another rule: partial; not blocked:
  incorrect.
- judge: graded by `gateway.eval.judge` from the judge's score.

A request that failed is incorrect, except that a policy refusal is the right answer to a
refusal case. Partial counts half towards accuracy (`CREDIT`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from gateway.eval.dataset import Case, ToolExpectation
from gateway.eval.schema import violations

CORRECT, PARTIAL, INCORRECT = "correct", "partial", "incorrect"
VERDICTS = (CORRECT, PARTIAL, INCORRECT)
CREDIT = {CORRECT: 1.0, PARTIAL: 0.5, INCORRECT: 0.0}
POLICY_FAILURE = "policy"

_FENCE = re.compile(r"```(?:json)?\s*\n?(.*?)```", re.DOTALL | re.IGNORECASE)
_RULE_IN_MESSAGE = re.compile(r"rule '([^']+)'", re.IGNORECASE)
_REPLACED_CALL = re.compile(r"Tool call '[^']*' was (?:blocked by|not approved \()policy rule '([^']+)'")
_DETAIL_LIMIT = 160


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a request got no answer: the kind (see `runner.failure_kind`), HTTP status, envelope code."""

    kind: str
    message: str
    status: int | None = None
    code: str | None = None


@dataclass(frozen=True, slots=True)
class ToolCall:
    name: str
    arguments: str
    """As the model sent it: JSON text, maybe invalid."""


@dataclass(frozen=True, slots=True)
class Outcome:
    answer: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    policies: tuple[str, ...] = ()
    """The `X-Lockgate-Policies` labels: `policy/rule=action`, `~shadow` for shadow rules."""
    failure: Failure | None = None


@dataclass(frozen=True, slots=True)
class Score:
    verdict: str
    detail: str = ""
    judge_score: float | None = field(default=None)


def score(case: Case, outcome: Outcome) -> Score:
    """The verdict for every match type but `judge` (which needs the judge's grade)."""
    if case.match == "refusal":
        return _refusal(case.expected, outcome)
    if outcome.failure is not None:
        return Score(INCORRECT, f"{outcome.failure.kind}: {_short(outcome.failure.message)}")
    return _SCORERS[case.match](case, outcome)


def blocking_rule(outcome: Outcome) -> str | None:
    """The rule that blocked the request or a tool call (`policy/rule` when known), else None."""
    refused = outcome.failure is not None and outcome.failure.kind == POLICY_FAILURE
    # An approval that was granted also leaves a require_approval label: it blocked only if the call failed.
    blocking = ("deny", "require_approval") if refused else ("deny",)
    for label in outcome.policies:
        name, _, action = label.partition("=")
        if name and action in blocking:
            return name
    if refused:
        assert outcome.failure is not None
        found = _RULE_IN_MESSAGE.search(outcome.failure.message)
        return found.group(1) if found else "(unnamed rule)"
    replaced = _REPLACED_CALL.search(outcome.answer)
    return replaced.group(1) if replaced else None


def _refusal(expected_rules: tuple[str, ...], outcome: Outcome) -> Score:
    rule = blocking_rule(outcome)
    if rule is None:
        if outcome.failure is not None:
            return Score(INCORRECT, f"not refused by a policy but failed: {outcome.failure.kind}: "
                                    f"{_short(outcome.failure.message)}")
        return Score(INCORRECT, f"not refused; answered {_answer_summary(outcome)}")
    if not expected_rules or any(rule in (wanted, wanted.rpartition("/")[2]) or
                                 rule.rpartition("/")[2] == wanted for wanted in expected_rules):
        return Score(CORRECT, f"refused by {rule}")
    return Score(PARTIAL, f"refused by {rule}, expected {' or '.join(expected_rules)}")


def _exact(case: Case, outcome: Outcome) -> Score:
    answer = _fold(outcome.answer.strip(), case.ignore_case)
    if any(answer == _fold(wanted.strip(), case.ignore_case) for wanted in case.expected):
        return Score(CORRECT, "exact match")
    return Score(INCORRECT, f"answered {_answer_summary(outcome)}")


def _fragments(case: Case, outcome: Outcome) -> Score:
    answer = _fold(outcome.answer, case.ignore_case)
    if case.match == "regex":
        missing = [pattern.pattern for pattern in case.expected if not pattern.search(outcome.answer)]
    else:
        missing = [fragment for fragment in case.expected if _fold(fragment, case.ignore_case) not in answer]
    total = len(case.expected)
    if not missing:
        return Score(CORRECT, f"all {total} found" if total > 1 else "found")
    listing = ", ".join(repr(item) for item in missing)
    verdict = INCORRECT if len(missing) == total else PARTIAL
    return Score(verdict, _short(f"{total - len(missing)} of {total} found; missing {listing}"))


def _json_schema(case: Case, outcome: Outcome) -> Score:
    try:
        document = parse_json_answer(outcome.answer)
    except ValueError:
        return Score(INCORRECT, f"not JSON: {_answer_summary(outcome)}")
    broken = violations(document, case.expected)
    if broken:
        more = f" (+{len(broken) - 1} more)" if len(broken) > 1 else ""
        return Score(PARTIAL, _short(f"JSON, but {broken[0]}{more}"))
    return Score(CORRECT, "valid JSON, matches the schema")


def parse_json_answer(answer: str) -> Any:
    """The answer as JSON, or the JSON inside its first ``` fence; ValueError when neither parses."""
    fenced = _FENCE.search(answer)
    for text in (answer, fenced.group(1) if fenced else None):
        if text is not None and text.strip():
            try:
                return json.loads(text)
            except json.JSONDecodeError:
                continue
    raise ValueError("the answer is not JSON")


def _tool_call(case: Case, outcome: Outcome) -> Score:
    expected: ToolExpectation = case.expected
    if not outcome.tool_calls:
        return Score(INCORRECT, f"no tool call; answered {_answer_summary(outcome)}")
    named = [call for call in outcome.tool_calls if call.name == expected.name]
    if not named:
        called = ", ".join(call.name for call in outcome.tool_calls)
        return Score(INCORRECT, f"called {called}, expected {expected.name}")
    if expected.arguments is None:
        return Score(CORRECT, f"called {expected.name}")
    for call in named:
        try:
            arguments = json.loads(call.arguments or "{}")
        except json.JSONDecodeError:
            continue
        if contains_subset(arguments, expected.arguments):
            return Score(CORRECT, f"called {expected.name} with the expected arguments")
    return Score(PARTIAL, _short(f"called {expected.name} with {named[0].arguments}, expected "
                                 f"{json.dumps(expected.arguments)}"))


def contains_subset(actual: Any, expected: Any) -> bool:
    """`expected` is found in `actual`: mappings key by key (recursively), anything else equal as JSON."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(key in actual and contains_subset(actual[key], value)
                                                for key, value in expected.items())
    if isinstance(expected, bool) or isinstance(actual, bool):
        return actual is expected
    return bool(actual == expected)


def _fold(text: str, ignore_case: bool) -> str:
    return text.casefold() if ignore_case else text


def _answer_summary(outcome: Outcome) -> str:
    if outcome.answer.strip():
        return repr(_short(outcome.answer.strip(), 80))
    if outcome.tool_calls:
        return "with a call to " + ", ".join(call.name for call in outcome.tool_calls)
    return "nothing"


def _short(text: str, limit: int = _DETAIL_LIMIT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


_SCORERS = {
    "exact": _exact,
    "contains": _fragments,
    "regex": _fragments,
    "json_schema": _json_schema,
    "tool_call": _tool_call,
}
