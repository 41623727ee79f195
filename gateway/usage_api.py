"""Usage answers: `GET /v1/usage` (the caller's own tenant) and `GET /admin/usage`.

A tenant key only ever sees its own tenant: the tenant comes from the key, never from
the query. Rows still in the ledger's write buffer are flushed first, so an answer
includes every request this gateway has finished.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from gateway import errors
from gateway.reporting import check_group_key, default_grouping, parse_window, usage_report
from gateway.runtime import Runtime
from gateway.store import LedgerQuery


async def build_report(runtime: Runtime, tenant: str | None, query: Mapping[str, str]) -> dict[str, Any]:
    try:
        since, until = parse_window(query.get("since"), query.get("until"), time.time())
        by = check_group_key(query.get("by") or default_grouping(tenant))
    except ValueError as exc:
        raise errors.invalid_request(str(exc)) from None
    await runtime.ledger_settled()
    rows = await runtime.store.ledger_rows(LedgerQuery(tenant=tenant, since=since, until=until))
    return usage_report(rows, tenant=tenant, since=since, until=until, by=by)


async def tenant_usage(request: web.Request, runtime: Runtime) -> web.Response:
    tenant = await runtime.authenticate(request)
    return web.json_response(await build_report(runtime, tenant.name, request.query))


async def admin_usage(request: web.Request, runtime: Runtime) -> web.Response:
    runtime.require_admin(request)
    tenant = request.query.get("tenant") or None
    if tenant is not None and tenant not in runtime.snapshot.config.tenants:
        raise errors.not_found(f"No tenant '{tenant}'; tenants are defined in the config.")
    return web.json_response(await build_report(runtime, tenant, request.query))
