"""The contract between the gateway and every provider adapter.

The gateway speaks OpenAI shapes on both sides of this interface: an `UpstreamCall`
carries an OpenAI request body (Chat Completions, Responses or Embeddings) whose `model`
is already the target's model name, and an `UpstreamReply` carries an OpenAI-shaped
answer: a JSON body, or a stream of SSE events (`chat.completion.chunk`s, or Responses
events). Adapters for other wire formats translate with pure functions and do their
I/O through `providers.http`.

Failures are raised as `UpstreamError`, which says whether a retry can succeed; the
router decides what to do with it.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import orjson

from providers.sse import SSEEvent

Api = Literal["chat", "responses", "embeddings"]
CHAT: Api = "chat"
RESPONSES: Api = "responses"
EMBEDDINGS: Api = "embeddings"

_UNSET: Any = object()


@dataclass(slots=True)
class Timeouts:
    """Bounds for one attempt. `total_s` covers the whole attempt, a stream included."""

    total_s: float = 600.0
    connect_s: float = 10.0
    first_token_s: float | None = None
    idle_s: float | None = None


@dataclass(slots=True)
class UpstreamCall:
    api: Api
    body: dict[str, Any]
    """The OpenAI-shaped request, `model` already set to the target's model."""
    model: str
    stream: bool
    timeouts: Timeouts = field(default_factory=Timeouts)
    raw: bytes | None = None
    """The body's bytes when they can be sent unchanged (skips re-serialization)."""
    deadline: float = 0.0
    """`time.monotonic()` by which the attempt must end; 0 means now + total_s."""

    def __post_init__(self) -> None:
        if not self.deadline:
            self.deadline = time.monotonic() + self.timeouts.total_s

    def body_bytes(self) -> bytes:
        return self.raw if self.raw is not None else orjson.dumps(self.body)


class UpstreamError(Exception):
    """An attempt failed. `status` is None for transport failures (connect, reset, timeout)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        kind: str = "http",
        retryable: bool = False,
        retry_after: float | None = None,
        error_type: str | None = None,
        error_code: str | None = None,
        event: dict[str, Any] | None = None,
        usage: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.kind = kind
        """One of: http, timeout, connect, reset, malformed, safety."""
        self.retryable = retryable
        self.retry_after = retry_after
        self.error_type = error_type
        self.error_code = error_code
        self.event = event
        """The stream event that reported the failure: it may carry the usage so far."""
        self.usage = usage
        """For a stream that failed part-way: the Chat-shaped usage the provider had reported
        before the failure (a translated stream reports it only at its end, so nothing else
        carries it). `completion_tokens` is None when the output had not been reported yet."""

    @property
    def reason(self) -> str:
        """A short, bounded label for metrics and logs (e.g. `http_503`, `timeout`)."""
        return f"http_{self.status}" if self.status is not None else self.kind

    def __repr__(self) -> str:
        return f"UpstreamError({self.reason}, {self.message!r})"


class UpstreamReply:
    """A successful (2xx) answer: a JSON body, or a stream of OpenAI-shaped SSE events."""

    __slots__ = ("_closer", "_json", "body", "events", "headers", "opening", "reported_usage", "status")

    def __init__(
        self,
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        parsed: Any = _UNSET,
        events: AsyncIterator[SSEEvent] | None = None,
        opening: tuple[SSEEvent, ...] = (),
        closer: Any = None,
        reported_usage: Callable[[], dict[str, Any] | None] | None = None,
    ) -> None:
        self.status = status
        self.headers = headers or {}
        self.body = body
        self._json = parsed
        self.events = events
        self.opening = opening
        """Stream events already read (the router holds them until the first content), to
        send before `events`."""
        self._closer = closer
        self.reported_usage = reported_usage
        """A translated stream's usage as its provider reported it so far (Chat-shaped, see
        `UpstreamError.usage`): the provider bills it even when the stream is stopped early
        (the client left, a policy ended it, a first-token bound ran out)."""

    @property
    def is_stream(self) -> bool:
        return self.events is not None

    def json(self) -> Any:
        if self._json is _UNSET:
            if self.body is None:
                raise UpstreamError("upstream sent no body", kind="malformed")
            try:
                self._json = orjson.loads(self.body)
            except orjson.JSONDecodeError as exc:
                raise UpstreamError(f"upstream sent malformed JSON: {exc}", kind="malformed",
                                    retryable=True) from exc
        return self._json

    def set_json(self, payload: Any) -> None:
        """Replace the answer (after a policy or translation changed it)."""
        self._json = payload
        self.body = None

    def body_bytes(self) -> bytes:
        if self.body is None:
            self.body = orjson.dumps(self._json)
        return self.body

    async def close(self) -> None:
        """Release the upstream connection (closing it if the stream was not finished)."""
        aclose = getattr(self.events, "aclose", None)
        if aclose is not None:
            try:
                await aclose()
            except RuntimeError:  # the generator is running in another task; the closer below ends it
                pass
        if self._closer is not None:
            closer, self._closer = self._closer, None
            result = closer()
            if hasattr(result, "__await__"):
                await result


class Provider(Protocol):
    """What every adapter implements. One instance per configured provider."""

    name: str
    kind: str
    apis: frozenset[Api]
    secrets: tuple[str, ...]
    """Credentials this provider sends upstream (scrubbed from anything an upstream says back)."""

    async def send(self, call: UpstreamCall) -> UpstreamReply:
        """Make one attempt. Raise `UpstreamError` on any failure, streams included."""
        ...

    def output_allowance(self, body: dict[str, Any], model: str) -> int | None:
        """The most output tokens an attempt with `body` may bill (None: no bound known),
        which budgets reserve (see `providers.allowance`)."""
        ...

    async def close(self) -> None:
        """Release pooled connections."""
        ...


REDACTED = "[REDACTED]"


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """`text` without any of `secrets`, whole or in part (an upstream may quote our credentials
    back in an error: they must never reach a client or a log)."""
    for secret in secrets:
        if len(secret) < 8:
            continue
        if secret in text:
            text = text.replace(secret, REDACTED)
        middle = secret[len(secret) // 4: 3 * len(secret) // 4]
        if middle in text:
            text = re.sub(r"\S*" + re.escape(middle) + r"\S*", REDACTED, text)
        if middle in _WHITESPACE.sub("", text):
            # Quoted with spaces or line breaks inside: no part of the message can be trusted.
            return f"{REDACTED} (the upstream's message quoted a credential)"
    return text


_WHITESPACE = re.compile(r"\s+")


class UnsupportedRequest(ValueError):
    """A request this provider cannot express; the client gets a 400 naming `param`."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
