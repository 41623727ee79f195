"""Responses API output items and stream events that the gates write or rewrite.

A blocked tool-call item is replaced by an assistant message item at the same
output index; in a stream that message arrives as the usual event sequence (item
added, part added, text delta, text done, part done, item done). The stream's event
types, grouped by what they carry, are named here too, with what a gate keeps of one
output index and how it reads a call item.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.policy.gating import Emit, GateItem
from gateway.policy.streamcalls import StreamCall
from gateway.policy.toolrefs import CALL_ITEM_TYPES, item_arguments, item_ref

TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
ARGUMENT_DELTAS = frozenset({"response.function_call_arguments.delta", "response.mcp_call_arguments.delta",
                             "response.custom_tool_call_input.delta"})
ARGUMENT_DONE = frozenset({"response.function_call_arguments.done", "response.mcp_call_arguments.done",
                           "response.custom_tool_call_input.done"})
TEXT_DELTA = "response.output_text.delta"
# Events about one content part of a message, and the text in it.
PART_EVENTS = frozenset({TEXT_DELTA, "response.output_text.done", "response.content_part.added",
                         "response.content_part.done"})
# They carry the response so far: a client (the OpenAI SDK) reads output items from them too.
LIFECYCLE = frozenset({"response.created", "response.queued", "response.in_progress"})
# Events that state the output so far: the call items in them are judged like streamed ones.
STATES_OUTPUT = TERMINAL | LIFECYCLE


def states_a_call(event_type: str, payload: dict) -> bool:
    """Whether an event carries a tool call's arguments or the whole call item."""
    if event_type in ARGUMENT_DELTAS or event_type in ARGUMENT_DONE:
        return True
    final = payload.get("item") if event_type == "response.output_item.done" else None
    return isinstance(final, dict) and final.get("type") in CALL_ITEM_TYPES


@dataclass(eq=False)
class OutputItem:
    """What a stream gate knows of one output index: its call, or its message and the
    text that went out for it."""

    output_index: int
    call: StreamCall | None = None
    message: bool = False
    replacement: dict | None = None
    item_id: str = ""
    # content_index -> the text that went out for that part (after redaction). A part
    # in here has started: only the open part (the gate's `_open`) may get more.
    texts: dict[int, list[str]] = field(default_factory=dict)


def new_call(data: dict[str, Any], output_index: int, *, final: bool = False) -> StreamCall:
    """The `StreamCall` for a call item first seen at `output_index` (`final`: in an event
    that states it as the client runs it, see `item_arguments`)."""
    arguments, is_json = item_arguments(data, final=final)
    key = data.get("id") if isinstance(data.get("id"), str) and data.get("id") else f"output_{output_index}"
    return StreamCall(key, tool=item_ref(data), argument_parts=[arguments] if arguments else [], is_json=is_json)


def restated(call: StreamCall, event_type: str, payload: dict[str, Any], final: dict[str, Any] | None) -> str | None:
    """Why an event that states the call whole (`final`: the item it states) disagrees with
    what was judged (its tool, its complete arguments) or with the arguments that
    streamed, if it does."""
    stated = payload.get("arguments", payload.get("input")) if event_type in ARGUMENT_DONE else None
    if final is not None:
        # The whole ToolRef: an MCP call's name is its server, the tool on it is `related`.
        if call.state != "pending" and item_ref(final) != call.tool:
            return f"tool call '{call.name}' changed its name after it was checked"
        stated = item_arguments(final, final=True)[0]
    if not isinstance(stated, str):
        return None
    if call.checked_arguments is not None:
        if stated != call.checked_arguments:
            return f"tool call '{call.name}' changed its arguments after they were checked"
    elif call.state != "released" and call.arguments and stated != call.arguments:
        # The rules read the stated arguments, the client may assemble the deltas.
        return f"tool call '{call.name}' states other arguments than it streamed"
    return None


