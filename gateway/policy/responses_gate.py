"""The Responses stream gate: `(event_type, payload)` events in, `GateItem`s out.

Events are grouped by `output_index`. A tool-call item (function, custom, MCP and
built-in calls) is judged once its name is known (`response.output_item.added`) or,
when a rule reads arguments, once they are complete (`...arguments.done` /
`...input.done`, or `response.output_item.done`); until then its events are held.
An allowed item is released as it came; a blocked one is replaced, at the same
output index, by a message item naming the rule, so later output indexes stay
valid. The terminal event (`response.completed` and kin) carries the whole output
again, which clients such as the Agents SDK read their tool calls from, and a
lifecycle snapshot (`response.created`, ...) the output so far, which the SDK reads
too: they are rewritten the same way, and any call item in them that was not streamed
is judged there. Sequence numbers are renumbered when events are held back or replaced.

Response-stage text rules see every message text a client can read. A content part's
deltas stream through the text filter, which may hold a tail back until the part ends
(its done events, its item's done, the response's end: one more delta). A filled
`content_part.added` / `output_item.added` is fed like a delta (the client appends the
deltas to it); text first seen in a done event, `response.completed` or a lifecycle
snapshot is redacted whole; then every statement of a part says what went out. Text
the gate cannot place (an index that is not a plain int, no message announced there, a
part going on after it ended, a text that is no string) fails the stream closed, as an
unannounced tool call does: a client still shows it (JavaScript reads `0.0` as `0`),
and redacting it whole would miss a key split across it and the part it continues.
So does text after the response ended: the rules that read the whole text judged it.
"""

from __future__ import annotations

from collections import deque
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
from gateway.policy.responses_items import (
    ARGUMENT_DELTAS,
    ARGUMENT_DONE,
    LIFECYCLE,
    PART_EVENTS,
    STATES_OUTPUT,
    TERMINAL,
    TEXT_DELTA,
    OutputItem,
    Sequencer,
    UnreadableText,
    is_message,
    message_events,
    message_item,
    message_parts,
    new_call,
    output_parts,
    restated,
    stated_message,
    states_a_call,
    text_delta,
)
from gateway.policy.streamcalls import CallChecker, Step, StreamCall
from gateway.policy.toolrefs import CALL_ITEM_TYPES, item_arguments, item_ref

_END: tuple[str, dict] = ("", {})


