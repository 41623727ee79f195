"""Gating a complete (non-streamed) response: chat completion or Responses object.

Every tool call is judged at once, each on its own. Calls that need a human are listed
in `GateResult.pending`, each under a `key` naming where it sits in the answer (the
upstream's call ids need not be unique); the caller resolves them by that key
(possibly after an approval hold), then `finish()` builds the answer: blocked calls removed and replaced by an
assistant text naming the rule, `finish_reason` "tool_calls" kept only while an
allowed call remains, response-stage text rules applied to the message text. A
rule with `on_violation: error`, or a response-stage deny, turns it into an error.

A chat tool call is read as the chat stream gate reads one (`chat_chunks`): one that
clients could read two ways (a `function` and a `custom` object that differ, a `type`
naming an object the call lacks) or not at all (an unknown `type`, a call or a
`tool_calls` of the wrong shape) fails the whole answer closed, as it fails a stream.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.policy.chat_chunks import LEGACY, read_call
from gateway.policy.engine import TenantPolicies
from gateway.policy.facts import RequestFacts
from gateway.policy.gating import blocked_text, denial_failure, denied_text, failure, separated
from gateway.policy.model import Decision, ToolVerdict
from gateway.policy.names import ToolRef
from gateway.policy.redact import TextFilter
from gateway.policy.responses_items import message_item
from gateway.policy.toolrefs import CALL_ITEM_TYPES, chat_call_ref, item_arguments, item_ref

GateError = tuple[str, str, str | None]  # (code, message, rule)


@dataclass(frozen=True, slots=True)
class PendingCall:
    """A tool call waiting for a human. `key` is its place in the answer, unique within
    it: "<position in choices>:<position of the call>" (chat) or "<output index>"
    (Responses). `call_id` is the upstream's id, which two calls may share."""

    key: str
    call_id: str
    name: str
    arguments: str
    decision: Decision


@dataclass(eq=False)
class _Judged:
    call_id: str
    name: str
    arguments: str
    verdict: ToolVerdict
    approved: bool | None = None
    reason: str | None = None

    @property
    def waiting(self) -> bool:
        return self.verdict.outcome == "require_approval" and self.approved is None

    @property
    def blocked(self) -> bool:
        return self.verdict.outcome == "deny" or (self.verdict.outcome == "require_approval"
                                                   and not self.approved)

    @property
    def stand_in(self) -> str:
        decision = self.verdict.deciding
        assert decision is not None
        if self.verdict.outcome == "require_approval":
            return denied_text(self.name, decision, self.reason)
        return blocked_text(self.name, decision)

    def error(self) -> GateError | None:
        decision = self.verdict.deciding
        if not self.blocked or decision is None or decision.on_violation != "error":
            return None
        fail = (denial_failure(self.name, decision, self.reason) if self.verdict.outcome == "require_approval"
                else failure(decision))
        return fail.code, fail.message, fail.rule


Rebuild = Callable[[dict[str, _Judged], TextFilter | None], dict | None]


