"""The Responses stream gate: `(event_type, payload)` events in, `GateItem`s out.

Events are grouped by `output_index`. A tool-call item (function, custom, MCP and
built-in calls) is judged once its name is known (`response.output_item.added`) or,
when a rule reads arguments, once they are complete (`...arguments.done` /
`...input.done`, or `response.output_item.done`); until then its events are held.
An allowed item is released as it came; a blocked one is replaced, at the same
output index, by a message item naming the rule, so later output indexes stay
valid. The terminal event (`response.completed` and kin) carries the whole output
again, which clients such as the Agents SDK read their tool calls from: it is
rewritten the same way, and any call item in it that was not streamed is judged
there. Sequence numbers are renumbered when events are held back or replaced, so
the client still sees 0, 1, 2, ...
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from gateway.policy.engine import TenantPolicies
from gateway.policy.facts import RequestFacts
from gateway.policy.gating import (
    Emit,
    Fail,
    GateItem,
    Hold,
    blocked_text,
    denial_failure,
    denied_text,
    failure,
)
from gateway.policy.model import Decision
from gateway.policy.responses_items import message_events, message_item, with_texts
from gateway.policy.streamcalls import CallChecker, Step, StreamCall
from gateway.policy.toolrefs import CALL_ITEM_TYPES, item_arguments, item_ref

_END: tuple[str, dict] = ("", {})
_TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
_ARGUMENT_DELTAS = frozenset({"response.function_call_arguments.delta", "response.mcp_call_arguments.delta",
                              "response.custom_tool_call_input.delta"})
_ARGUMENT_DONE = frozenset({"response.function_call_arguments.done", "response.mcp_call_arguments.done",
                            "response.custom_tool_call_input.done"})


def _states_a_call(event_type: str, payload: dict) -> bool:
    """Whether an event carries a tool call's arguments or the whole call item."""
    if event_type in _ARGUMENT_DELTAS or event_type in _ARGUMENT_DONE:
        return True
    final = payload.get("item") if event_type == "response.output_item.done" else None
    return isinstance(final, dict) and final.get("type") in CALL_ITEM_TYPES


@dataclass(eq=False)
class _Item:
    output_index: int
    call: StreamCall | None = None
    message: bool = False
    replacement: dict | None = None
    # content_index -> the text that went out for that part (after redaction)
    texts: dict[int, list[str]] = field(default_factory=dict)


