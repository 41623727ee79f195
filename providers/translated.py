"""The I/O half of every provider whose wire format is not OpenAI's.

A `Dialect` is the pure half: URLs, headers, and the translators (chat request ->
provider body, provider answer -> chat completion, provider event -> chat chunks,
provider error -> `UpstreamError`). `TranslatedProvider` does the rest the same way for
all of them: one pooled session, the request, the stream relayed event by event and
closed with `[DONE]`, and the Responses API on top through `providers.bridge`.

A translated stream reports its usage only at its end (the usage chunk), yet the provider
bills what it counted before a stream that stops early. So the usage reported so far
(`StreamTranslator.reported_usage`) goes with the `UpstreamError` of a stream that fails,
and the reply offers it (`UpstreamReply.reported_usage`) for one the gateway stops reading.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

import aiohttp
import orjson

from providers.base import CHAT, RESPONSES, Api, UpstreamCall, UpstreamError, UpstreamReply
from providers.bridge import send_responses_via_chat
from providers.http import ErrorMapper, ensure_event_stream, new_session, post, read_body, stream_events
from providers.sse import DONE_EVENT, SSEEvent


class StreamTranslator(Protocol):
    @property
    def finished(self) -> bool:
        """Whether the provider's stream reached its end (False: it was cut)."""
        ...

    @property
    def reported_usage(self) -> dict[str, Any] | None:
        """The Chat-shaped usage the provider reported so far (None: nothing yet), with
        `completion_tokens` None while the output was not reported."""
        ...

    def feed(self, event: SSEEvent) -> list[dict[str, Any]]: ...

    def finish(self) -> list[dict[str, Any]]: ...


class Dialect(Protocol):
    kind: str
    error: ErrorMapper
    secrets: tuple[str, ...]

    def url(self, model: str, stream: bool) -> str: ...

    def headers(self) -> Mapping[str, str]: ...

    def request(self, body: dict[str, Any], model: str) -> dict[str, Any]: ...

    def response(self, payload: Any, call: UpstreamCall) -> dict[str, Any]: ...

    def stream(self, call: UpstreamCall) -> StreamTranslator: ...

    def output_allowance(self, body: dict[str, Any], model: str) -> int | None: ...


class TranslatedProvider:
    apis: frozenset[Api] = frozenset({CHAT, RESPONSES})

    def __init__(self, name: str, dialect: Dialect, *, max_connections: int = 1000) -> None:
        self.name = name
        self.kind = dialect.kind
        self.dialect = dialect
        self.secrets = dialect.secrets
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = new_session(self._max_connections)
        return self._session

    def output_allowance(self, body: dict[str, Any], model: str) -> int | None:
        return self.dialect.output_allowance(body, model)

    async def send(self, call: UpstreamCall) -> UpstreamReply:
        if call.api == RESPONSES:
            return await send_responses_via_chat(self._send_chat, call)
        return await self._send_chat(call)

    async def _send_chat(self, call: UpstreamCall) -> UpstreamReply:
        dialect = self.dialect
        body = orjson.dumps(dialect.request(call.body, call.model))
        response = await post(self.session, dialect.url(call.model, call.stream), body, dialect.headers(), call,
                              dialect.error)
        if not call.stream:
            raw = await read_body(response, call)
            try:
                payload = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise UpstreamError(f"{self.kind} sent malformed JSON: {exc}", kind="malformed",
                                    retryable=True) from None
            return UpstreamReply(status=response.status, parsed=dialect.response(payload, call))
        ensure_event_stream(response)
        translator = dialect.stream(call)
        return UpstreamReply(status=response.status, events=self._chunks(stream_events(response, call), translator),
                             closer=response.close, reported_usage=lambda: translator.reported_usage)

    async def _chunks(self, events: AsyncIterator[SSEEvent], translator: StreamTranslator
                      ) -> AsyncIterator[SSEEvent]:
        try:
            async for event in events:
                for chunk in translator.feed(event):
                    yield SSEEvent.of(chunk)
            if not translator.finished:
                raise UpstreamError(f"the {self.kind} stream ended before the answer was complete", kind="reset",
                                    retryable=True)
            for chunk in translator.finish():
                yield SSEEvent.of(chunk)
        except UpstreamError as exc:  # cut, timed out, malformed, or an error event
            if exc.usage is None:
                exc.usage = translator.reported_usage
            raise
        finally:
            await events.aclose()  # type: ignore[attr-defined]
        yield DONE_EVENT

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def event_json(event: SSEEvent, kind: str) -> Any:
    """An event's JSON payload; a provider event that is not JSON ends the attempt."""
    try:
        return event.json()
    except orjson.JSONDecodeError:
        raise UpstreamError(f"{kind} sent a malformed stream event", kind="malformed", retryable=True) from None
