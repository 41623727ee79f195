"""Evaluation: one tenant's rules applied to a request, a tool call, or response text.

The order is the contract (docs/policies.md, "Evaluation order"): the tenant's
policies in order, rules in file order. The first matching rule with a deciding
action (allow, deny, require_approval; a tool rule when violated) decides its stage,
and no later deciding rule runs; redact, review and tag rules apply whenever they
match. A shadow rule is recorded but changes nothing. A condition that cannot be
evaluated fails closed: the rule acts as `deny` (`require_approval` if that is its
action) and the decision carries the error.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import orjson

from gateway.policy.bodytext import conversation, map_texts
from gateway.policy.conditions import ConditionError
from gateway.policy.facts import RequestFacts
from gateway.policy.model import Decision, Policy, RequestVerdict, Rule, ToolVerdict
from gateway.policy.names import ToolRef
from gateway.policy.redact import TextFilter, redact_whole
from gateway.policy.scope import Scope
from gateway.policy.toolrefs import DeclaredTool, strip_tools

UNREADABLE_NAME = "<unreadable>"


class _Stage:
    """The rules of one stage with what they need, worked out once."""

    def __init__(self, name: str, rules: Sequence[Rule]) -> None:
        self.name = name
        self.rules = tuple(rules)
        self.has_tool_lists = any(rule.tools is not None for rule in self.rules)


class _Evaluation:
    """Bookkeeping for one pass over a stage: decisions, and whether one decided."""

    def __init__(self, stage: _Stage, scope: Scope) -> None:
        self.stage = stage
        self.scope = scope
        self.decisions: list[Decision] = []
        self.deciding: Decision | None = None
        self.allowed = False

    @property
    def decided(self) -> bool:
        return self.deciding is not None or self.allowed

    def condition(self, rule: Rule, unavailable: str | None = None) -> tuple[bool, str | None]:
        """(matched, error) for the rule's `when`; no `when` always matches."""
        if rule.when is None:
            return True, None
        if unavailable is not None and rule.when.reads_arguments:
            return False, unavailable
        try:
            return rule.when.evaluate(self.scope), None
        except ConditionError as exc:
            return False, str(exc)

    def record(self, decision: Decision, *, decides: bool = True) -> None:
        """Keep a decision; a non-shadow deny/approval/allow decides the stage (a
        stripped tool is recorded as denied without deciding anything)."""
        self.decisions.append(decision)
        if decision.shadow or self.decided or not decides:
            return
        if decision.action in ("deny", "require_approval"):
            self.deciding = decision
        elif decision.action == "allow":
            self.allowed = True

    def fail_closed(self, rule: Rule, error: str, tool_name: str | None = None) -> None:
        self.record(rule.decision(self.stage.name, rule.fail_closed_action, error=error,
                                  tool_name=tool_name))


def _sampled(rule: Rule) -> bool:
    return rule.action != "review" or rule.sample >= 1 or random.random() < rule.sample


