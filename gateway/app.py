"""The aiohttp application: routes, the error-envelope middleware, startup and shutdown."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway import admin, errors, ui_routes
from gateway.errors import GatewayError
from gateway.exchange import EXTRA_HEADERS, REQUEST_ID, new_request_id
from gateway.pipeline import handle_model_call
from gateway.runtime import Runtime
from gateway.usage_api import admin_usage, tenant_usage
from providers.base import CHAT, EMBEDDINGS, RESPONSES

log = logging.getLogger("lockgate.app")
RUNTIME: web.AppKey[Runtime] = web.AppKey("runtime", Runtime)
OPERATIONS = frozenset({"/healthz", "/readyz", "/metrics"})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(runtime: Runtime) -> web.Application:
    app = web.Application(middlewares=[envelope_middleware, cors_middleware],
                          client_max_size=runtime.snapshot.config.server.max_body_bytes + 1)
    app[RUNTIME] = runtime

    def model_call(api: str) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            return await handle_model_call(runtime, request, api)  # type: ignore[arg-type]
        return handler

    app.router.add_post("/v1/chat/completions", model_call(CHAT))
    app.router.add_post("/v1/responses", model_call(RESPONSES))
    app.router.add_post("/v1/embeddings", model_call(EMBEDDINGS))
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model:.+}", get_model)
    app.router.add_get("/v1/usage", with_runtime(tenant_usage))
    app.router.add_get("/admin/usage", with_runtime(admin_usage))
    for method, path, handler in admin.ROUTES:
        app.router.add_route(method, path, with_runtime(handler))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    ui_routes.add_routes(app)
    app.on_startup.append(_start)
    app.on_cleanup.append(_stop)
    return app


def with_runtime(handler: Callable[[web.Request, Runtime], Awaitable[web.StreamResponse]]) -> Handler:
    async def bound(request: web.Request) -> web.StreamResponse:
        return await handler(request, request.app[RUNTIME])
    return bound


async def _start(app: web.Application) -> None:
    await app[RUNTIME].start()


async def _stop(app: web.Application) -> None:
    await app[RUNTIME].stop()


@web.middleware
async def envelope_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every answer carries X-Request-Id, and every error is the OpenAI envelope."""
    request_id = new_request_id()
    request[REQUEST_ID] = request_id
    try:
        if request.app[RUNTIME].draining and request.path not in OPERATIONS:
            # A new request on a kept-alive connection while shutting down: send it elsewhere.
            response = error_response(errors.service_unavailable("The gateway is shutting down; retry the request."))
            response.force_close()
        else:
            response = await handler(request)
    except GatewayError as exc:
        response = error_response(exc)
    except web.HTTPException as exc:
        response = error_response(_from_http(exc, request))
    except Exception:
        log.exception("unhandled error on %s %s (%s)", request.method, request.path, request_id)
        response = error_response(errors.internal_error(request_id))
    if not response.prepared and "X-Request-Id" not in response.headers:
        response.headers["X-Request-Id"] = request_id
    return response


CORS_HEADERS = "Authorization, Content-Type, X-Api-Key, X-Lockgate-Agent, X-Lockgate-Approval, OpenAI-Beta"
CORS_EXPOSE = "X-Request-Id, X-Lockgate-Provider, X-Lockgate-Model, X-Lockgate-Attempts, X-Lockgate-Policies, " \
    "X-Lockgate-Overhead-Ms, Retry-After"


@web.middleware
async def cors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Cross-origin access only for the origins listed in `server.cors_origins` (none by default)."""
    origin = request.headers.get("Origin")
    allowed = request.app[RUNTIME].snapshot.config.server.cors_origins
    if origin is None or not allowed or (origin not in allowed and "*" not in allowed):
        return await handler(request)
    cors = {"Access-Control-Allow-Origin": origin, "Access-Control-Expose-Headers": CORS_EXPOSE, "Vary": "Origin"}
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        response: web.StreamResponse = web.Response(status=204)
        response.headers.update({"Access-Control-Allow-Methods": "GET, POST, OPTIONS",
                                 "Access-Control-Allow-Headers": CORS_HEADERS, "Access-Control-Max-Age": "600"})
    else:
        request[EXTRA_HEADERS] = cors  # streams are prepared inside the handler
        response = await handler(request)
    if not response.prepared:
        response.headers.update(cors)
    return response


def error_response(exc: GatewayError) -> web.Response:
    return web.Response(status=exc.status, body=exc.body(), content_type="application/json",
                        headers=exc.headers())


def _from_http(exc: web.HTTPException, request: web.Request) -> GatewayError:
    if exc.status == 404:
        return errors.not_found(f"No route {request.method} {request.path}. Lockgate serves /v1/chat/completions, "
                                "/v1/responses, /v1/embeddings and /v1/models.")
    if exc.status == 405:
        return GatewayError(405, "invalid_request_error", "method_not_allowed",
                            f"{request.method} is not allowed on {request.path}.")
    if exc.status == 413:
        return errors.request_too_large(request.app[RUNTIME].snapshot.config.server.max_body_bytes)
    return GatewayError(exc.status, "invalid_request_error", None, exc.reason or "Bad request.")


def _model_entry(alias: str, created: int) -> dict[str, object]:
    return {"id": alias, "object": "model", "created": created, "owned_by": "lockgate"}


async def list_models(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    tenant = await runtime.authenticate(request)
    created = int(runtime.started_at)
    data = [_model_entry(alias, created) for alias in runtime.snapshot.routes if tenant.may_use(alias)]
    return web.json_response({"object": "list", "data": data})


async def get_model(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    tenant = await runtime.authenticate(request)
    alias = request.match_info["model"]
    if alias not in runtime.snapshot.routes or not tenant.may_use(alias):
        raise errors.model_not_found(alias, tenant.name)
    return web.json_response(_model_entry(alias, int(runtime.started_at)))


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready while not draining. Aliases whose every circuit is open are listed under
    `degraded_models` but keep the instance ready: the circuits are per instance, and taking
    it out of rotation would only move the same upstreams' failures to the others."""
    runtime = request.app[RUNTIME]
    circuits = {f"{target.provider.name}/{target.model}": target.breaker.state for target in runtime.targets()}
    degraded = sorted(alias for alias, route in runtime.snapshot.routes.items()
                      if all(circuits[f"{t.provider.name}/{t.model}"] == "open" for t in route.targets))
    ready = not runtime.draining
    body = {"status": "ready" if ready else "draining", "circuits": circuits, "degraded_models": degraded}
    return web.json_response(body, status=200 if ready else 503)


async def metrics(request: web.Request) -> web.Response:
    body, content_type = request.app[RUNTIME].metrics.render()
    return web.Response(body=body, headers={"Content-Type": content_type})