def message_item(item_id: str, text: str) -> dict[str, Any]:
    """A completed assistant message holding `text`."""
    return {
        "id": item_id,
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def message_events(message: dict[str, Any], output_index: int) -> list[dict[str, Any]]:
    """The stream events that deliver `message` at `output_index`; their
    `sequence_number` is None until the gate numbers them."""
    text = message["content"][0]["text"]
    where = {"item_id": message["id"], "output_index": output_index, "content_index": 0}
    empty_part = {"type": "output_text", "text": "", "annotations": []}
    events = [
        {"type": "response.output_item.added", "output_index": output_index,
         "item": {**message, "status": "in_progress", "content": []}},
        {"type": "response.content_part.added", **where, "part": empty_part},
        {"type": "response.output_text.delta", **where, "delta": text, "logprobs": []},
        {"type": "response.output_text.done", **where, "text": text, "logprobs": []},
        {"type": "response.content_part.done", **where, "part": message["content"][0]},
        {"type": "response.output_item.done", "output_index": output_index, "item": message},
    ]
    return [{**event, "sequence_number": None} for event in events]


def text_delta(item_id: str, output_index: int, content_index: int, delta: str, *,
               numbered: bool) -> dict[str, Any]:
    """A `response.output_text.delta` the gate adds (what the text filter held back,
    released when its part ends); `sequence_number` None until the gate numbers it."""
    event: dict[str, Any] = {"type": "response.output_text.delta", "item_id": item_id,
                             "output_index": output_index, "content_index": content_index,
                             "delta": delta, "logprobs": []}
    if numbered:
        event["sequence_number"] = None
    return event


class UnreadableText(ValueError):
    """Output text a gate cannot place or read (an unknown or non-integer index, a text
    that is not a string): what it says cannot be judged, so the stream fails closed."""


def is_message(data: Any) -> bool:
    return isinstance(data, dict) and data.get("type") == "message"


def message_parts(message: dict[str, Any]) -> list[dict[str, Any]]:
    """The content parts of a message item, checked: any `text` in them is a string."""
    content = message.get("content")
    if content is None:
        return []
    # A client shows whatever it finds here, in whatever shape: a shape the gate cannot
    # redact must not go out.
    if not isinstance(content, list) or not all(isinstance(part, dict) for part in content):
        raise UnreadableText("a message's content is not a list of objects")
    if any(part.get("text") is not None and not isinstance(part["text"], str) for part in content):
        raise UnreadableText("a message's text is not a string")
    return content


def output_parts(output: list[Any]) -> list[list[dict[str, Any]] | None]:
    """`message_parts` of each message in a response's output (None for other items)."""
    return [message_parts(data) if is_message(data) else None for data in output]


def stated_message(message: dict[str, Any], parts: list[dict[str, Any]], texts: dict[int, list[str]],
                   whole: Callable[[str], str]) -> dict[str, Any]:
    """`message` with each part's text as it went out: a part in `texts` (content index ->
    pieces) as those say, any other through `whole`, kept in `texts` as what went out for
    that part from now on (pass a copy to keep nothing)."""
    new_parts: list[dict[str, Any]] | None = None
    for number, part in enumerate(parts):
        text = part.get("text")
        if text is None or (not text and number not in texts):
            continue  # an empty part that never streamed may still stream: it is not kept
        if number not in texts:
            texts[number] = [whole(text)]
        new = "".join(texts[number])
        if new != text:
            new_parts = new_parts or list(parts)
            new_parts[number] = {**part, "text": new}
    return message if new_parts is None else {**message, "content": new_parts}


class Sequencer:
    """Keeps `sequence_number` consecutive across held, dropped and added events, so the
    client still sees 0, 1, 2, ..."""

    def __init__(self) -> None:
        self.next: int | None = None  # None until the first numbered event

    def number(self, items: list[GateItem]) -> list[GateItem]:
        result: list[GateItem] = []
        for entry in items:
            if isinstance(entry, Emit) and isinstance(entry.payload, dict) and "sequence_number" in entry.payload:
                entry = self._renumber(entry)
            result.append(entry)
        return result

    def _renumber(self, entry: Emit) -> Emit:
        number: Any = entry.payload["sequence_number"]
        if self.next is None:
            self.next = number if isinstance(number, int) and not isinstance(number, bool) else 0
        expected = self.next
        self.next += 1
        if number == expected:
            return entry
        return Emit({**entry.payload, "sequence_number": expected}, False, entry.event)