class TenantPolicies:
    """The compiled rules of one tenant's policies (`default` first, then its own)."""

    def __init__(self, policies: Sequence[Policy]) -> None:
        self.policies = tuple(policies)
        rules = [rule for policy in self.policies for rule in policy.rules]
        self._request = _Stage("request", [r for r in rules if "request" in r.stages])
        self._tool_call = _Stage("tool_call", [r for r in rules if "tool_call" in r.stages])
        self._response = _Stage("response", [r for r in rules if "response" in r.stages])
        # Any rule that looks at returned tool calls: the caller gates them only then.
        self.has_tool_rules = bool(self._tool_call.rules)
        # Only shadow rules look at them: a gate then never changes a call, nor fails on one.
        self.tool_rules_shadow = self.has_tool_rules and all(rule.shadow for rule in self._tool_call.rules)
        self.needs_tool_arguments = any(
            rule.matcher is not None or (rule.when is not None and rule.when.reads_arguments)
            for rule in self._tool_call.rules
        )
        self.has_response_rules = bool(self._response.rules)
        self.has_request_rules = bool(self._request.rules)  # the caller may skip the stage

    # -- request stage ------------------------------------------------------------

    def evaluate_request(self, facts: RequestFacts) -> RequestVerdict:
        stage = self._request
        run = _Evaluation(stage, Scope(facts))
        body = facts.body
        declared = facts.declared if stage.has_tool_lists else []
        for rule in stage.rules:
            if run.decided and rule.deciding:
                continue
            matched, error = run.condition(rule)
            if error is not None:
                run.fail_closed(rule, error)
            elif not matched or not _sampled(rule):
                continue
            elif rule.tools is not None:
                stripped = self._check_declared(rule, declared, run)
                if stripped:
                    body = strip_tools(body, stripped)
                    declared = [entry for entry in declared if entry not in stripped]
            elif rule.matcher is not None:
                body = self._guard_input(rule, body, facts, run)
            else:
                run.record(rule.decision(stage.name))
        return _request_verdict(run, body, facts.body)

    def _check_declared(self, rule: Rule, declared: list[DeclaredTool],
                        run: _Evaluation) -> list[DeclaredTool]:
        """Apply a tool rule to the declared tools; returns those to strip."""
        assert rule.tools is not None
        violations = [entry for entry in declared if rule.tools.violated_by(entry.tool)]
        if not violations:
            return []
        strip = rule.action == "deny" and rule.violation_mode("request") == "strip"
        for entry in violations if strip else violations[:1]:
            decision = rule.decision("request", tool_name=entry.tool.name or UNREADABLE_NAME)
            if entry.tool.open_ended and not rule.message:
                decision = replace(decision, message=(
                    f"{decision.message} The MCP server may call any of its tools and this rule denies some: "
                    "list the tools it may call in its 'allowed_tools'."))
            run.record(decision, decides=not strip)
        return violations if strip and not rule.shadow else []

    def _guard_input(self, rule: Rule, body: dict, facts: RequestFacts, run: _Evaluation) -> dict:
        """A pattern/detector rule over every text of the request (as redacted so far)."""
        if rule.action == "redact":
            redacted = map_texts(body, facts.api, lambda text: redact_whole(text, rule))
            if redacted is None:
                return body
            run.record(rule.decision("request"))
            return body if rule.shadow else redacted
        assert rule.matcher is not None
        messages = facts.messages if body is facts.body else conversation(body, facts.api)
        if any(rule.matcher.search(message["content"]) for message in messages):
            run.record(rule.decision("request"))
        return body

    # -- tool-call stage ----------------------------------------------------------

    def evaluate_tool_call(self, facts: RequestFacts, name: str, arguments: str) -> ToolVerdict:
        """Check one function call the model returned (`arguments` as the JSON text)."""
        return self.evaluate_call(facts, ToolRef(name), arguments)

    def evaluate_call(self, facts: RequestFacts, tool: ToolRef, arguments: str,
                      is_json: bool = True) -> ToolVerdict:
        """Check one returned call; `is_json` False for a custom tool's free-text input."""
        stage = self._tool_call
        parsed, unavailable = _parse_arguments(arguments, is_json) if self.needs_tool_arguments else ({}, None)
        call = {"name": tool.name, "arguments": parsed if parsed is not None else {}}
        run = _Evaluation(stage, Scope(facts, tool_call=call))
        tool_name = tool.name or UNREADABLE_NAME
        for rule in stage.rules:
            if run.decided and rule.deciding:
                continue
            matched, error = run.condition(rule, unavailable)
            if error is None and matched and rule.matcher is not None:
                if unavailable is not None:
                    error = unavailable
                else:
                    matched = rule.matcher.search(_argument_text(parsed, arguments, is_json))
            if error is not None:
                run.fail_closed(rule, error, tool_name)
            elif not matched or not _sampled(rule):
                continue
            elif rule.tools is not None:
                if rule.tools.violated_by(tool):
                    error = None if tool.readable else "the tool call has no readable name"
                    run.record(rule.decision("tool_call", error=error, tool_name=tool_name))
            else:
                run.record(rule.decision("tool_call", tool_name=tool_name))
        deciding = run.deciding
        return ToolVerdict(
            decisions=run.decisions,
            outcome="allow" if deciding is None else deciding.action,  # type: ignore[arg-type]
            deciding=deciding,
            on_violation=deciding.on_violation if deciding is not None else None,
        )

    def malformed_call(self, error: str, tool_name: str | None = None, *, text: bool = False) -> Decision:
        """The fail-closed decision for output that cannot be read at all (a broken
        stream), attributed to the first rule, not a shadow one, that looks at what is
        broken: the tool calls (with `text`, the response text too). When only shadow
        rules look, the decision is a shadow one, and the caller passes the output on as
        it came: a shadow rule changes nothing, so the stream goes as without it."""
        looking = [*self._tool_call.rules, *(self._response.rules if text else ())]
        rule = next((rule for rule in looking if not rule.shadow), None)
        rule = rule or (looking or self._response.rules or self._request.rules)[0]
        return rule.decision("tool_call", "deny", error=error, tool_name=tool_name or UNREADABLE_NAME)

    # -- response stage -----------------------------------------------------------

    def response_text_filter(self, facts: RequestFacts) -> TextFilter | None:
        """A filter for the response text, or None when no response rule applies.

        Conditions that do not read `response_text` are evaluated now; those that do
        are evaluated on the whole text when the filter is flushed.
        """
        stage = self._response
        if not stage.rules:
            return None
        run = _Evaluation(stage, Scope(facts))
        scanning: list[Rule] = []
        deferred: list[Rule] = []
        for rule in stage.rules:
            if run.decided and rule.deciding:
                continue
            if rule.when is not None and "response_text" in rule.when.variables:
                deferred.append(rule)
                continue
            matched, error = run.condition(rule)
            if error is not None:
                run.fail_closed(rule, error)
            elif matched and rule.matcher is not None:
                scanning.append(rule)
            elif matched and _sampled(rule):
                run.record(rule.decision(stage.name))
        if not (scanning or deferred or run.decisions):
            return None
        at_end = (lambda text: self._at_end(facts, deferred, text)) if deferred else None
        return TextFilter(scanning, stage.name, run.decisions, at_end)

    def _at_end(self, facts: RequestFacts, rules: list[Rule], text: str) -> list[Decision]:
        stage = self._response
        run = _Evaluation(stage, Scope(facts, response_text=text))
        for rule in rules:
            if run.decided and rule.deciding:
                continue
            matched, error = run.condition(rule)
            if error is not None:
                run.fail_closed(rule, error)
            elif matched and (rule.matcher is None or rule.matcher.search(text)) and _sampled(rule):
                run.record(rule.decision(stage.name))
        return run.decisions


