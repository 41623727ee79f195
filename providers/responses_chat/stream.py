"""A stream of `chat.completion.chunk`s, rewritten as the Responses API's stream of events.

`ChatToResponsesStream` is fed one chunk at a time and answers with the Responses events
that chunk causes, so text is relayed as it arrives and never buffered. The event order
follows OpenAI's: `response.created` and `response.in_progress` first; for each output
item `response.output_item.added`, its content parts and deltas, then the `.done` events;
finally `response.completed` (or `response.incomplete` when the chat answer stopped at the
length limit or a content filter) carrying the whole response and its usage.

How chat deltas become output items:
- `reasoning_content` deltas fill a reasoning item; text and `refusal` deltas fill an
  assistant message (an `output_text` and a `refusal` part).
- Each tool call (by its chat `index`) is its own `function_call` item. Chat servers may
  interleave the argument deltas of parallel calls, so every call stays open until the
  chat choice finishes and closes then, in output order; every event names its
  `output_index` and `item_id`, which is how clients (the OpenAI SDK's accumulator
  included) tell items apart.
- A message or reasoning item closes as soon as something else starts, so text that
  follows a tool call opens a new message after it, and the output keeps the order in
  which the model produced things.

The terminal event waits for the usage chunk (`"choices": []` with `usage`) that follows
the finish reason, or for `finish()` when the chat stream ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from providers.responses_chat.response import (
    IdFactory,
    chat_text,
    created_at_of,
    function_call_item,
    message_item,
    output_text_part,
    random_id,
    reasoning_item,
    reasoning_text_part,
    refusal_part,
    response_object,
    responses_usage,
    terminal_status,
)

Event = tuple[str, dict[str, Any]]

# Per content-part kind: the prefix of its delta/done events and the done event's text field.
_PART_EVENTS = {
    "output_text": ("response.output_text", "text"),
    "refusal": ("response.refusal", "refusal"),
    "reasoning_text": ("response.reasoning_text", "text"),
}


def _logprobs(part_kind: str) -> dict[str, Any]:
    """Text deltas and dones carry (empty) logprobs, as OpenAI sends them; the others do not."""
    return {"logprobs": []} if part_kind == "output_text" else {}


@dataclass(eq=False)
class _Part:
    kind: str
    text: str = ""

    def payload(self) -> dict[str, Any]:
        if self.kind == "output_text":
            return output_text_part(self.text)
        if self.kind == "refusal":
            return refusal_part(self.text)
        return reasoning_text_part(self.text)


@dataclass(eq=False)
class _ContentItem:
    """An assistant message or a reasoning item: an item made of content parts."""

    type: str
    id: str
    output_index: int
    parts: list[_Part] = field(default_factory=list)
    status: str = "in_progress"

    def snapshot(self) -> dict[str, Any]:
        content = [part.payload() for part in self.parts]
        if self.type == "message":
            return message_item(self.id, content, self.status)
        return reasoning_item(self.id, content, self.status)


@dataclass(eq=False)
class _CallItem:
    id: str
    output_index: int
    call_id: str
    name: str
    arguments: str = ""
    status: str = "in_progress"

    def snapshot(self) -> dict[str, Any]:
        return function_call_item(self.id, self.call_id, self.name, self.arguments, self.status)


class ChatToResponsesStream:
    """Translates one chat completion stream into the events of one Responses stream."""

    def __init__(
        self,
        request: dict[str, Any],
        response_id: str | None = None,
        *,
        created_at: int | None = None,
        new_id: IdFactory = random_id,
    ) -> None:
        self._request = request
        self._new_id = new_id
        self._response_id = response_id or new_id("resp")
        self._created_at = created_at
        self._model: str = request.get("model") or ""
        self._events: list[Event] = []
        self._sequence = 0
        self._started = False
        self._items: list[_ContentItem | _CallItem] = []
        self._content: _ContentItem | None = None
        self._calls: dict[int, _CallItem] = {}
        self._finish_reason: str | None = None
        self._items_closed = False
        self._usage: dict[str, Any] | None = None
        self._status = "in_progress"

    @property
    def response(self) -> dict[str, Any]:
        """The response object as assembled so far (complete once the stream has ended)."""
        _, reason = terminal_status(self._finish_reason)
        return response_object(
            self._request,
            response_id=self._response_id,
            created_at=self._created_at or 0,
            model=self._model,
            status=self._status,
            output=[item.snapshot() for item in self._items],
            usage=self._usage,
            incomplete_reason=reason if self._status == "incomplete" else None,
        )

    @property
    def finish_reason(self) -> str | None:
        """The chat finish reason seen so far; None at the end means the chat stream was cut."""
        return self._finish_reason

    def feed(self, chunk: dict[str, Any]) -> list[Event]:
        """Events caused by one `chat.completion.chunk`, in order."""
        if self._status != "in_progress":
            return []
        if chunk.get("model"):
            self._model = chunk["model"]
        if not self._started:
            self._start(chunk)
        if chunk.get("usage"):
            self._usage = responses_usage(chunk["usage"])
        choices = chunk.get("choices") or []
        for choice in choices:
            if choice.get("index", 0) != 0 or self._items_closed:
                continue  # Responses has one answer; only the first chat choice is that answer.
            self._delta(choice.get("delta") or {})
            if choice.get("finish_reason"):
                self._finish_reason = choice["finish_reason"]
                self._close_items()
        if self._items_closed and not choices and chunk.get("usage"):
            self._terminate()
        return self._take()

    def finish(self) -> list[Event]:
        """At the end of the chat stream: close what is open and emit the terminal event once."""
        if self._status == "in_progress":
            if not self._started:
                self._start({})
            self._close_items()
            self._terminate()
        return self._take()

    # --- lifecycle ----------------------------------------------------------------------

    def _start(self, chunk: dict[str, Any]) -> None:
        self._started = True
        self._created_at = created_at_of(self._created_at, chunk)
        self._emit("response.created", response=self.response)
        self._emit("response.in_progress", response=self.response)

    def _terminate(self) -> None:
        self._status, _ = terminal_status(self._finish_reason)
        self._emit(f"response.{self._status}", response=self.response)

    def _take(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    def _emit(self, event_type: str, **fields: Any) -> None:
        self._events.append((event_type, {"type": event_type, "sequence_number": self._sequence, **fields}))
        self._sequence += 1

    def _emit_for(self, event_type: str, item: _ContentItem | _CallItem, **fields: Any) -> None:
        self._emit(event_type, item_id=item.id, output_index=item.output_index, **fields)

    # --- deltas -------------------------------------------------------------------------

    def _delta(self, delta: dict[str, Any]) -> None:
        if delta.get("reasoning_content"):
            self._content_delta("reasoning", "reasoning_text", delta["reasoning_content"])
        content = chat_text(delta.get("content"))
        if content:
            self._content_delta("message", "output_text", content)
        if delta.get("refusal"):
            self._content_delta("message", "refusal", delta["refusal"])
        for call in delta.get("tool_calls") or []:
            self._tool_call_delta(call)

    def _content_delta(self, item_type: str, part_kind: str, text: str) -> None:
        item = self._content
        if item is None or item.type != item_type:
            self._close_content()
            item = _ContentItem(item_type, self._new_id("msg" if item_type == "message" else "rs"),
                                len(self._items))
            self._add(item)
            self._content = item
        part_index, part = next(
            ((index, part) for index, part in enumerate(item.parts) if part.kind == part_kind),
            (len(item.parts), None),
        )
        if part is None:
            part = _Part(part_kind)
            item.parts.append(part)
            self._emit_for("response.content_part.added", item, content_index=part_index,
                           part=part.payload())
        part.text += text
        prefix, _ = _PART_EVENTS[part_kind]
        self._emit_for(f"{prefix}.delta", item, content_index=part_index, delta=text, **_logprobs(part_kind))

    def _tool_call_delta(self, delta: dict[str, Any]) -> None:
        function = delta.get("function") or {}
        index = self._call_index(delta)
        call = self._calls.get(index)
        if call is None:
            self._close_content()
            call = _CallItem(self._new_id("fc"), len(self._items),
                             call_id=delta.get("id") or self._new_id("call"),
                             name=function.get("name") or "")
            self._calls[index] = call
            self._add(call)
        elif not call.name and function.get("name"):
            call.name = function["name"]
        if function.get("arguments"):
            call.arguments += function["arguments"]
            self._emit_for("response.function_call_arguments.delta", call, delta=function["arguments"])

    def _call_index(self, delta: dict[str, Any]) -> int:
        index = delta.get("index")
        if isinstance(index, int):
            return index
        # Servers that omit `index` send one call at a time: a new id starts the next call.
        known_ids = {call.call_id for call in self._calls.values()}
        if not self._calls or (delta.get("id") and delta["id"] not in known_ids):
            return max(self._calls, default=-1) + 1
        return max(self._calls)

    # --- items --------------------------------------------------------------------------

    def _add(self, item: _ContentItem | _CallItem) -> None:
        self._items.append(item)
        self._emit("response.output_item.added", output_index=item.output_index, item=item.snapshot())

    def _close_content(self) -> None:
        """Close the open message or reasoning item: whatever follows starts a new item."""
        if self._content is not None:
            self._close(self._content, "completed")
            self._content = None

    def _close_items(self) -> None:
        if self._items_closed:
            return
        self._items_closed = True
        status, _ = terminal_status(self._finish_reason)
        open_items = [item for item in self._items if item.status == "in_progress"]
        for item in open_items:
            # A cut-off answer stops inside its last item; the items before it are whole.
            self._close(item, status if item is self._items[-1] else "completed")
        self._content = None

    def _close(self, item: _ContentItem | _CallItem, status: str) -> None:
        if isinstance(item, _CallItem):
            # `name` is not in every SDK's type, but OpenAI sends it and some clients require it.
            self._emit_for("response.function_call_arguments.done", item, arguments=item.arguments,
                           name=item.name)
        else:
            for index, part in enumerate(item.parts):
                prefix, text_field = _PART_EVENTS[part.kind]
                self._emit_for(f"{prefix}.done", item, content_index=index, **{text_field: part.text},
                               **_logprobs(part.kind))
                self._emit_for("response.content_part.done", item, content_index=index,
                               part=part.payload())
        item.status = status
        self._emit("response.output_item.done", output_index=item.output_index, item=item.snapshot())