class GateResult:
    """The judged tool calls of one response, waiting for `finish()`. `broken` is the
    fail-closed decision for tool calls that could not be read (none are judged then)."""

    def __init__(self, judged: dict[str, _Judged], rebuild: Rebuild, text: TextFilter | None,
                 broken: Decision | None = None) -> None:
        self._judged = judged
        self._rebuild = rebuild
        self._text = text
        self._broken = broken
        self.pending = [
            PendingCall(key, j.call_id, j.name, j.arguments, j.verdict.deciding)  # type: ignore[arg-type]
            for key, j in judged.items() if j.waiting
        ]

    def resolve(self, key: str, approved: bool, reason: str | None = None) -> None:
        """Decide the waiting call at `key` (a `PendingCall.key`), and only that one."""
        judged = self._judged.get(key)
        if judged is None or not judged.waiting:
            raise ValueError(f"no tool call {key!r} is waiting for approval")
        judged.approved, judged.reason = approved, reason

    def finish(self) -> tuple[dict | None, GateError | None, list[Decision]]:
        """(changed body or None, error or None, decisions). Unresolved calls count as denied."""
        for judged in self._judged.values():
            if judged.waiting:
                judged.approved, judged.reason = False, "no decision was made"
        decisions = [d for judged in self._judged.values() for d in judged.verdict.decisions]
        broken = self._broken
        if broken is not None:
            decisions.insert(0, broken)
            # The stream gates' error for a call they cannot read. A shadow decision (only
            # shadow rules look at tool calls) changes nothing: the answer goes as it came.
            if not broken.shadow:
                return None, ("blocked_by_policy", f"{broken.message} ({broken.error})", broken.rule), decisions
        for judged in self._judged.values():
            error = judged.error()
            if error is not None:
                return None, error, decisions
        body = self._rebuild(self._judged, self._text)
        if self._text is not None:
            self._text.close()
            decisions += self._text.decisions
            if self._text.failure is not None:
                fail = failure(self._text.failure)
                return None, (fail.code, fail.message, fail.rule), decisions
        return body, None, decisions


def _judge(policies: TenantPolicies, facts: RequestFacts, call_id: str, tool: ToolRef, arguments: str,
           is_json: bool) -> _Judged:
    verdict = policies.evaluate_call(facts, tool, arguments, is_json)
    return _Judged(call_id, tool.name or "<unreadable>", arguments, verdict)


def _text_filter(policies: TenantPolicies, facts: RequestFacts) -> TextFilter | None:
    return policies.response_text_filter(facts) if policies.has_response_rules else None


# -- Chat Completions ---------------------------------------------------------------

def _chat_calls(message: dict) -> list[tuple[str, dict]]:
    """(field, call) for each tool call of a message, the legacy function_call included."""
    calls = message.get("tool_calls")
    found = [("tool_calls", call) for call in calls] if isinstance(calls, list) else []
    if message.get("function_call") is not None:
        found.append(("function_call", message["function_call"]))
    return found


def _chat_call_parts(field: str, call: Any) -> tuple[str, str, bool] | str:
    """(name, arguments, is_json) of a chat tool call (function, custom or legacy), or why
    it cannot be read one way only. The stream gate's reading of a call delta, so both
    gates agree: some clients take `function` whatever the `type` says, so a call whose
    other object says something else has no one reading that is safe to judge."""
    if not isinstance(call, dict):
        return "a tool call is not an object"
    read = read_call(call, LEGACY if field == LEGACY else "tool_calls")
    if isinstance(read, str):
        return read
    kind, name, arguments = read
    return name, arguments, kind == "function"


def _judge_chat(policies: TenantPolicies, facts: RequestFacts,
                choices: list[Any]) -> tuple[dict[str, _Judged], Decision | None]:
    """The judged calls of every choice, or ({}, the fail-closed decision) when one cannot
    be read: judging the others would only ask humans about an answer refused anyway."""
    judged: dict[str, _Judged] = {}
    for c_index, choice in enumerate(choices):
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict):
            continue
        if message.get("tool_calls") is not None and not isinstance(message["tool_calls"], list):
            return {}, policies.malformed_call("'tool_calls' is not a list")
        for position, (field, call) in enumerate(_chat_calls(message)):
            parts = _chat_call_parts(field, call)
            if isinstance(parts, str):
                return {}, policies.malformed_call(parts)
            name, arguments, is_json = parts
            call_id = call.get("id") if isinstance(call.get("id"), str) else None
            judged[f"{c_index}:{position}"] = _judge(policies, facts, call_id or f"{c_index}:{position}",
                                                     chat_call_ref(name), arguments, is_json)
    return judged, None


