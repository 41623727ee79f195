"""Server-sent events: an incremental parser and the encoder.

The parser keeps each event's exact wire bytes so that the gateway can relay an event
it did not change without re-serializing it; the payload is decoded from JSON only
when someone asks (`SSEEvent.json`).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

import orjson

DONE = b"[DONE]"
MAX_EVENT_BYTES = 8 * 1024 * 1024
"""An upstream event larger than this ends the stream (the upstream is not trusted)."""
_UNSET: Any = object()


class SSEParseError(ValueError):
    """The byte stream is not valid SSE (or an event exceeds the size limit)."""


class SSEEvent:
    """One event: its `event:` name (if any), its `data:` payload and its wire bytes."""

    __slots__ = ("_json", "data", "event", "raw")

    def __init__(self, data: bytes, event: str | None = None, raw: bytes | None = None,
                 parsed: Any = _UNSET) -> None:
        self.data = data
        self.event = event
        self.raw = raw
        self._json = parsed

    @classmethod
    def of(cls, payload: Any, event: str | None = None) -> SSEEvent:
        """A new event from a JSON-serializable payload (its wire bytes built lazily)."""
        return cls(orjson.dumps(payload), event, None, payload)

    @property
    def is_done(self) -> bool:
        return self.data == DONE

    def json(self) -> Any:
        """The payload decoded as JSON (cached). Raises `orjson.JSONDecodeError`."""
        if self._json is _UNSET:
            self._json = orjson.loads(self.data)
        return self._json

    def replace(self, payload: Any) -> SSEEvent:
        """A copy carrying a changed payload; its bytes are re-encoded."""
        return SSEEvent.of(payload, self.event)

    def encode(self) -> bytes:
        if self.raw is None:
            self.raw = encode(self.data, self.event)
        return self.raw

    def __repr__(self) -> str:
        return f"SSEEvent(event={self.event!r}, data={self.data[:80]!r})"


def encode(data: bytes, event: str | None = None) -> bytes:
    if event is None:
        return b"data: " + data + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"


def encode_json(payload: Any, event: str | None = None) -> bytes:
    return encode(orjson.dumps(payload), event)


DONE_EVENT = SSEEvent(DONE, None, b"data: [DONE]\n\n")
COMMENT = b": keep-alive\n\n"


class SSEParser:
    """Feed bytes as they arrive; get complete events back."""

    def __init__(self, max_event_bytes: int | None = None) -> None:
        self._buffer = b""
        self._cr = False
        self._max = MAX_EVENT_BYTES if max_event_bytes is None else max_event_bytes

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if self._cr:  # the previous read ended in CR: it and a leading LF are one line ending
            chunk = chunk[1:] if chunk.startswith(b"\n") else chunk
            self._cr = False
        if b"\r" in chunk:
            if chunk.endswith(b"\r"):
                self._cr = True  # CR LF may be split between reads: wait for the next byte
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        buffer = self._buffer + chunk if self._buffer else chunk
        events: list[SSEEvent] = []
        start = 0
        while True:
            end = buffer.find(b"\n\n", start)
            if end < 0:
                break
            if end - start > self._max:
                raise SSEParseError(f"an upstream event exceeds {self._max} bytes")
            block = buffer[start:end + 2]
            start = end + 2
            event = _parse_block(block)
            if event is not None:
                events.append(event)
        self._buffer = buffer[start:]
        if len(self._buffer) > self._max:
            raise SSEParseError(f"an upstream event exceeds {self._max} bytes")
        return events

    def finish(self) -> list[SSEEvent]:
        """Events left when the stream ends without a final blank line."""
        rest, self._buffer = self._buffer, b""
        if not rest.strip():
            return []
        event = _parse_block(rest + b"\n\n" if not rest.endswith(b"\n") else rest + b"\n")
        return [event] if event is not None else []


def _parse_block(block: bytes) -> SSEEvent | None:
    if block.startswith(b"data: ") and block.count(b"\n") == 2:
        # The common case: a single `data:` line; keep the exact bytes for relaying.
        return SSEEvent(block[6:-2], None, block)
    name: str | None = None
    data_lines: list[bytes] = []
    for line in block.split(b"\n"):
        if not line or line.startswith(b":"):
            continue
        field, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if field == b"data":
            data_lines.append(value)
        elif field == b"event":
            name = value.decode("utf-8", "replace")
    if not data_lines:
        return None
    return SSEEvent(b"\n".join(data_lines), name, block)


async def iter_events(chunks: AsyncIterable[bytes], max_event_bytes: int | None = None
                      ) -> AsyncIterator[SSEEvent]:
    parser = SSEParser(max_event_bytes)
    async for chunk in chunks:
        for event in parser.feed(chunk):
            yield event
    for event in parser.finish():
        yield event
