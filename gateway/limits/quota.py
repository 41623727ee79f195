"""Rate limits (requests and tokens per minute) and spend budgets (per day, per month).

Before a call its cost is *reserved* from an estimate (prompt tokens estimated, output at
the most the upstream may produce: `max_tokens`, plus any thinking budget an adapter adds;
a default when nothing bounds it); after it, the reservation is *settled* with the actual
figures. The check and the reservation are one atomic step in the backend, so requests in
flight together can never reserve past a budget. The recorded spend passes it only by what
requests produce beyond their reservation: the estimated prompt's error, and for requests
with no output limit (an OpenAI-compatible target without `max_tokens`) the output beyond
`DEFAULT_OUTPUT_ESTIMATE`, for each such request in flight at once.
"""

from __future__ import annotations

import calendar
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gateway import errors
from gateway.config import TenantConfig
from gateway.limits.backend import BudgetUnseeded, LimitBackend
from gateway.metrics import Metrics

MINUTE = 60.0
ADJECTIVE = {"day": "daily", "month": "monthly"}
DEFAULT_OUTPUT_ESTIMATE = 1024
"""Output tokens assumed for a budget reservation when the request sets no max_tokens."""


@dataclass(frozen=True, slots=True)
class Period:
    name: str
    """day or month"""
    id: str
    start: float
    resets_at: float

    def key(self, tenant: str) -> str:
        return f"budget:{tenant}:{self.name}:{self.id}"

    def ttl_s(self, now: float) -> float:
        return max(60.0, self.resets_at - now + 86400.0)


def periods(now: float) -> dict[str, Period]:
    moment = datetime.fromtimestamp(now, UTC)
    day_start = datetime(moment.year, moment.month, moment.day, tzinfo=UTC)
    month_start = datetime(moment.year, moment.month, 1, tzinfo=UTC)
    days_in_month = calendar.monthrange(moment.year, moment.month)[1]
    return {
        "day": Period("day", day_start.strftime("%Y-%m-%d"), day_start.timestamp(),
                      day_start.timestamp() + 86400.0),
        "month": Period("month", month_start.strftime("%Y-%m"), month_start.timestamp(),
                        month_start.timestamp() + days_in_month * 86400.0),
    }


def budget_limits(tenant: TenantConfig) -> dict[str, float]:
    limits = {"day": tenant.budget.usd_per_day, "month": tenant.budget.usd_per_month}
    return {name: value for name, value in limits.items() if value is not None}


@dataclass(slots=True)
class Hold:
    """What one request took from the counters, to settle when it ends."""

    tenant: str
    requests: list[tuple[str, float]] = field(default_factory=list)
    """(key, limit) of the request-per-minute limits counted, given back if the request is refused."""
    rate_keys: list[tuple[str, float, float]] = field(default_factory=list)
    """(key, tokens reserved, limit) for token-per-minute limits."""
    budgets: list[tuple[Period, float, float]] = field(default_factory=list)
    """(period, amount reserved, budget)."""


SpendSince = Callable[[str, float], Awaitable[float]]
"""(tenant, since) -> the spend the ledger holds since then."""