def gate_chat_completion(policies: TenantPolicies, facts: RequestFacts, completion: dict) -> GateResult:
    choices = completion.get("choices")
    judged, broken = (_judge_chat(policies, facts, choices if isinstance(choices, list) else [])
                      if policies.has_tool_rules else ({}, None))

    def rebuild(judged: dict[str, _Judged], text: TextFilter | None) -> dict | None:
        new_choices = [_rebuild_choice(c_index, choice, judged, text)
                       for c_index, choice in enumerate(choices if isinstance(choices, list) else ())]
        return None if new_choices == choices else {**completion, "choices": new_choices}

    return GateResult(judged, rebuild, _text_filter(policies, facts), broken)


def _rebuild_choice(c_index: int, choice: Any, judged: dict[str, _Judged], text: TextFilter | None) -> Any:
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict):
        return choice
    new_message = dict(message)
    content = message.get("content")
    if text is not None and isinstance(content, str):
        content = text.whole(content)
    elif text is not None and isinstance(content, list):
        # Some OpenAI-compatible servers answer with content parts; clients read every text.
        content = [_redacted_part(part, text) for part in content]
    kept: dict[str, list] = {"tool_calls": [], "function_call": []}
    notes: list[str] = []
    for position, (field, call) in enumerate(_chat_calls(message)):
        entry = judged.get(f"{c_index}:{position}")
        if entry is not None and entry.blocked:
            notes.append(entry.stand_in)
        else:
            kept[field].append(call)
    for note in notes:
        if isinstance(content, list):
            content = [*content, {"type": "text", "text": note}]
        else:
            content = (content or "") + separated(note, bool(content))
    if content != message.get("content"):
        new_message["content"] = content
    if notes:
        for field in ("tool_calls", "function_call"):
            if field in message:
                new_message.pop(field)
                if kept[field]:
                    new_message[field] = kept[field] if field == "tool_calls" else kept[field][0]
    if new_message == message:
        return choice
    finish = choice.get("finish_reason")
    if finish in ("tool_calls", "function_call") and notes and not (kept["tool_calls"] or kept["function_call"]):
        finish = "stop"
    return {**choice, "message": new_message, "finish_reason": finish}


def _redacted_part(part: Any, text: TextFilter) -> Any:
    """A chat content part with its text redacted (any part type: a client may show it)."""
    if isinstance(part, str):
        return text.whole(part)
    if isinstance(part, dict) and isinstance(part.get("text"), str):
        redacted = text.whole(part["text"])
        return part if redacted == part["text"] else {**part, "text": redacted}
    return part


# -- Responses ----------------------------------------------------------------------

def gate_responses_response(policies: TenantPolicies, facts: RequestFacts, response: dict) -> GateResult:
    judged: dict[str, _Judged] = {}
    output = response.get("output")
    items = output if isinstance(output, list) else []
    for index, item in enumerate(items):
        if policies.has_tool_rules and isinstance(item, dict) and item.get("type") in CALL_ITEM_TYPES:
            arguments, is_json = item_arguments(item, final=True)
            call_id = item.get("call_id") or item.get("id") or f"output_{index}"
            judged[str(index)] = _judge(policies, facts, str(call_id), item_ref(item), arguments, is_json)

    def rebuild(judged: dict[str, _Judged], text: TextFilter | None) -> dict | None:
        new_output = [_rebuild_item(index, item, judged, text) for index, item in enumerate(items)]
        return None if new_output == items else {**response, "output": new_output}

    return GateResult(judged, rebuild, _text_filter(policies, facts))


def _rebuild_item(index: int, item: Any, judged: dict[str, _Judged], text: TextFilter | None) -> Any:
    entry = judged.get(str(index))
    if entry is not None and entry.blocked:
        return message_item(f"msg_{item.get('id') or index}", entry.stand_in)
    if text is None or not isinstance(item, dict) or item.get("type") != "message":
        return item
    content = item.get("content")
    if not isinstance(content, list):
        return item
    parts = [
        {**part, "text": text.whole(part["text"])}
        if isinstance(part, dict) and part.get("type") == "output_text" and isinstance(part.get("text"), str)
        else part
        for part in content
    ]
    return item if parts == content else {**item, "content": parts}
