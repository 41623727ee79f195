"""Relaying a stream to the client, event by event, as it arrives.

An event that nothing changed goes out as the exact bytes the upstream sent. Between
the upstream and the client sit the stream stages: the usage watch (metering) and the
policy gate (tool calls, redaction). A tool call held for approval keeps the stream
alive with SSE comments, and so does a streamed request held at the request stage once
its first keep-alive is due (the stream then starts before the answer; whatever refuses
the request after that is its final event). An upstream failure after the stream started
ends it with one final `data: {"error": ...}` event, never a silent cut.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web

from gateway import errors
from gateway.enforcement import PendingHold, PolicyStage
from gateway.errors import GatewayError
from gateway.events import checked_payload, is_terminal
from gateway.exchange import EXTRA_HEADERS, Exchange
from gateway.metering import UsageWatch
from gateway.router import stream_ended
from gateway.stages import StageChain
from providers.base import UpstreamError, UpstreamReply, scrub
from providers.sse import COMMENT, SSEEvent

if TYPE_CHECKING:
    from gateway.runtime import Runtime

log = logging.getLogger("lockgate.relay")
KEEPALIVE_S = 10.0
LEFTOVER_READ_S = 0.05
"""How long a stream whose client left is still read for its usage report (see `_read_usage_left`)."""
T = TypeVar("T")
SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache",
               "X-Accel-Buffering": "no"}
CLIENT_CLOSED = 499


def error_event(exc: GatewayError) -> bytes:
    return b"data: " + exc.body() + b"\n\n"


def mid_stream_error(exc: UpstreamError) -> GatewayError:
    if exc.kind == "timeout":
        return errors.upstream_timeout(f"The upstream stream stopped: {exc.message}")
    return errors.upstream_error(f"The upstream stream failed: {exc.message}")


class EventStreamResponse(web.StreamResponse):
    """An SSE response whose head goes out with its first bytes: one write, not two."""

    _send_headers_immediately = False


def stream_response(request: web.Request, exchange: Exchange) -> web.StreamResponse:
    """The SSE response to the client: the one a long hold already started, or a new one."""
    if exchange.started_stream is not None:
        return exchange.started_stream
    return EventStreamResponse(status=200, headers={**SSE_HEADERS, **exchange.headers(),
                                                    **request.get(EXTRA_HEADERS, {})})


async def held_open(request: web.Request, exchange: Exchange, work: Awaitable[T]) -> T:
    """Wait for `work` (a request-stage hold) with the client's stream kept alive.

    A hold decided before the first keep-alive is due leaves the response unstarted, so a
    refusal is still an ordinary HTTP error. A longer one starts the stream, so that no
    proxy between here and the client cuts an idle connection, and sends SSE comments.
    """
    async def ping() -> None:
        if exchange.started_stream is None:
            response = stream_response(request, exchange)
            await response.prepare(request)
            exchange.started_stream = response
        await exchange.started_stream.write(COMMENT)
    return await _keeping_alive(work, ping)


async def end_started_stream(exchange: Exchange, failure: GatewayError) -> web.StreamResponse:
    """Refuse a request whose stream a hold already started: one final error event."""
    response = exchange.started_stream
    assert response is not None
    await _final_event(response, exchange, failure)
    with contextlib.suppress(ConnectionError, RuntimeError):
        await response.write_eof()
    return response


async def _final_event(response: web.StreamResponse, exchange: Exchange, failure: GatewayError) -> None:
    """End a started stream with `failure` as its last event (metered as that failure)."""
    exchange.status, exchange.error_type = failure.status, failure.metric
    with contextlib.suppress(ConnectionError, RuntimeError):  # the client may be gone already
        await response.write(error_event(failure))


async def relay_stream(runtime: Runtime, request: web.Request, exchange: Exchange, reply: UpstreamReply,
                       policy: PolicyStage | None) -> web.StreamResponse:
    assert reply.events is not None
    usage = UsageWatch(exchange)
    stages = StageChain([usage, *([policy] if policy is not None else [])])
    response = stream_response(request, exchange)
    events = reply.events
    clock = time.perf_counter
    complete = False
    broken_off: UpstreamError | None = None

    async def relay(event: SSEEvent, gathered: list[bytes] | None = None) -> None:
        nonlocal complete
        if is_terminal(exchange.api, event, checked_payload(event)):
            # Stages flush what they hold before the event that ends the stream.
            complete = True
            await _write(response, stages.finish(), gathered)
        await _write(response, stages.feed(event), gathered)

    try:
        if not response.prepared:
            await response.prepare(request)
        if reply.opening:
            exchange.ttft_s = clock() - exchange.started
        # The events read before the stream started go out together, with the head.
        gathered: list[bytes] = []
        try:
            for event in reply.opening:
                await relay(event, gathered)
        finally:
            if gathered:
                await response.write(b"".join(gathered))
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
            await relay(event)
        if not complete:
            raise UpstreamError("the upstream ended the stream before it was complete", kind="reset")
    except UpstreamError as exc:
        broken_off = exc
        usage.failed(exc)
        target = exchange.outcome.target
        exc.message = scrub(exc.message, target.provider.secrets if target is not None else ())
        await _final_event(response, exchange, mid_stream_error(exc))
    except GatewayError as failure:  # a stage ended the stream (e.g. a policy error)
        await _final_event(response, exchange, failure)
    except ConnectionError:
        exchange.status = CLIENT_CLOSED
        raise
    except Exception:
        # A bug, after the response started: the client still gets the final error event, and
        # the middleware never writes a second response into this one.
        log.exception("stream failed on request %s", exchange.request_id)
        await _final_event(response, exchange, errors.internal_error(exchange.request_id))
    except asyncio.CancelledError:
        if not runtime.drain_expired:
            exchange.status = CLIENT_CLOSED  # the client went away
            raise
        # The drain timeout passed during shutdown: end the stream cleanly, never a silent cut.
        await _final_event(response, exchange, errors.service_unavailable(
            "The gateway is shutting down and this stream ran past its drain timeout; retry the request."))
    finally:
        exchange.finished = clock()
        stream_ended(exchange.outcome.target, complete=complete, failure=broken_off)
        try:
            if not complete and broken_off is None:
                if reply.reported_usage is not None:
                    exchange.outcome.stopped_usage = reply.reported_usage()
                if exchange.status == CLIENT_CLOSED:
                    await _read_usage_left(events, usage)
        finally:  # a cancellation during that read still closes the upstream's connection
            await reply.close()
    await response.write_eof()
    return response


async def _read_usage_left(events: AsyncIterator[SSEEvent], usage: UsageWatch) -> None:
    """The client left before the stream's end: read what the upstream has already sent, for
    a short while and for the meter only. An upstream that finished while a tool call was
    held for approval has its usage report waiting in the socket: the request is then
    metered exactly instead of estimated. One still generating is not waited for (its
    tokens cost money that nobody reads)."""
    if usage.exchange.usage is not None:
        return
    with contextlib.suppress(Exception):  # a timeout, a broken or already closed stream
        async with asyncio.timeout(LEFTOVER_READ_S):
            async for event in events:
                usage.feed(event)
                if usage.exchange.usage is not None:
                    return


async def _write(response: web.StreamResponse, items: list[Any], gathered: list[bytes] | None = None) -> None:
    """Send events to the client, or add them to `gathered` for one later write."""
    for item in items:
        if isinstance(item, PendingHold):
            if gathered:  # the client gets what came before the held call first
                await response.write(b"".join(gathered))
                gathered.clear()
            # A tool call waits for a human: keep the stream alive until it is decided.
            await _write(response, await _keeping_alive(item.resolve(), lambda: response.write(COMMENT)), gathered)
        elif gathered is not None:
            gathered.append(item.encode())
        else:
            await response.write(item.encode())


async def _keeping_alive(work: Awaitable[T], ping: Callable[[], Awaitable[None]]) -> T:
    """`work`'s result, with `ping` called each time KEEPALIVE_S passes without one."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=KEEPALIVE_S)
            if done:
                return task.result()
            await ping()
    finally:
        if not task.done():
            task.cancel()
