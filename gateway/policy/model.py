"""The compiled form of policy files: rules, their settings, and the decisions they yield.

Everything here is immutable: a `PolicySet` built from these objects is shared by every
request until the next reload, so nothing in it may change after loading.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from gateway.policy.conditions import Condition
    from gateway.policy.matcher import TextMatcher
    from gateway.policy.names import ToolList

Stage = Literal["request", "tool_call", "response"]
Action = Literal["allow", "deny", "require_approval", "redact", "review", "tag"]
Outcome = Literal["allow", "deny", "require_approval"]

STAGES: tuple[str, ...] = ("request", "tool_call", "response")
ACTIONS: tuple[str, ...] = ("allow", "deny", "require_approval", "redact", "review", "tag")
# The first matching rule with one of these actions decides its stage; the others
# (redact, review, tag) apply whenever they match and never stop evaluation.
DECIDING_ACTIONS = frozenset({"allow", "deny", "require_approval"})
ON_VIOLATION = ("error", "strip", "replace")

DEFAULT_REPLACEMENT = "[REDACTED]"


@dataclass(frozen=True, slots=True)
class ApprovalSpec:
    """How a `require_approval` rule waits for a human."""

    mode: Literal["hold", "defer"] = "hold"
    timeout_s: float = 300.0
    on_timeout: Literal["deny", "approve"] = "deny"
    webhook: str | None = None


DEFAULT_APPROVAL = ApprovalSpec()


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule of one policy, compiled: conditions parsed, patterns built."""

    policy: str
    name: str
    action: Action
    # The stages this rule runs at. One stage, except a tool rule without an explicit
    # `stage:`, which checks both the declared tools and the returned tool calls.
    stages: frozenset[str]
    when: Condition | None = None
    tools: ToolList | None = None
    on_violation: str | None = None
    approval: ApprovalSpec | None = None
    matcher: TextMatcher | None = None
    replacement: str = DEFAULT_REPLACEMENT
    message: str | None = None
    tags: tuple[str, ...] = ()
    sample: float = 1.0
    shadow: bool = False
    file: str = ""
    line: int = 0

    @property
    def deciding(self) -> bool:
        return self.action in DECIDING_ACTIONS

    @property
    def fail_closed_action(self) -> Action:
        """What a rule does when its condition cannot be evaluated (fail closed)."""
        return "require_approval" if self.action == "require_approval" else "deny"

    def violation_mode(self, stage: str) -> str:
        """What a violation does at `stage`: error | strip (request) or error | replace (call)."""
        if stage == "request":
            return "strip" if self.on_violation == "strip" else "error"
        return "error" if self.on_violation == "error" else "replace"

    def decision(self, stage: str, action: Action | None = None, *, error: str | None = None,
                 tool_name: str | None = None) -> Decision:
        """The record of this rule matching at `stage` (or failing closed, with `error`)."""
        acted = action or self.action
        deciding = acted in ("deny", "require_approval")
        return Decision(
            policy=self.policy,
            rule=self.name,
            stage=stage,
            action=acted,
            shadow=self.shadow,
            message=self._message_for(acted, stage, tool_name) if deciding else self.message,
            error=error,
            approval=(self.approval or DEFAULT_APPROVAL) if acted == "require_approval" else None,
            tool_name=tool_name,
            on_violation=self.violation_mode(stage) if deciding and stage != "response" else None,
            tags=self.tags,
        )

    def _message_for(self, action: str, stage: str, tool_name: str | None) -> str:
        if self.message:
            return self.message
        if tool_name is not None:
            subject = f"Tool '{tool_name}'"
        else:
            subject = "The response" if stage == "response" else "This request"
        if action == "require_approval":
            return f"{subject} needs a human approval (policy rule '{self.name}')."
        if tool_name is not None and self.tools is not None:
            return f"{subject} is not allowed by policy rule '{self.name}'."
        return f"{subject} was blocked by policy rule '{self.name}'."


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    file: str
    rules: tuple[Rule, ...]
    description: str = ""


@dataclass(frozen=True, slots=True)
class Decision:
    """One rule that was evaluated and matched (or failed closed).

    The caller counts it in `lockgate_policy_decisions_total{policy,rule,action}` and
    lists it in `X-Lockgate-Policies`. `error` says why a rule failed closed.
    """

    policy: str
    rule: str
    stage: str
    action: Action
    shadow: bool = False
    message: str | None = None
    error: str | None = None
    approval: ApprovalSpec | None = None
    tool_name: str | None = None
    on_violation: str | None = None
    tags: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """`policy/rule=action` (with `~shadow`), as listed in `X-Lockgate-Policies`."""
        suffix = "~shadow" if self.shadow else ""
        return f"{self.policy}/{self.rule}={self.action}{suffix}"


@dataclass(slots=True)
class RequestVerdict:
    """What the request stage decided."""

    decisions: list[Decision] = field(default_factory=list)
    outcome: Outcome = "allow"
    deciding: Decision | None = None
    body: dict | None = None
    error_code: str | None = None


@dataclass(slots=True)
class ToolVerdict:
    """What the tool-call stage decided for one tool call the model returned."""

    decisions: list[Decision] = field(default_factory=list)
    outcome: Outcome = "allow"
    deciding: Decision | None = None
    on_violation: str | None = None

    @property
    def blocked(self) -> bool:
        return self.outcome == "deny"
