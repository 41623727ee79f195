"""When a streamed tool call is checked, and what then happens to its held output.

Both stream gates (Chat Completions and Responses) share this life cycle:

    pending --name known (no rule reads arguments)--> checked
    pending --arguments complete--------------------> checked
    checked: allow -> released | deny -> blocked | require_approval -> awaiting
    awaiting --arguments complete--> holding (a `Hold` goes out) --resolve--> released | blocked

A pending call's output is held; a released call's output goes out as it arrives; a
blocked call's output is dropped and replaced by the gate.

A call's name comes whole in one delta (OpenAI sends it in the call's first). A second
non-empty name piece fails the stream even before the check: clients disagree on what
two pieces mean (the OpenAI SDK joins them, the Agents SDK keeps the last, others the
first), so no one name the gate could judge is the one the client runs.

Once judged, a call may not change what it was judged (or approved) on: its name
never, its arguments once they were complete (the rules or the human saw them whole).
Only a call judged on its name alone may stream its arguments on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from gateway.policy.engine import TenantPolicies
from gateway.policy.facts import RequestFacts
from gateway.policy.gating import Emit
from gateway.policy.model import Decision
from gateway.policy.names import ToolRef

State = Literal["pending", "awaiting", "holding", "released", "blocked"]
Step = Literal["none", "release", "block", "hold"]


@dataclass(eq=False)
class StreamCall:
    """One tool call being streamed, with the output held back for it."""

    key: int | str
    # Where the upstream put the call: the chat tool-call index (-1 for the legacy
    # function_call) or the Responses output index.
    index: int = -1
    tool: ToolRef = field(default_factory=lambda: ToolRef(""))
    name_parts: list[str] = field(default_factory=list)
    argument_parts: list[str] = field(default_factory=list)
    # Set when the stream states the complete arguments (Responses `...done` events).
    final_arguments: str | None = None
    is_json: bool = True
    # Chat: "function" or "custom", fixed by the call's first delta; "" until then.
    kind: str = ""
    held: list[Emit] = field(default_factory=list)
    state: State = "pending"
    deciding: Decision | None = None
    # The complete arguments the call was judged or approved with (None while they may
    # still grow), to catch a stream that changes them afterwards.
    checked_arguments: str | None = None

    @property
    def name(self) -> str:
        return self.tool.name or "".join(self.name_parts)

    @property
    def arguments(self) -> str:
        return self.final_arguments if self.final_arguments is not None else "".join(self.argument_parts)

    @property
    def settled(self) -> bool:
        return self.state in ("released", "blocked")


class CallChecker:
    """Runs the tool-call rules on streamed calls at the right moment."""

    def __init__(self, policies: TenantPolicies, facts: RequestFacts, decisions: list[Decision]) -> None:
        self.policies = policies
        self.facts = facts
        self.decisions = decisions

    @property
    def needs_arguments(self) -> bool:
        return self.policies.needs_tool_arguments

    def check(self, call: StreamCall, complete: bool) -> Step:
        """Advance `call` now that its name is known (or, if `complete`, its arguments)."""
        if call.state == "pending":
            if not complete and self.needs_arguments:
                return "none"
            tool = call.tool if call.tool.readable else ToolRef("".join(call.name_parts))
            verdict = self.policies.evaluate_call(self.facts, tool, call.arguments, call.is_json)
            self.decisions.extend(verdict.decisions)
            call.checked_arguments = call.arguments if complete else None
            call.deciding = verdict.deciding
            if verdict.outcome == "allow":
                call.state = "released"
                return "release"
            if verdict.outcome == "deny":
                call.state = "blocked"
                return "block"
            call.state = "awaiting"
        if call.state == "awaiting" and complete:
            # What the human is shown is what they approve: nothing may be added after.
            call.checked_arguments = call.arguments
            call.state = "holding"
            return "hold"
        return "none"

    def resolve(self, call: StreamCall, approved: bool) -> Step:
        call.state = "released" if approved else "blocked"
        return "release" if approved else "block"

    def tampered(self, call: StreamCall, name_fragment: str, argument_fragment: str) -> str | None:
        """Why more output for a call must fail the stream, or None.

        A second name piece, before the check, has no one meaning (module docstring). A
        name that grows after the check (`db_` + `drop_all`) was never judged whole;
        arguments that grow after they were judged complete were never judged at all.
        A blocked call's output is dropped whatever it says.
        """
        if call.state == "pending":
            if name_fragment and any(call.name_parts):
                return f"tool call '{call.name}' sent its name in more than one piece"
            return None
        if call.state == "blocked":
            return None
        if name_fragment:
            return f"tool call '{call.name}' changed its name after it was checked"
        if argument_fragment and call.checked_arguments is not None:
            return f"tool call '{call.name}' changed its arguments after they were checked"
        return None
