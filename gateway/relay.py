"""Relaying a stream to the client, event by event, as it arrives.

An event that nothing changed goes out as the exact bytes the upstream sent. Between
the upstream and the client sit the stream stages: the usage watch (metering) and the
policy gate (tool calls, redaction). An upstream failure after the stream started ends
it with one final `data: {"error": ...}` event, never a silent cut.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import orjson
from aiohttp import web

from gateway import errors
from gateway.errors import GatewayError
from gateway.exchange import Exchange
from providers.base import CHAT, EMBEDDINGS, RESPONSES, Api, UpstreamError, UpstreamReply
from providers.sse import SSEEvent

if TYPE_CHECKING:
    from gateway.runtime import Runtime

SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache",
               "X-Accel-Buffering": "no"}
CLIENT_CLOSED = 499

# Responses events that carry no content yet: held back so a failure right after them can
# still fail over to another target.
_RESPONSES_PREAMBLE = frozenset({"response.created", "response.in_progress", "response.queued"})
_RESPONSES_TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})


def _chat_is_content(event: SSEEvent) -> bool:
    if event.is_done:
        return True
    try:
        chunk = event.json()
    except orjson.JSONDecodeError:
        return True  # let the relay report it
    if not isinstance(chunk, dict) or "error" in chunk:
        return True
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or {}
        if delta.get("content") or delta.get("tool_calls") or delta.get("refusal") or \
                delta.get("reasoning_content") or choice.get("finish_reason"):
            return True
    return bool(chunk.get("usage"))


def _responses_is_content(event: SSEEvent) -> bool:
    return _responses_event_type(event) not in _RESPONSES_PREAMBLE


def _responses_event_type(event: SSEEvent) -> str | None:
    if event.event is not None:
        return event.event
    try:
        payload = event.json()
    except orjson.JSONDecodeError:
        return None
    return payload.get("type") if isinstance(payload, dict) else None


def is_terminal_event(api: Api, event: SSEEvent) -> bool:
    """The event that ends a complete stream: `[DONE]`, or the Responses final event."""
    if api == CHAT:
        return event.is_done
    return _responses_event_type(event) in _RESPONSES_TERMINAL


def is_content_event(api: Api) -> Callable[[SSEEvent], bool]:
    return {CHAT: _chat_is_content, RESPONSES: _responses_is_content,
            EMBEDDINGS: lambda event: True}[api]


def error_event(exc: GatewayError) -> bytes:
    return b"data: " + exc.body() + b"\n\n"


def mid_stream_error(exc: UpstreamError) -> GatewayError:
    if exc.kind == "timeout":
        return errors.upstream_timeout(f"The upstream stream stopped: {exc.message}")
    return errors.upstream_error(f"The upstream stream failed: {exc.message}")


async def relay_stream(runtime: Runtime, request: web.Request, exchange: Exchange,
                       reply: UpstreamReply) -> web.StreamResponse:
    assert reply.events is not None
    stages = runtime.stream_stages(exchange)
    response = web.StreamResponse(status=200, headers={**SSE_HEADERS, **exchange.headers()})
    events = reply.events
    clock = time.perf_counter
    complete = False
    try:
        await response.prepare(request)
        while True:
            waited = clock()
            try:
                event = await anext(events)
            except StopAsyncIteration:
                break
            now = clock()
            exchange.upstream_wait_s += now - waited
            if exchange.ttft_s is None:
                exchange.ttft_s = now - exchange.started
            if is_terminal_event(exchange.api, event):
                # Stages flush what they hold before the event that ends the stream.
                complete = True
                for out in stages.finish():
                    await response.write(out.encode())
            for out in stages.feed(event):
                await response.write(out.encode())
        if not complete:
            raise UpstreamError("the upstream ended the stream before it was complete", kind="reset")
    except UpstreamError as exc:
        failure = mid_stream_error(exc)
        exchange.status, exchange.error_type = failure.status, failure.metric
        await response.write(error_event(failure))
    except GatewayError as failure:  # a stage ended the stream (e.g. a policy error)
        exchange.status, exchange.error_type = failure.status, failure.metric
        await response.write(error_event(failure))
    except (ConnectionError, asyncio.CancelledError):
        exchange.status = CLIENT_CLOSED
        raise
    finally:
        exchange.finished = clock()
        await reply.close()
    await response.write_eof()
    return response
