"""What the response gates hand back to the caller, and the texts they write.

A gate turns upstream output into `GateItem`s: `Emit` (send this payload; `original`
means it is the very object that was fed in, so its bytes can be relayed as they
came), `Hold` (a tool call waits for a human: resolve it before anything else goes
out) and `Fail` (end the stream with this error).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.policy.model import Decision


@dataclass(frozen=True, slots=True)
class Emit:
    payload: Any
    original: bool
    # The SSE event name, for Responses streams (None for Chat Completions chunks).
    event: str | None = None


@dataclass(frozen=True, slots=True)
class Hold:
    call_key: int | str
    name: str
    arguments: str
    decision: Decision


@dataclass(frozen=True, slots=True)
class Fail:
    code: str
    message: str
    rule: str | None


GateItem = Emit | Hold | Fail


def blocked_text(tool_name: str, decision: Decision) -> str:
    """The assistant text that stands in for a blocked tool call."""
    return f"Tool call '{tool_name}' was blocked by policy rule '{decision.rule}'."


def denied_text(tool_name: str, decision: Decision, reason: str | None) -> str:
    """The assistant text that stands in for a tool call a human did not approve."""
    why = f": {reason}" if reason else "."
    return f"Tool call '{tool_name}' was not approved (policy rule '{decision.rule}'){why}"


def failure(decision: Decision) -> Fail:
    """The error that ends a response for a deny decision."""
    code = "tool_not_allowed" if decision.tool_name and not decision.error else "blocked_by_policy"
    return Fail(code, decision.message or f"Blocked by policy rule '{decision.rule}'.", decision.rule)


def denial_failure(tool_name: str, decision: Decision, reason: str | None) -> Fail:
    return Fail("approval_denied", denied_text(tool_name, decision, reason), decision.rule)


def separated(text: str, after_text: bool) -> str:
    """A replacement text, set apart from text the message already has."""
    return f"\n\n{text}" if after_text else text