class ResponsesStreamGate:
    """Gates one streamed Responses API response (see the module docstring)."""

    def __init__(self, policies: TenantPolicies, facts: RequestFacts) -> None:
        self._call_decisions: list[Decision] = []
        self._policies = policies
        self._checker = CallChecker(policies, facts, self._call_decisions)
        self._gate_tools = policies.has_tool_rules
        self._text = policies.response_text_filter(facts) if policies.has_response_rules else None
        self._items: dict[int, _Item] = {}
        self._backlog: deque[tuple[str, dict]] = deque()
        self._holding: _Item | None = None
        self._failed = False
        self._next_sequence: int | None = None

    @property
    def decisions(self) -> list[Decision]:
        return [*self._call_decisions, *(self._text.decisions if self._text else ())]

    def feed(self, event_type: str, payload: dict) -> list[GateItem]:
        if self._failed:
            return []
        self._backlog.append((event_type, payload))
        return self._drain()

    def finish(self) -> list[GateItem]:
        if self._failed:
            return []
        self._backlog.append(_END)
        return self._drain()

    def resolve(self, call_key: int | str, approved: bool, reason: str | None = None) -> list[GateItem]:
        item = self._holding
        if item is None or item.call is None or item.call.key != call_key:
            raise ValueError(f"no tool call {call_key!r} is waiting for approval")
        self._holding = None
        out = self._apply(self._checker.resolve(item.call, approved), item, denied=not approved,
                          reason=reason)
        return self._numbered(out) + self._drain()

    # -- processing ---------------------------------------------------------------

    def _drain(self) -> list[GateItem]:
        out: list[GateItem] = []
        while self._backlog and self._holding is None and not self._failed:
            entry = self._backlog.popleft()
            out.extend(self._settle_all() if entry is _END else self._event(*entry))
            if self._holding is not None and (entry is _END or entry[0] in _TERMINAL):
                # The hold came before this event was used up: run it again once resolved.
                self._backlog.appendleft(entry)
        if self._failed:
            self._backlog.clear()
        return self._numbered(out)

    def _event(self, event_type: str, payload: dict) -> list[GateItem]:
        if not (self._gate_tools or self._text) or not isinstance(payload, dict):
            return [Emit(payload, True, event_type)]
        if event_type == "response.output_item.added":
            return self._item_added(event_type, payload)
        if event_type in _TERMINAL:
            return self._terminal(event_type, payload)
        index = payload.get("output_index")
        item = self._items.get(index) if isinstance(index, int) else None
        if item is not None and item.call is not None:
            return self._call_event(item, item.call, event_type, payload)
        if self._gate_tools and _states_a_call(event_type, payload):
            # No call was announced at this index, so none was judged: never relay it.
            return self._malformed(f"a tool call event at output index {index!r} that no "
                                   "'response.output_item.added' announced as a tool call", (event_type, payload))
        if item is not None and item.message and self._text is not None:
            return self._text_event(item, event_type, payload)
        return [Emit(payload, True, event_type)]

    def _item_added(self, event_type: str, payload: dict) -> list[GateItem]:
        data, index = payload.get("item"), payload.get("output_index")
        if not isinstance(data, dict) or not isinstance(index, int) or index in self._items:
            if self._gate_tools:
                return self._malformed("an output item has no valid 'item' or 'output_index'", (event_type, payload))
            return [Emit(payload, True, event_type)]
        item = self._items[index] = _Item(index, message=data.get("type") == "message")
        if not (self._gate_tools and data.get("type") in CALL_ITEM_TYPES):
            return [Emit(payload, True, event_type)]
        item.call = self._new_call(data, index)
        item.call.held.append(Emit(payload, True, event_type))
        return self._apply(self._checker.check(item.call, complete=False), item)

    def _new_call(self, data: dict, index: int) -> StreamCall:
        arguments, is_json = item_arguments(data)
        key = data.get("id") if isinstance(data.get("id"), str) and data.get("id") else f"output_{index}"
        return StreamCall(key, tool=item_ref(data), argument_parts=[arguments] if arguments else [],
                          is_json=is_json)

    def _call_event(self, item: _Item, call: StreamCall, event_type: str, payload: dict) -> list[GateItem]:
        final: dict | None = payload.get("item") if event_type == "response.output_item.done" else None
        fragment = payload.get("delta") if event_type in _ARGUMENT_DELTAS else None
        fragment = fragment if isinstance(fragment, str) else ""
        if call.state == "blocked":
            return []
        why = self._checker.tampered(call, "", fragment) or self._changed(call, event_type, payload, final)
        if why:
            return self._malformed(why, (event_type, payload), call)
        if call.state == "released":
            return [Emit(payload, True, event_type)]
        call.held.append(Emit(payload, True, event_type))
        call.argument_parts.append(fragment)
        complete = event_type in _ARGUMENT_DONE or final is not None
        if event_type in _ARGUMENT_DONE:
            done = payload.get("arguments", payload.get("input"))
            call.final_arguments = done if isinstance(done, str) else call.arguments
        if isinstance(final, dict):
            call.final_arguments = item_arguments(final)[0]
            call.tool = item_ref(final)
        return self._apply(self._checker.check(call, complete=complete), item) if complete else []

    def _changed(self, call: StreamCall, event_type: str, payload: dict, final: dict | None) -> str | None:
        """Why an event that states the call whole disagrees with what was judged (its
        tool, its complete arguments) or with the arguments that streamed, if it does."""
        stated = payload.get("arguments", payload.get("input")) if event_type in _ARGUMENT_DONE else None
        if final is not None:
            # The whole ToolRef: an MCP call's name is its server, the tool on it is `related`.
            if call.state != "pending" and item_ref(final) != call.tool:
                return f"tool call '{call.name}' changed its name after it was checked"
            stated = item_arguments(final)[0]
        if not isinstance(stated, str):
            return None
        if call.checked_arguments is not None:
            if stated != call.checked_arguments:
                return f"tool call '{call.name}' changed its arguments after they were checked"
        elif call.state != "released" and call.arguments and stated != call.arguments:
            # The rules read the stated arguments, the client may assemble the deltas.
            return f"tool call '{call.name}' states other arguments than it streamed"
        return None

    def _text_event(self, item: _Item, event_type: str, payload: dict) -> list[GateItem]:
        assert self._text is not None
        part = payload.get("content_index", 0)
        if event_type == "response.output_text.delta" and isinstance(payload.get("delta"), str):
            out = self._text.feed(payload["delta"])
            item.texts.setdefault(part, []).append(out)
            if self._text.failure is not None:
                return self._text_failure()
            return [Emit(payload, True, event_type) if out == payload["delta"]
                    else Emit({**payload, "delta": out}, False, event_type)]
        if event_type == "response.output_text.done":
            if part not in item.texts and isinstance(payload.get("text"), str):
                # A part whose text came without deltas: it must pass the filter too.
                item.texts[part] = [self._text.feed(payload["text"])]
            rest = self._text.flush()
            if self._text.failure is not None:
                return self._text_failure()
            items: list[GateItem] = []
            if rest:
                item.texts.setdefault(part, []).append(rest)
                delta = {key: value for key, value in payload.items() if key != "text"}
                delta.update(type="response.output_text.delta", delta=rest, sequence_number=None)
                items.append(Emit(delta, False, "response.output_text.delta"))
            text = "".join(item.texts.get(part, ()))
            return [*items, self._with_text(event_type, payload, {"text": text})]
        if (event_type == "response.content_part.done" and isinstance(payload.get("part"), dict)
                and part in item.texts):
            part_data = {**payload["part"], "text": "".join(item.texts[part])}
            return [self._with_text(event_type, payload, {"part": part_data})]
        if event_type == "response.output_item.done" and isinstance(payload.get("item"), dict):
            return [self._with_text(event_type, payload, {"item": with_texts(payload["item"], item.texts)})]
        return [Emit(payload, True, event_type)]

    def _with_text(self, event_type: str, payload: dict, changes: dict) -> Emit:
        changed = {**payload, **changes}
        return Emit(payload, True, event_type) if changed == payload else Emit(changed, False, event_type)

    def _terminal(self, event_type: str, payload: dict) -> list[GateItem]:
        out = self._settle_all()
        if self._holding is not None or self._failed:
            return out
        response = payload.get("response")
        output = response.get("output") if isinstance(response, dict) else None
        if not isinstance(output, list):
            return [*out, Emit(payload, True, event_type)]
        new_output = []
        for index, data in enumerate(output):
            item = self._items.get(index)
            if self._gate_tools and isinstance(data, dict) and data.get("type") in CALL_ITEM_TYPES:
                if item is None or item.call is None:
                    item = self._items[index] = _Item(index, call=self._new_call(data, index))
                    assert item.call is not None
                    item.call.final_arguments = item_arguments(data)[0]
                    out.extend(self._apply(self._checker.check(item.call, complete=True), item, emit=False))
                    if self._holding is not None or self._failed:
                        return out
                elif item.call.state == "released" and (why := self._changed(item.call, "", {}, data)):
                    return [*out, *self._malformed(why, (event_type, payload), item.call)]
                data = item.replacement or data
            elif item is not None and item.texts and isinstance(data, dict):
                data = with_texts(data, item.texts)
            new_output.append(data)
        if new_output == output:
            return [*out, Emit(payload, True, event_type)]
        return [*out, Emit({**payload, "response": {**response, "output": new_output}}, False, event_type)]

    def _settle_all(self) -> list[GateItem]:
        out: list[GateItem] = []
        for item in self._items.values():
            if item.call is not None and not item.call.settled:
                out.extend(self._apply(self._checker.check(item.call, complete=True), item))
                if self._holding is not None or self._failed:
                    return out
        if self._text is not None:
            self._text.close()
            if self._text.failure is not None:
                return [*out, *self._text_failure()]
        return out

    # -- outcomes -----------------------------------------------------------------

    def _apply(self, step: Step, item: _Item, *, denied: bool = False, reason: str | None = None,
               emit: bool = True) -> list[GateItem]:
        call = item.call
        assert call is not None
        if step == "release":
            released, call.held = call.held, []
            return list(released)
        if step == "hold":
            self._holding = item
            assert call.deciding is not None
            return [Hold(call.key, call.name, call.arguments, call.deciding)]
        if step == "block":
            call.held = []
            decision = call.deciding
            assert decision is not None
            if decision.on_violation == "error":
                self._failed = True
                return [denial_failure(call.name, decision, reason) if denied else failure(decision)]
            text = denied_text(call.name, decision, reason) if denied else blocked_text(call.name, decision)
            item.replacement = message_item(f"msg_{call.key}", text)
            if not emit:
                return []
            return [Emit(payload, False, payload["type"])
                    for payload in message_events(item.replacement, item.output_index)]
        return []

    def _malformed(self, error: str, event: tuple[str, dict], call: StreamCall | None = None) -> list[GateItem]:
        """Fail the stream closed at `event`: its tool calls cannot be read, or changed."""
        decision = self._policies.malformed_call(error, call.name if call else None)
        self._call_decisions.append(decision)
        if decision.shadow:
            return self._pass_on(event)
        self._failed = True
        return [Fail("blocked_by_policy", f"{decision.message} ({error})", decision.rule)]

    def _pass_on(self, event: tuple[str, dict]) -> list[GateItem]:
        """Only shadow rules look at the tool calls, so a malformed stream goes on as it
        came, as it would without them: what the calls held, then `event`, and the rest
        of the stream, no longer gated."""
        out: list[GateItem] = []
        for item in self._items.values():
            if item.call is not None:
                out.extend(item.call.held)
                item.call = None
        self._gate_tools = False
        return out + self._event(*event)

    def _text_failure(self) -> list[GateItem]:
        assert self._text is not None and self._text.failure is not None
        self._failed = True
        return [failure(self._text.failure)]

    def _numbered(self, items: list[GateItem]) -> list[GateItem]:
        """Keep `sequence_number` consecutive across held, dropped and added events."""
        result: list[GateItem] = []
        for entry in items:
            if isinstance(entry, Emit) and isinstance(entry.payload, dict) and "sequence_number" in entry.payload:
                entry = self._renumber(entry)
            result.append(entry)
        return result

    def _renumber(self, entry: Emit) -> Emit:
        number: Any = entry.payload["sequence_number"]
        if self._next_sequence is None:
            self._next_sequence = number if isinstance(number, int) and not isinstance(number, bool) else 0
        expected = self._next_sequence
        self._next_sequence += 1
        if number == expected:
            return entry
        return Emit({**entry.payload, "sequence_number": expected}, False, entry.event)
