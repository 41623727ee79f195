"""Policy test cases (`lockgate policy test FILE`): input -> expected decision.

A cases file is a YAML list. Each case names one input and what should happen:

    - name: weather lookups are fine
      tenant: demo                   # default "test"; also agent, headers, policies
      request: {model: m, messages: [{role: user, content: "weather in Paris?"}]}
      expect: {action: allow}
    - name: writes need a human
      tool_call: {name: database_write, arguments: {table: users}}
      expect: {action: require_approval, rule: database-writes}
    - name: keys never leave
      response: "your key is sk-..."
      expect: {action: redact, output: "your key is [REDACTED]"}

`expect.action` is the outcome (allow, deny, require_approval; for a response also
redact). `rule` is the deciding rule (or, for allow, a rule that must have matched),
`decisions` lists rules that must all have matched, `error_code` and `output` check
the 403 code and the filtered response text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from gateway.policy.facts import RequestFacts
from gateway.policy.loader import PolicySet
from gateway.policy.model import Decision
from gateway.yamlsrc import Problem, YamlError, line_of, load_yaml

_CASE_KEYS = {"name", "tenant", "agent", "headers", "policies", "api", "model", "request", "tool_call",
              "response", "expect"}
_EXPECT_KEYS = {"action", "rule", "decisions", "error_code", "output"}
_INPUTS = ("request", "tool_call", "response")


@dataclass(frozen=True, slots=True)
class CaseResult:
    name: str
    passed: bool
    why: str
    line: int = 0


@dataclass
class CaseReport:
    file: str
    results: list[CaseResult] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems and all(result.passed for result in self.results)

    def summary(self) -> str:
        lines = [str(problem) for problem in self.problems]
        for result in self.results:
            mark = "PASS" if result.passed else "FAIL"
            lines.append(f"{mark} {result.name}" + ("" if result.passed else f" ({self.file}:{result.line}): "
                                                     f"{result.why}"))
        passed = sum(result.passed for result in self.results)
        lines.append(f"{passed}/{len(self.results)} cases passed")
        return "\n".join(lines)


@dataclass
class _Outcome:
    action: str
    decisions: list[Decision]
    deciding: Decision | None = None
    error_code: str | None = None
    output: str | None = None


def run_cases(policy_set: PolicySet, cases_file: Path) -> CaseReport:
    report = CaseReport(str(cases_file))
    try:
        cases = load_yaml(cases_file)
    except YamlError as exc:
        report.problems.append(exc.problem)
        return report
    if not isinstance(cases, list):
        report.problems.append(Problem(str(cases_file), 1, "", "a cases file is a list of cases (- name: ...)"))
        return report
    for index, case in enumerate(cases):
        line = line_of(cases, index)
        problem = _case_problem(case)
        if problem:
            report.problems.append(Problem(str(cases_file), line, f"[{index}]", problem))
            continue
        try:
            outcome = _run(policy_set, case)
        except KeyError as exc:  # a policy the case names is not loaded
            report.results.append(CaseResult(case["name"], False, str(exc.args[0]), line))
            continue
        why = _mismatch(case["expect"], outcome)
        report.results.append(CaseResult(case["name"], why is None, why or "", line))
    return report


def _case_problem(case: Any) -> str | None:
    if not isinstance(case, dict):
        return "a case is a mapping with name, an input (request, tool_call or response) and expect"
    unknown = set(case) - _CASE_KEYS
    if unknown:
        return f"unknown key(s) {', '.join(map(str, sorted(unknown)))}; a case takes {', '.join(sorted(_CASE_KEYS))}"
    if not isinstance(case.get("name"), str):
        return "every case needs a 'name'"
    inputs = [key for key in _INPUTS if key in case]
    if len(inputs) > 1 and inputs != ["request", "tool_call"]:
        return "give one input: request, tool_call or response (a tool_call may come with its request)"
    if not inputs:
        return "a case needs an input: request, tool_call or response"
    expect = case.get("expect")
    if not isinstance(expect, dict) or "action" not in expect or set(expect) - _EXPECT_KEYS:
        return f"'expect' is a mapping with 'action' and optionally {', '.join(sorted(_EXPECT_KEYS - {'action'}))}"
    return None


def _facts(case: dict) -> RequestFacts:
    body = case.get("request") or {}
    api = case.get("api") or ("responses" if "input" in body else "chat")
    if "request" not in case:
        body = {"model": case.get("model", "test-model"), "messages": []}
    return RequestFacts(
        tenant=str(case.get("tenant", "test")),
        agent=case.get("agent"),
        alias=str(case.get("model") or body.get("model") or "test-model"),
        api=api,
        body=body,
        headers=case.get("headers") or {},
    )


def _run(policy_set: PolicySet, case: dict) -> _Outcome:
    policies = policy_set.for_tenant(case.get("policies") or [])
    facts = _facts(case)
    if "tool_call" in case:
        call = case["tool_call"] or {}
        arguments = call.get("arguments", {})
        text = arguments if isinstance(arguments, str) else orjson.dumps(arguments).decode()
        verdict = policies.evaluate_tool_call(facts, str(call.get("name", "")), text)
        return _Outcome(verdict.outcome, verdict.decisions, verdict.deciding)
    if "response" in case:
        text_filter = policies.response_text_filter(facts)
        if text_filter is None:
            return _Outcome("allow", [], output=str(case["response"]))
        output = text_filter.whole(str(case["response"]))
        text_filter.close()
        action = "deny" if text_filter.failure else ("redact" if text_filter.changed else "allow")
        return _Outcome(action, text_filter.decisions, text_filter.failure, output=output)
    verdict = policies.evaluate_request(facts)
    return _Outcome(verdict.outcome, verdict.decisions, verdict.deciding, verdict.error_code)


def _mismatch(expect: dict, outcome: _Outcome) -> str | None:
    """Why the outcome does not meet the expectation, or None."""
    matched = [decision.rule for decision in outcome.decisions]
    if expect["action"] != outcome.action:
        return f"expected {expect['action']}, got {outcome.action} (matched: {', '.join(matched) or 'no rule'})"
    rule = expect.get("rule")
    if rule is not None:
        actual = outcome.deciding.rule if outcome.deciding else None
        if actual != rule and not (outcome.deciding is None and rule in matched):
            return f"expected rule '{rule}', got '{actual or ', '.join(matched) or 'no rule'}'"
    missing = [name for name in expect.get("decisions") or () if name not in matched]
    if missing:
        return f"rules {', '.join(missing)} did not match (matched: {', '.join(matched) or 'none'})"
    if "error_code" in expect and expect["error_code"] != outcome.error_code:
        return f"expected error code {expect['error_code']}, got {outcome.error_code}"
    if "output" in expect and expect["output"] != outcome.output:
        return f"expected output {expect['output']!r}, got {outcome.output!r}"
    return None
