"""A lean HTTP/1.1 client connection for the load generator.

A general client (aiohttp's, httpx) spends 100+ µs of CPU per request, as much as
the fake upstream: on a two-core machine the load generator would then measure itself.
This one sends prepared request bytes over a keep-alive `asyncio.Protocol` and parses
only what it must (status, Content-Length or chunked framing), so a request costs the
client a few tens of µs. It also notes when each piece of the body arrives, which is
how the benchmark sees whether a proxy relays a stream chunk by chunk or coalesces it.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field

# An event that carries something: non-empty text, or the start of a tool call. (The role
# chunk that opens a chat stream has "content":"" and does not count.)
FIRST_TOKEN = re.compile(rb'"content":"[^"]|"tool_calls":\[')


def prepare(method: str, host: str, port: int, path: str, headers: dict[str, str], body: bytes) -> bytes:
    """The bytes of one request, built once and sent as many times as needed."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass(slots=True)
class Response:
    """One answer as it arrived: status, timings (perf_counter seconds) and its pieces."""

    sent: float
    status: int = 0
    first_body: float | None = None
    """When the first SSE event ("data:") arrived; for a JSON answer, the first body byte."""
    first_token: float | None = None
    """When the first event with content arrived (text, or a tool call): time to first token."""
    done: float | None = None
    reads: int = 0
    """Socket reads that carried body bytes (1 = the body arrived in one piece)."""
    events: int = 0
    """SSE events seen ("data:" lines)."""
    most_events_in_a_read: int = 0
    """More than one means the proxy coalesced events the upstream sent apart."""
    sse: bool = False
    saw_done: bool = False
    """The stream's `data: [DONE]` arrived."""
    error_event: bool = False
    """The stream carried an error event (`data: {"error": ...}`)."""
    close: bool = False


@dataclass(slots=True)
class _Framing:
    """Where we are in the body: a known length, or the chunked encoding's next size line."""

    remaining: int = -1
    """Body bytes still due for Content-Length framing (-1: chunked)."""
    chunk_left: int = 0
    """Bytes left of the current chunk; 0 = at a size line."""
    finished: bool = False
    pending: bytearray = field(default_factory=bytearray)


class Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time (no pipelining)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._head = bytearray()
        self._framing: _Framing | None = None
        self._response: Response | None = None
        self._waiter: asyncio.Future[Response] | None = None

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(cls, host, port)
        return connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not an asyncio.Transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionError(f"connection lost: {exc!r}"))

    @property
    def current(self) -> Response | None:
        """The answer in progress (or the last one)."""
        return self._response

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def send(self, request: bytes, sent: float | None = None) -> asyncio.Future[Response]:
        """Send a prepared request; the future resolves when its whole answer is in."""
        assert self.transport is not None, "send() before the connection opened"
        self._head.clear()
        self._framing = None
        self._response = Response(sent=sent if sent is not None else time.perf_counter())
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return self._waiter

    def data_received(self, data: bytes) -> None:
        response = self._response
        if response is None or self._waiter is None or self._waiter.done():
            return  # nothing asked for: a late byte of a connection we are dropping
        now = time.perf_counter()
        if self._framing is None:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                return
            self._framing = self._parse_head(bytes(self._head[:end]), response)
            data = bytes(self._head[end + 4:])
            if not data and not self._framing.finished:
                return
        if data:
            self._note_body(data, response, now)
            self._feed(data)
        if self._framing.finished:
            response.done = now
            self._waiter.set_result(response)

    @staticmethod
    def _parse_head(head: bytes, response: Response) -> _Framing:
        lines = head.split(b"\r\n")
        response.status = int(lines[0].split(b" ", 2)[1])
        framing = _Framing()
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                framing.remaining = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                response.close = True
            elif name == b"content-type" and value.strip().startswith(b"text/event-stream"):
                response.sse = True
        framing.finished = framing.remaining == 0
        return framing

    @staticmethod
    def _note_body(data: bytes, response: Response, now: float) -> None:
        events = data.count(b"data:")
        if response.first_body is None and (events or not response.sse):
            response.first_body = now
        if response.first_token is None and (not response.sse or FIRST_TOKEN.search(data)):
            response.first_token = now
        response.reads += 1
        response.events += events
        response.most_events_in_a_read = max(response.most_events_in_a_read, events)
        if response.sse:
            response.saw_done = response.saw_done or b"data: [DONE]" in data
            response.error_event = response.error_event or b'data: {"error"' in data

    def _feed(self, data: bytes) -> None:
        framing = self._framing
        assert framing is not None
        if framing.remaining >= 0:
            framing.remaining -= len(data)
            framing.finished = framing.remaining <= 0
            return
        buffer = framing.pending
        buffer += data
        position = 0
        while True:
            if framing.chunk_left > 0:
                take = min(framing.chunk_left, len(buffer) - position)
                position += take
                framing.chunk_left -= take
                if framing.chunk_left > 0:
                    break
                framing.chunk_left = -2  # the CRLF after the chunk's data
            if framing.chunk_left == -2:
                if len(buffer) - position < 2:
                    break
                position += 2
                framing.chunk_left = 0
            end = buffer.find(b"\r\n", position)
            if end < 0:
                break
            size = int(bytes(buffer[position:end]).split(b";")[0], 16)
            position = end + 2
            if size == 0:
                framing.finished = True  # no trailers are sent by the servers measured here
                break
            framing.chunk_left = size
        del buffer[:position]
