"""The life of a model call, stage by stage. Read this file to know the whole flow.

    authenticate   virtual key -> tenant                                (auth.py)
    parse          body read once, size/depth/type checks               (validation.py)
    resolve        alias -> route, tenant may use it                    (router.py)
    policy         request stage: tools, guardrails, approvals          (enforcement.py, policy/)
    admit          rate limit, budget reservation, concurrency          (limits/)
    route          attempts with retry, failover, circuit breaker       (router.py)
    respond        JSON gated whole, or the stream relayed event by event
                   through the tool-call gate (text is never held)      (relay.py, enforcement.py)
    meter          usage -> cost -> ledger + metrics, for every request (metering.py)

Each stage raises `GatewayError` to stop the request; the client gets the envelope (or,
when a long request-stage hold already started the client's stream, a final error event).
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from gateway import errors
from gateway.config import ServerConfig
from gateway.enforcement import Enforcer
from gateway.errors import GatewayError
from gateway.events import is_content_event
from gateway.exchange import REQUEST_ID, Exchange, new_request_id
from gateway.relay import CLIENT_CLOSED, end_started_stream, held_open, relay_stream
from gateway.router import Route, Target
from gateway.runtime import Runtime
from gateway.validation import ParsedRequest, agent_name, decode_body, parse_request
from providers.base import CHAT, Api, UpstreamCall, UpstreamReply

log = logging.getLogger("lockgate.pipeline")


async def handle_model_call(runtime: Runtime, request: web.Request, api: Api) -> web.StreamResponse:
    exchange = Exchange(request_id=request.get(REQUEST_ID) or new_request_id(), api=api)
    snapshot = runtime.snapshot
    enforcer: Enforcer | None = None
    runtime.track(asyncio.current_task())
    try:
        exchange.tenant = await runtime.authenticate(request)
        raw = await read_body(request, snapshot.config.server)
        body = decode_body(raw, snapshot.config.server)
        if isinstance(alias := body.get("model"), str) and alias in snapshot.routes:
            exchange.known_alias = alias  # metrics label a request refused from here on by its alias
        parsed = parse_request(api, raw, snapshot.config.server, body)
        exchange.alias, exchange.body, exchange.stream = parsed.alias, parsed.body, parsed.stream
        exchange.note_body(parsed.raw)
        exchange.agent = agent_name(request.headers.get("X-Lockgate-Agent"), parsed.body)
        route = resolve_route(runtime, exchange)
        exchange.known_alias = route.alias
        enforcer = Enforcer(runtime, exchange, request.headers)
        changed = await enforcer.check_request(
            (lambda waiting: held_open(request, exchange, waiting)) if exchange.stream else None)
        if changed is not None:
            parsed.body, parsed.raw = changed, b""
        async with runtime.admission.admit(exchange, route) as reservation:
            adjust_request(exchange, parsed)
            reply = await runtime.router.call(route, lambda target: upstream_call(exchange, parsed, target),
                                              is_content_event(api), exchange.outcome,
                                              snapshot.config.server.queue_timeout_s, reservation.cover)
            exchange.reached_upstream = True
            enforcer.on_target(exchange.provider_name, exchange.model_name)
            if reply.is_stream:
                return await relay_stream(runtime, request, exchange, reply, enforcer.stream_stage())
            return await respond_json(runtime, exchange, reply, enforcer)
    except GatewayError as exc:
        return await refuse(exchange, exc)
    except asyncio.CancelledError:
        if not runtime.drain_expired:
            exchange.status = CLIENT_CLOSED  # the client went away
            raise
        return await refuse(exchange, errors.service_unavailable(
            "The gateway is shutting down and this request ran past its drain timeout; retry it."))
    except Exception:
        failure = errors.internal_error(exchange.request_id)
        exchange.status, exchange.error_type = failure.status, failure.metric  # metered as the 500 it is
        if exchange.started_stream is None:
            raise  # the middleware answers with the envelope
        log.exception("request %s failed after its stream started", exchange.request_id)
        return await refuse(exchange, failure)
    finally:
        if enforcer is not None:
            enforcer.close(exchange.answer)
        runtime.finished(exchange)


async def read_body(request: web.Request, server: ServerConfig) -> bytes:
    """The body, refused as soon as it passes the size limit or the time limit."""
    limit = server.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise errors.request_too_large(limit)
    content = request.content
    if content.is_eof() and request.content_length is not None:
        return content.read_nowait()  # the whole (size-checked) body is already here: no timer needed
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(server.body_timeout_s):
            async for chunk in content.iter_any():
                size += len(chunk)
                if size > limit:
                    raise errors.request_too_large(limit)
                chunks.append(chunk)
    except TimeoutError:
        raise errors.GatewayError(408, "invalid_request_error", "request_timeout",
                                  f"The request body did not arrive within {server.body_timeout_s:g}s "
                                  "(server.body_timeout_s).") from None
    return b"".join(chunks)


def resolve_route(runtime: Runtime, exchange: Exchange) -> Route:
    assert exchange.tenant is not None and exchange.alias is not None
    route = runtime.snapshot.routes.get(exchange.alias)
    if route is None or not exchange.tenant.may_use(exchange.alias):
        raise errors.model_not_found(exchange.alias, exchange.tenant.name)
    if not any(exchange.api in target.provider.apis for target in route.targets):
        raise errors.invalid_request(f"Model '{exchange.alias}' does not serve the {exchange.api} API.",
                                     param="model")
    return route


def adjust_request(exchange: Exchange, parsed: ParsedRequest) -> None:
    """Changes the gateway makes to every request before it goes upstream."""
    body = parsed.body
    if exchange.api == CHAT and exchange.stream:
        # Ask for usage in streams, so that metering never misses it; the relay strips the
        # usage chunk again for clients that did not ask for it.
        options = body.get("stream_options")
        if not (isinstance(options, dict) and options.get("include_usage")):
            body["stream_options"] = {**(options or {}), "include_usage": True}
            parsed.raw = b""
            exchange.strip_usage = True


def upstream_call(exchange: Exchange, parsed: ParsedRequest, target: Target) -> UpstreamCall:
    body = parsed.body
    raw: bytes | None = parsed.raw or None
    if body.get("model") != target.model:
        body = {**body, "model": target.model}
        raw = None
    return UpstreamCall(api=exchange.api, body=body, model=target.model, stream=exchange.stream,
                        timeouts=target.timeouts, raw=raw)


async def respond_json(runtime: Runtime, exchange: Exchange, reply: UpstreamReply, enforcer: Enforcer
                       ) -> web.Response:
    payload = reply.json()
    runtime.meter.capture_json(exchange, payload)
    try:
        changed = await enforcer.gate_json(payload)
    finally:
        await reply.close()
    if changed is not None:
        reply.set_json(changed)
    exchange.answer = changed if changed is not None else payload
    return web.Response(body=reply.body_bytes(), content_type="application/json", headers=exchange.headers())


async def refuse(exchange: Exchange, exc: GatewayError) -> web.StreamResponse:
    if exchange.started_stream is not None:
        return await end_started_stream(exchange, exc)
    return error_response(exchange, exc)


def error_response(exchange: Exchange, exc: GatewayError) -> web.Response:
    exchange.status = exc.status
    exchange.error_type = exc.metric
    if exc.status >= 500:
        log.warning("request %s failed: %s", exchange.request_id, exc.message)
    headers = {**exchange.headers(), **exc.headers()}
    return web.Response(status=exc.status, body=exc.body(), content_type="application/json", headers=headers)

