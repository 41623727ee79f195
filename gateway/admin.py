"""The admin API (admin key only): approvals, reviews, the audit trail, reload.

A tenant key gets 403 on every route here, a missing or unknown key 401.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiohttp import web

from gateway import errors
from gateway.approvals import STATUSES, timed_out, undecidable
from gateway.errors import GatewayError
from gateway.reporting import parse_window
from gateway.runtime import Runtime
from gateway.store import LedgerQuery

MAX_LIST = 1000


def _limit(request: web.Request) -> int:
    try:
        return max(1, min(MAX_LIST, int(request.query.get("limit", "100"))))
    except ValueError:
        raise errors.invalid_request("'limit' must be an integer between 1 and 1000.", param="limit") from None


def _since(request: web.Request, default: str = "7d") -> float:
    try:
        return parse_window(request.query.get("since") or default, None, time.time())[0]
    except ValueError as exc:
        raise errors.invalid_request(str(exc), param="since") from None


async def list_approvals(request: web.Request, runtime: Runtime) -> web.Response:
    runtime.require_admin(request)
    status = request.query.get("status") or None
    if status is not None and status not in STATUSES:
        raise errors.invalid_request(f"'status' must be one of {', '.join(STATUSES)}.", param="status")
    records = await runtime.store.list_approvals(status, request.query.get("tenant") or None, _limit(request))
    return web.json_response({"object": "list", "data": [record.public() for record in records]})


async def get_approval(request: web.Request, runtime: Runtime) -> web.Response:
    runtime.require_admin(request)
    record = await runtime.store.get_approval(request.match_info["id"])
    if record is None:
        raise errors.not_found(f"No approval {request.match_info['id']}.")
    return web.json_response(record.public())


async def _decision_body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise errors.invalid_request('The body must be JSON like {"reason": "..."} (or empty).') from None
    if not isinstance(body, dict) or not isinstance(body.get("reason", ""), str | None):
        raise errors.invalid_request("'reason' must be a string.", param="reason")
    return body


def _decider(request: web.Request, body: dict[str, Any]) -> str:
    who = body.get("by") or request.headers.get("X-Lockgate-User") or "admin"
    return str(who)[:128]


async def decide(request: web.Request, runtime: Runtime, approve: bool) -> web.Response:
    runtime.require_admin(request)
    approval_id = request.match_info["id"]
    body = await _decision_body(request)
    record = await runtime.approvals.decide(approval_id, approve, _decider(request, body), body.get("reason"))
    if record is not None:
        return web.json_response(record.public())
    current = await runtime.store.get_approval(approval_id)
    if current is None:
        raise errors.not_found(undecidable(approval_id, None))
    code = "approval_expired" if timed_out(current, time.time()) else "approval_not_pending"
    raise GatewayError(409, "invalid_request_error", code, undecidable(approval_id, current))


async def approve(request: web.Request, runtime: Runtime) -> web.Response:
    return await decide(request, runtime, True)


async def deny(request: web.Request, runtime: Runtime) -> web.Response:
    return await decide(request, runtime, False)


async def list_reviews(request: web.Request, runtime: Runtime) -> web.Response:
    runtime.require_admin(request)
    rows = await runtime.store.list_reviews(_since(request), request.query.get("tenant") or None, _limit(request))
    return web.json_response({"object": "list", "data": rows})


async def list_audit(request: web.Request, runtime: Runtime) -> web.Response:
    runtime.require_admin(request)
    await runtime.audit.flush()
    rows = await runtime.store.audit_events(_since(request), request.query.get("request_id") or None,
                                            _limit(request))
    return web.json_response({"object": "list", "data": rows})


async def recent_requests(request: web.Request, runtime: Runtime) -> web.Response:
    """The latest ledger rows (newest first), with their policy decisions."""
    runtime.require_admin(request)
    await runtime.ledger_settled()
    query = LedgerQuery(tenant=request.query.get("tenant") or None, since=_since(request, "1d"), until=time.time() + 1,
                        limit=_limit(request), newest_first=True)
    rows = await runtime.store.ledger_rows(query)
    for row in rows:
        row["decisions"] = [label for label in (row.get("decisions") or "").split(",") if label]
    return web.json_response({"object": "list", "data": rows})


async def circuits(request: web.Request, runtime: Runtime) -> web.Response:
    runtime.require_admin(request)
    data = [{"provider": target.provider.name, "model": target.model, "state": target.breaker.state,
             "retry_after_s": round(target.breaker.retry_after(), 3), "in_flight": target.in_flight,
             "latency_ewma_ms": round(target.latency_ewma_s * 1000, 3)} for target in runtime.targets()]
    return web.json_response({"object": "list", "data": data})


def _tenant_policies(listed: tuple[str, ...], loaded: set[str]) -> list[str]:
    """The policies a tenant runs, in order: `default` first, each once (a tenant may list it too)."""
    return [name for name in dict.fromkeys(("default", *listed)) if name in loaded]


async def tenants(request: web.Request, runtime: Runtime) -> web.Response:
    runtime.require_admin(request)
    loaded = set(runtime.snapshot.policies.names())
    data = [{"name": tenant.name, "policies": _tenant_policies(tenant.policies, loaded),
             "models": tenant.models,
             "budget": {"usd_per_day": tenant.budget.usd_per_day, "usd_per_month": tenant.budget.usd_per_month},
             "limits": {"rpm": tenant.limits.rpm, "tpm": tenant.limits.tpm,
                        "max_concurrent": tenant.limits.max_concurrent}}
            for tenant in runtime.snapshot.config.tenants.values()]
    return web.json_response({"object": "list", "data": data})


async def reload(request: web.Request, runtime: Runtime) -> web.Response:
    runtime.require_admin(request)
    result = await runtime.reload()
    return web.json_response(result.as_json(), status=200 if result.ok else 422)


ROUTES = [
    ("GET", "/admin/approvals", list_approvals),
    ("GET", "/admin/approvals/{id}", get_approval),
    ("POST", "/admin/approvals/{id}/approve", approve),
    ("POST", "/admin/approvals/{id}/deny", deny),
    ("GET", "/admin/reviews", list_reviews),
    ("GET", "/admin/audit", list_audit),
    ("GET", "/admin/requests", recent_requests),
    ("GET", "/admin/circuits", circuits),
    ("GET", "/admin/tenants", tenants),
    ("POST", "/admin/reload", reload),
]