def _request_verdict(run: _Evaluation, body: dict, original: dict) -> RequestVerdict:
    deciding = run.deciding
    verdict = RequestVerdict(decisions=run.decisions, deciding=deciding,
                             body=body if body is not original else None)
    if deciding is None:
        return verdict
    verdict.outcome = deciding.action  # type: ignore[assignment]
    if deciding.action == "deny":
        verdict.error_code = "tool_not_allowed" if deciding.tool_name and not deciding.error else "blocked_by_policy"
    return verdict


def _parse_arguments(arguments: str, is_json: bool) -> tuple[dict | None, str | None]:
    """(parsed arguments, None) or (None, why they cannot be read)."""
    if not is_json:
        return {"input": arguments}, None
    if not arguments.strip():
        return {}, None
    try:
        parsed = orjson.loads(arguments)
    except orjson.JSONDecodeError as exc:
        return None, f"the tool call's arguments are not valid JSON ({exc})"
    if not isinstance(parsed, dict):
        return None, "the tool call's arguments are not a JSON object"
    return parsed, None


def _argument_text(parsed: dict | None, raw: str, is_json: bool) -> str:
    """The text a pattern scans: every string in the decoded arguments (so a JSON
    escape such as \\u0073k- cannot hide a secret), one per line."""
    if not is_json or parsed is None:
        return raw
    strings: list[str] = []

    def collect(value: Any) -> None:
        if isinstance(value, str):
            strings.append(value)
        elif isinstance(value, dict):
            for key, item in value.items():
                strings.append(str(key))
                collect(item)
        elif isinstance(value, list):
            for item in value:
                collect(item)

    collect(parsed)
    return "\n".join(strings)