class Quotas:
    def __init__(self, backend: LimitBackend, metrics: Metrics, spend_since: SpendSince | None = None) -> None:
        self.backend = backend
        self.metrics = metrics
        self._spend_since = spend_since

    async def take(self, tenant: TenantConfig, alias: str, tokens: int, cost: float, now: float) -> Hold:
        """Count the request against every limit, or raise 429 and count nothing more."""
        hold = Hold(tenant.name)
        try:
            await self._rates(tenant, alias, tokens, hold)
            await self._budgets(tenant, cost, now, hold)
        except errors.GatewayError:
            # A refused request takes nothing: not the tenant's rpm that a later limit (a
            # model's, a budget) refused, or one looping agent would starve the others.
            for key, limit in hold.requests:
                await self.backend.adjust_rate(key, -1, limit, MINUTE)
            await self.settle(hold, 0, 0.0, now)
            raise
        return hold

    async def take_budget(self, tenant: TenantConfig, cost: float, now: float) -> Hold:
        """Reserve `cost` more on the tenant's budgets (another attempt of a request in
        flight), or raise 429 and reserve nothing."""
        hold = Hold(tenant.name)
        try:
            await self._budgets(tenant, cost, now, hold)
        except errors.GatewayError:
            await self.settle(hold, 0, 0.0, now)
            raise
        return hold

    async def _rates(self, tenant: TenantConfig, alias: str, tokens: int, hold: Hold) -> None:
        scopes = [(f"{tenant.name}", tenant.limits, f"tenant '{tenant.name}'")]
        model_limits = tenant.model_limits.get(alias)
        if model_limits is not None:
            scopes.append((f"{tenant.name}:{alias}", model_limits, f"tenant '{tenant.name}' on '{alias}'"))
        for scope, limits, who in scopes:
            if limits.rpm:
                wait = await self.backend.take_rate(f"rpm:{scope}", 1, limits.rpm, MINUTE)
                if wait:
                    raise errors.rate_limited(f"Rate limit of {limits.rpm} requests per minute reached for "
                                              f"{who}; retry in {wait:.1f}s.", retry_after=wait)
                hold.requests.append((f"rpm:{scope}", limits.rpm))
            if limits.tpm:
                cost = min(tokens, limits.tpm)  # a request larger than the limit still fits an empty window
                wait = await self.backend.take_rate(f"tpm:{scope}", cost, limits.tpm, MINUTE)
                if wait:
                    raise errors.rate_limited(f"Rate limit of {limits.tpm} tokens per minute reached for "
                                              f"{who}; retry in {wait:.1f}s.", retry_after=wait)
                hold.rate_keys.append((f"tpm:{scope}", cost, limits.tpm))

    async def _budgets(self, tenant: TenantConfig, cost: float, now: float, hold: Hold) -> None:
        refusals = []
        for name, budget in budget_limits(tenant).items():
            period = periods(now)[name]
            key, ttl = period.key(tenant.name), period.ttl_s(now)
            try:
                refused = await self.backend.reserve_budget(key, cost, budget, ttl)
            except BudgetUnseeded:
                spent = await self._spend_since(tenant.name, period.start) if self._spend_since else 0.0
                await self.backend.seed_budget(key, spent, ttl)
                refused = await self.backend.reserve_budget(key, cost, budget, ttl)
            if refused is None:
                hold.budgets.append((period, cost, budget))
            else:
                refusals.append((period, name, budget, refused))
        if refusals:
            # The request passes again only once every budget that refused it has reset.
            period, name, budget, refused = max(refusals, key=lambda refusal: refusal[0].resets_at)
            resets = datetime.fromtimestamp(period.resets_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            raise errors.budget_exceeded(
                f"Tenant '{tenant.name}' has used ${refused.spent:.4f} of its ${budget:g} {ADJECTIVE[name]} budget "
                f"(${refused.reserved:.4f} more is reserved by requests in flight; this one needs about "
                f"${cost:.4f}). The budget resets at {resets}.", retry_after=period.resets_at - now)

    async def settle(self, hold: Hold, tokens: int, cost: float, now: float) -> None:
        for key, reserved, limit in hold.rate_keys:
            if tokens != reserved:
                await self.backend.adjust_rate(key, tokens - reserved, limit, MINUTE)
        for period, reserved, budget in hold.budgets:
            spent = await self.backend.settle_budget(period.key(hold.tenant), reserved, cost, period.ttl_s(now))
            self.metrics.budget_used(hold.tenant, period.name).set(spent / budget if budget else 0.0)
        hold.rate_keys.clear()
        hold.budgets.clear()

    async def seed(self, tenants: dict[str, TenantConfig], store: Any, now: float) -> None:
        """After a restart, start each budget from the spend the ledger already holds."""
        for tenant in tenants.values():
            for name, budget in budget_limits(tenant).items():
                period = periods(now)[name]
                spent = await store.spend_since(tenant.name, period.start)
                await self.backend.seed_budget(period.key(tenant.name), spent, period.ttl_s(now))
                self.metrics.budget_used(tenant.name, name).set(spent / budget if budget else 0.0)
