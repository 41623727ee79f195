"""Admission: may this request go upstream now, and what does it take from the limits?

In order: rate limits and budgets (reserved from an estimate, settled with the actual
figures when the request ends), then the concurrency caps (tenant, then gateway). A
refusal is a 429 with `Retry-After`; nothing is held for a refused request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gateway import errors
from gateway.config import TenantConfig
from gateway.errors import GatewayError
from gateway.exchange import Exchange
from gateway.limits.concurrency import ConcurrencyCap
from gateway.limits.quota import DEFAULT_OUTPUT_ESTIMATE, Hold, Quotas, budget_limits
from gateway.metering import billed_usage
from gateway.pricing import PriceTable
from gateway.router import Attempt, Route
from gateway.usage import Usage

if TYPE_CHECKING:
    from gateway.runtime import Runtime

log = logging.getLogger("lockgate.limits")


class Admission:
    def __init__(self, runtime: Runtime, quotas: Quotas) -> None:
        self.runtime = runtime
        self.quotas = quotas
        self._global: ConcurrencyCap | None = None
        self._tenants: dict[str, ConcurrencyCap] = {}

    def _global_cap(self) -> ConcurrencyCap:
        limit = self.runtime.snapshot.config.server.max_concurrent
        if self._global is None or self._global.limit != limit:
            self._global = ConcurrencyCap(limit, "the gateway")
        return self._global

    def _tenant_cap(self, tenant: str, limit: int) -> ConcurrencyCap:
        cap = self._tenants.get(tenant)
        if cap is None or cap.limit != limit:
            cap = self._tenants[tenant] = ConcurrencyCap(limit, f"tenant '{tenant}'")
        return cap

    def admit(self, exchange: Exchange, route: Route) -> Admitted:
        """`async with admission.admit(exchange, route) as reservation:` while the request is served."""
        return Admitted(self, exchange, route)

    async def _take_quotas(self, exchange: Exchange, route: Route) -> Hold | None:
        tenant = exchange.tenant
        assert tenant is not None and exchange.body is not None
        limits = tenant.limits
        if not (limits.rpm or limits.tpm or budget_limits(tenant) or tenant.model_limits):
            return None
        prompt = exchange.estimated_prompt_tokens()
        # Any target may end up serving it (failover): reserve for the one that may cost most.
        body = exchange.body
        allowances = [(target.model, target.provider.output_allowance(body, target.model))
                      for target in route.targets]
        tokens = prompt + max((allowance or 0 for _, allowance in allowances), default=0)
        cost = 0.0
        if budget_limits(tenant):
            prices = self.runtime.snapshot.prices
            cost = max((price.cost(Usage(input_tokens=prompt, output_tokens=allowance or DEFAULT_OUTPUT_ESTIMATE))
                        for model, allowance in allowances if (price := prices.price(model)) is not None),
                       default=0.0)
        exchange.reserved_tokens = tokens
        return await _counted(tenant, self.quotas.take(tenant, route.alias, tokens, cost, time.time()))

    async def _settle(self, exchange: Exchange, hold: Hold, more: list[Hold]) -> None:
        await self.runtime.meter.estimate_off_loop(exchange)
        usage, cost = self.runtime.meter.finalize(exchange)
        tokens = usage.input_tokens + usage.output_tokens if usage is not None else 0
        try:
            await self.quotas.settle(hold, tokens, cost or 0.0, time.time())
            for extra in more:  # the actual cost is settled once, on the first hold
                await self.quotas.settle(extra, 0, 0.0, time.time())
        except Exception:
            # The answer is already the client's; the ledger has its cost. Only the shared
            # counters miss it (budgets re-seed from the ledger on restart and reload).
            log.exception("could not settle the limits of request %s", exchange.request_id)


class Admitted:
    """A request's place in the limits: quotas taken and concurrency slots held on entry (or
    a 429 with nothing held), given back and settled with the actual usage on exit. A class
    rather than a generator-based context manager: it is entered by every request."""

    __slots__ = ("_admission", "_exchange", "_held", "_hold", "_reservation", "_route")

    def __init__(self, admission: Admission, exchange: Exchange, route: Route) -> None:
        self._admission = admission
        self._exchange = exchange
        self._route = route
        self._hold: Hold | None = None
        self._reservation: Reservation | None = None
        self._held: list[ConcurrencyCap] = []

    async def __aenter__(self) -> Reservation:
        admission, exchange = self._admission, self._exchange
        tenant = exchange.tenant
        assert tenant is not None
        self._hold = await admission._take_quotas(exchange, self._route)
        self._reservation = Reservation(admission.quotas, admission.runtime.snapshot.prices, tenant, self._hold)
        queue_timeout = admission.runtime.snapshot.config.server.queue_timeout_s
        try:
            if tenant.limits.max_concurrent:
                cap = admission._tenant_cap(tenant.name, tenant.limits.max_concurrent)
                await cap.acquire(queue_timeout)
                self._held.append(cap)
            cap = admission._global_cap()
            await cap.acquire(queue_timeout)
            self._held.append(cap)
        except BaseException:
            await self._give_back()
            raise
        admission.runtime.metrics.in_flight.inc()
        return self._reservation

    async def __aexit__(self, *exc_info: object) -> None:
        self._admission.runtime.metrics.in_flight.dec()
        await self._give_back()

    async def _give_back(self) -> None:
        for cap in self._held:
            cap.release()
        self._held.clear()
        if self._hold is not None:
            assert self._reservation is not None
            await self._admission._settle(self._exchange, self._hold, self._reservation.more)


@dataclass(slots=True)
class Reservation:
    """What a request in flight holds on its tenant's budgets: the estimated cost of the
    attempt that serves it. A failed attempt the provider billed spent money on top of that:
    `cover` reserves it before the next attempt starts (a 429 `budget_exceeded` when the
    budget cannot take it), so retries and failovers do not spend past a budget either."""

    quotas: Quotas
    prices: PriceTable
    tenant: TenantConfig
    first: Hold | None
    more: list[Hold] = field(default_factory=list)

    async def cover(self, failed: Attempt) -> None:
        if self.first is None or not self.first.budgets:
            return  # no budget to hold
        usage = billed_usage(failed)
        cost = self.prices.cost(failed.model, usage) if usage is not None else None
        if cost:
            self.more.append(await _counted(self.tenant, self.quotas.take_budget(self.tenant, cost, time.time())))


async def _counted(tenant: TenantConfig, taking: Awaitable[Hold]) -> Hold:
    try:
        return await taking
    except GatewayError:
        raise
    except Exception as exc:
        # Budgets must hold: when their counters cannot be read (Redis down or restarting),
        # the request waits for them rather than spending blind.
        log.warning("limits store unavailable for tenant %s: %s", tenant.name, exc)
        raise errors.service_unavailable(
            "Rate limits and budgets cannot be checked right now (their store is unavailable); retry "
            "shortly.", code="limits_unavailable") from None