class ResponsesStreamGate:
    """Gates one streamed Responses API response (see the module docstring)."""

    def __init__(self, policies: TenantPolicies, facts: RequestFacts) -> None:
        self._call_decisions: list[Decision] = []
        self._policies = policies
        self._checker = CallChecker(policies, facts, self._call_decisions)
        self._gate_tools = policies.has_tool_rules
        self._text = policies.response_text_filter(facts) if policies.has_response_rules else None
        # Off once a malformed stream only shadow rules read goes on ungated (`_pass_on`).
        self._text_on = self._text is not None
        # The part whose deltas stream through the text filter, which holds its tail.
        self._open: tuple[OutputItem, int] | None = None
        self._items: dict[int, OutputItem] = {}
        self._backlog: deque[tuple[str, dict]] = deque()
        self._holding: OutputItem | None = None
        self._failed = False
        self._sequence = Sequencer()

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
        return self._sequence.number(out) + self._drain()

    # -- processing ---------------------------------------------------------------

    def _drain(self) -> list[GateItem]:
        out: list[GateItem] = []
        while self._backlog and self._holding is None and not self._failed:
            entry = self._backlog.popleft()
            out.extend(self._settle_all() if entry is _END else self._event(*entry))
            if self._holding is not None and (entry is _END or entry[0] in STATES_OUTPUT):
                # The hold came before this event was used up: run it again once resolved.
                self._backlog.appendleft(entry)
        if self._failed:
            self._backlog.clear()
        return self._sequence.number(out)

    def _event(self, event_type: str, payload: dict) -> list[GateItem]:
        if not (self._gate_tools or self._text_on) or not isinstance(payload, dict):
            return [Emit(payload, True, event_type)]
        try:
            if event_type == "response.output_item.added":
                return self._item_added(event_type, payload)
            if event_type in TERMINAL:
                return self._terminal(event_type, payload)
            index = payload.get("output_index")
            if index is not None and (type(index) is not int or index < 0):  # not isinstance: True is an int
                raise UnreadableText(f"output index {index!r} is not a non-negative integer")
            item = self._items.get(index) if index is not None else None
            if self._text_on and event_type in PART_EVENTS:
                return self._text_event(item, index, event_type, payload)
            if item is not None and item.call is not None:
                return self._call_event(item, item.call, event_type, payload)
            if self._gate_tools and states_a_call(event_type, payload):
                # No call was announced at this index, so none was judged: never relay it.
                return self._malformed(f"a tool call event at output index {index!r} that no "
                                       "'response.output_item.added' announced as a tool call",
                                       (event_type, payload))
            if self._text_on and event_type == "response.output_item.done":
                return self._text_event(item, index, event_type, payload)
            if event_type in LIFECYCLE:
                return self._snapshot(event_type, payload)
            return [Emit(payload, True, event_type)]
        except UnreadableText as problem:
            return self._malformed(str(problem), (event_type, payload), text=self._text_on)

    def _item_added(self, event_type: str, payload: dict) -> list[GateItem]:
        data, index = payload.get("item"), payload.get("output_index")
        if not isinstance(data, dict) or type(index) is not int or index < 0 or index in self._items:
            raise UnreadableText("an output item has no valid 'item' or 'output_index'")
        if self._text_on and is_message(data):
            parts = message_parts(data)  # checked before anything changes
            item = self._items[index] = OutputItem(index, message=True, item_id=str(data.get("id") or ""))
            return self._filled(item, event_type, payload, parts)
        item = self._items[index] = OutputItem(index, message=data.get("type") == "message")
        if not (self._gate_tools and data.get("type") in CALL_ITEM_TYPES):
            return [Emit(payload, True, event_type)]
        item.call = new_call(data, index)
        item.call.held.append(Emit(payload, True, event_type))
        return self._apply(self._checker.check(item.call, complete=False), item)

    def _call_event(self, item: OutputItem, call: StreamCall, event_type: str, payload: dict) -> list[GateItem]:
        final: dict | None = payload.get("item") if event_type == "response.output_item.done" else None
        fragment = payload.get("delta") if event_type in ARGUMENT_DELTAS else None
        fragment = fragment if isinstance(fragment, str) else ""
        if call.state == "blocked":
            return []
        why = self._checker.tampered(call, "", fragment) or restated(call, event_type, payload, final)
        if why:
            return self._malformed(why, (event_type, payload), call)
        if call.state == "released":
            return [Emit(payload, True, event_type)]
        call.held.append(Emit(payload, True, event_type))
        call.argument_parts.append(fragment)
        complete = event_type in ARGUMENT_DONE or final is not None
        if event_type in ARGUMENT_DONE:
            done = payload.get("arguments", payload.get("input"))
            call.final_arguments = done if isinstance(done, str) else call.arguments
        if isinstance(final, dict):
            call.final_arguments = item_arguments(final, final=True)[0]
            call.tool = item_ref(final)
        return self._apply(self._checker.check(call, complete=complete), item) if complete else []

    # -- text ---------------------------------------------------------------------

    def _text_event(self, item: OutputItem | None, index: Any, event_type: str, payload: dict) -> list[GateItem]:
        assert self._text is not None
        final = payload.get("item") if event_type == "response.output_item.done" else None
        if final is not None and not is_message(final):
            return [Emit(payload, True, event_type)]
        if item is None or not item.message:
            raise UnreadableText(f"output text at output index {index!r} that no "
                                 "'response.output_item.added' announced as a message")
        part = payload.get("content_index", 0)
        if type(part) is not int or part < 0:
            raise UnreadableText(f"content index {part!r} is not a non-negative integer")
        data = payload.get("part")
        is_delta = event_type == TEXT_DELTA
        if is_delta or event_type == "response.content_part.added":
            # The hot path (deltas): one feed; the event goes out as it came unless the filter
            # held or redacted. A filled part is fed the same: the client adds the deltas to it.
            text = payload.get("delta") if is_delta else data.get("text") if isinstance(data, dict) else None
            if not text and not is_delta:
                return [Emit(payload, True, event_type)]
            if not isinstance(text, str):
                raise UnreadableText("a text delta or filled content part is not a string")
            opened = self._open
            out = [] if opened is not None and opened[0] is item and opened[1] == part else self._start_part(item, part)
            piece = self._text.feed(self._fresh(text))
            item.texts[part].append(piece)
            if self._text.failure is not None:
                return self._text_failure()
            if piece == text:
                out.append(Emit(payload, True, event_type))
            else:
                change = {"delta": piece} if is_delta else {"part": {**data, "text": piece}}
                out.append(Emit({**payload, **change}, False, event_type))
            return out
        if final is not None:
            return self._item_done(item, event_type, payload, final)
        if event_type == "response.output_text.done":
            return self._part_done(item, part, event_type, payload, payload.get("text"), "text")
        if isinstance(data, dict):  # response.content_part.done
            return self._part_done(item, part, event_type, payload, data.get("text"), "part")
        return [Emit(payload, True, event_type)]

    def _start_part(self, item: OutputItem, part: int) -> list[GateItem]:
        """Make (item, part) the open part. Parts stream one after another (the filter
        holds one tail), so the part open before ends here. An ended part that goes on
        could split a key across its end, where no scan sees it: that fails closed."""
        if part in item.texts:
            raise UnreadableText(f"text for content part {part} of output index {item.output_index} "
                                 "after that part ended")
        out = self._close_part()
        item.texts[part] = []
        self._open = (item, part)
        return out

    def _close_part(self) -> list[GateItem]:
        """End the open part: what the filter holds is scanned as complete and goes out
        as one more delta, so the text the client assembled is the one done events state."""
        opened, self._open = self._open, None
        if opened is None:
            return []
        assert self._text is not None
        item, part = opened
        rest = self._text.flush()
        if self._text.failure is not None:
            return self._text_failure()
        if not rest:
            return []
        item.texts[part].append(rest)
        numbered = self._sequence.next is not None
        return [Emit(text_delta(item.item_id, item.output_index, part, rest, numbered=numbered), False, TEXT_DELTA)]

    def _part_done(self, item: OutputItem, part: int, event_type: str, payload: dict, text: Any,
                   key: str) -> list[GateItem]:
        """`output_text.done` (`key` "text") or `content_part.done` (`key` "part"): the
        part's text as it went out; a part that never streamed is redacted whole."""
        assert self._text is not None
        if text is not None and not isinstance(text, str):
            raise UnreadableText("a content part's text is not a string")
        opened = self._open
        out = self._close_part() if opened is not None and opened[0] is item and opened[1] == part else []
        if self._failed:
            return out
        if part not in item.texts:
            if text is None:
                return [*out, Emit(payload, True, event_type)]
            item.texts[part] = [self._whole(text)]
            if self._text.failure is not None:
                return self._text_failure()
        joined = "".join(item.texts[part])
        change = {"text": joined} if key == "text" else {"part": {**payload["part"], "text": joined}}
        return [*out, self._with_text(event_type, payload, change)]

    def _filled(self, item: OutputItem, event_type: str, payload: dict, parts: list[dict]) -> list[GateItem]:
        """`output_item.added` for a message with filled content: its last filled part may
        go on in deltas, so it streams; the parts before it are whole."""
        assert self._text is not None
        filled = [number for number, part in enumerate(parts) if part.get("text")]
        if not filled:
            return [Emit(payload, True, event_type)]
        out = self._start_part(item, filled[-1])
        item.texts[filled[-1]].append(self._text.feed(self._fresh(parts[filled[-1]]["text"])))
        data = stated_message(payload["item"], parts, item.texts, self._whole)
        if self._text.failure is not None:
            return self._text_failure()
        return [*out, self._with_text(event_type, payload, {"item": data})]

    def _item_done(self, item: OutputItem, event_type: str, payload: dict, final: dict) -> list[GateItem]:
        assert self._text is not None
        parts = message_parts(final)
        out = self._close_part() if self._open is not None and self._open[0] is item else []
        if self._failed:
            return out
        final = stated_message(final, parts, item.texts, self._whole)
        if self._text.failure is not None:
            return self._text_failure()
        return [*out, self._with_text(event_type, payload, {"item": final})]

    def _stated_output(self, output: list, checked: list[list[dict] | None], *, final: bool) -> list:
        """`output` (its messages' parts `checked`) with each message stated as it went out.
        The `final` output keeps what it redacted (a message never announced: in a new
        item), so a terminal event run again after an approval says the same."""
        assert self._text is not None
        new_output = []
        for index, (data, parts) in enumerate(zip(output, checked, strict=True)):
            if parts is not None:
                item = self._items.get(index)
                if item is None and final:
                    item = self._items[index] = OutputItem(index, message=True)
                texts = {} if item is None or not item.message else item.texts
                data = stated_message(data, parts, texts if final else dict(texts), self._whole)
            new_output.append(data)
        return new_output

    def _snapshot(self, event_type: str, payload: dict) -> list[GateItem]:
        """A lifecycle event: the response so far. Its call items are judged as in the
        terminal event; a part still streaming states what went out so far."""
        response = payload.get("response")
        output = response.get("output") if isinstance(response, dict) else None
        if not isinstance(output, list) or not output:  # the usual snapshot: nothing to judge
            return [Emit(payload, True, event_type)]
        checked = output_parts(output) if self._text_on else None  # before anything changes
        out, new_output = self._judge_calls((event_type, payload), output) if self._gate_tools else ([], output)
        if new_output is None:
            return out
        if checked is not None:
            assert self._text is not None
            new_output = self._stated_output(new_output, checked, final=False)
            if self._text.failure is not None:
                return self._text_failure()
        return [*out, self._with_text(event_type, payload, {"response": {**response, "output": new_output}})]

    def _fresh(self, text: str) -> str:
        """`text`, new to the filter. Once the response ended, the rules that read its
        whole text have judged it: new text was no part of that and fails closed."""
        assert self._text is not None
        if text and self._text.judged:
            raise UnreadableText("output text after the response ended")
        return text

    def _whole(self, text: str) -> str:
        assert self._text is not None
        return self._text.whole(self._fresh(text))

    def _with_text(self, event_type: str, payload: dict, changes: dict) -> Emit:
        changed = {**payload, **changes}
        return Emit(payload, True, event_type) if changed == payload else Emit(changed, False, event_type)

    def _terminal(self, event_type: str, payload: dict) -> list[GateItem]:
        response = payload.get("response")
        output = response.get("output") if isinstance(response, dict) else None
        texts: list | None = output if isinstance(output, list) else None
        out: list[GateItem] = []
        if self._text_on and texts is not None:
            assert self._text is not None
            checked = output_parts(texts)  # before the open part's tail goes out
            out = self._close_part()
            if self._failed:
                return out
            # Before `_settle_all`, whose `close()` runs the rules that read the whole text.
            texts = self._stated_output(texts, checked, final=True)
            if self._text.failure is not None:
                return self._text_failure()
        out.extend(self._settle_all())
        if self._holding is not None or self._failed:
            return out
        if texts is None:
            return [*out, Emit(payload, True, event_type)]
        assert isinstance(response, dict)
        judged, new_output = self._judge_calls((event_type, payload), texts) if self._gate_tools else ([], texts)
        out.extend(judged)
        if new_output is None:
            return out
        if new_output == output:
            return [*out, Emit(payload, True, event_type)]
        return [*out, Emit({**payload, "response": {**response, "output": new_output}}, False, event_type)]

    def _judge_calls(self, event: tuple[str, dict], output: list) -> tuple[list[GateItem], list | None]:
        """`output` (stated by `event`) with its call items as judged: a call not streamed
        is judged here (and replaced if blocked), a streamed one must state what was
        judged, one still being judged cannot be stated yet. Returns what goes out first,
        and the output (None: a hold or a failure stopped the event)."""
        out: list[GateItem] = []
        new_output = []
        final = event[0] in TERMINAL  # the output the client acts on, whatever a status says
        for index, data in enumerate(output):
            item = self._items.get(index)
            if isinstance(data, dict) and data.get("type") in CALL_ITEM_TYPES:
                if item is None or item.call is None:
                    item = self._items[index] = OutputItem(index, call=new_call(data, index, final=final))
                    assert item.call is not None
                    item.call.final_arguments = item_arguments(data, final=final)[0]
                    out.extend(self._apply(self._checker.check(item.call, complete=True), item, emit=False))
                    if self._holding is not None or self._failed:
                        return out, None
                elif item.call.state != "blocked" and (why := (
                        restated(item.call, "", {}, data) if item.call.settled
                        else f"tool call '{item.call.name}' is stated whole before it was judged")):
                    return [*out, *self._malformed(why, event, item.call)], None
                data = item.replacement or data
            new_output.append(data)
        return out, new_output

    def _settle_all(self) -> list[GateItem]:
        out = self._close_part() if self._text_on else []  # the response ends (without a terminal: at EOF)
        if self._failed:
            return out
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

    def _apply(self, step: Step, item: OutputItem, *, denied: bool = False, reason: str | None = None,
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

    def _malformed(self, error: str, event: tuple[str, dict], call: StreamCall | None = None, *,
                   text: bool = False) -> list[GateItem]:
        """Fail the stream closed at `event`: its tool calls (with `text`: or its text)
        cannot be read, or changed."""
        decision = self._policies.malformed_call(error, call.name if call else None, text=text)
        self._call_decisions.append(decision)
        if decision.shadow:
            return self._pass_on(event, text=text)
        self._failed = True
        return [Fail("blocked_by_policy", f"{decision.message} ({error})", decision.rule)]

    def _pass_on(self, event: tuple[str, dict], *, text: bool = False) -> list[GateItem]:
        """Only shadow rules look at the tool calls (`text`: and the text), so a malformed
        stream goes on as it came, as without them: what the calls (and the filter) held,
        then `event`, and the rest of the stream, no longer gated."""
        out: list[GateItem] = []
        for item in self._items.values():
            if item.call is not None:
                out.extend(item.call.held)
                item.call = None
        self._gate_tools = False
        if text:
            out.extend(self._close_part())
            self._text_on = False
        return out + self._event(*event)

    def _text_failure(self) -> list[GateItem]:
        assert self._text is not None and self._text.failure is not None
        self._failed = True
        return [failure(self._text.failure)]
