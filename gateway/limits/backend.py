"""Shared counters for rate limits and budgets, and the in-memory backend.

Two operations, each atomic in its backend:

- `take_rate`: GCRA. A key's "theoretical arrival time" moves forward by `cost` times
  the emission interval; the request is refused while that time is more than one period
  ahead of now. `cost` may be negative afterwards to settle an estimate.
- `reserve_budget`: refuse if spend + reservations + amount would pass the budget,
  else add `amount` to the reservations; `settle_budget` moves a reservation into spend.

The Redis backend (`gateway.limits.redis_backend`) runs the same logic in Lua so several
replicas share one set of counters.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol


class BudgetUnseeded(Exception):
    """The spend counter does not exist (a new period, or a shared store that restarted and
    lost it): it must be seeded from the ledger before anything is reserved against it."""


@dataclass(frozen=True, slots=True)
class BudgetState:
    spent: float
    reserved: float


class LimitBackend(Protocol):
    async def take_rate(self, key: str, cost: float, limit: float, period_s: float) -> float:
        """0 when admitted (and counted), else the seconds to wait (nothing counted)."""
        ...

    async def adjust_rate(self, key: str, cost: float, limit: float, period_s: float) -> None:
        """Correct an earlier `take_rate` by `cost` (positive or negative), without refusing."""
        ...

    async def reserve_budget(self, key: str, amount: float, budget: float, ttl_s: float) -> BudgetState | None:
        """Reserve `amount`; None when admitted, else the state that refused it. A shared
        backend raises BudgetUnseeded when the spend counter is missing."""
        ...

    async def settle_budget(self, key: str, reserved: float, actual: float, ttl_s: float) -> float:
        """Release `reserved`, add `actual` to the spend; returns the new spend."""
        ...

    async def seed_budget(self, key: str, spent: float, ttl_s: float) -> None:
        """Set the spend from the ledger if the counter does not exist yet (after a restart)."""
        ...

    async def close(self) -> None: ...


class MemoryBackend:
    """Counters in this process: exact for one process (all calls run on one event loop)."""

    def __init__(self) -> None:
        self._tat: dict[str, float] = {}
        self._spent: dict[str, float] = {}
        self._reserved: dict[str, float] = {}

    async def take_rate(self, key: str, cost: float, limit: float, period_s: float) -> float:
        now = time.monotonic()
        interval = period_s / limit
        tat = max(self._tat.get(key, now), now)
        new_tat = tat + cost * interval
        allow_at = new_tat - period_s
        if now < allow_at:
            return allow_at - now
        self._tat[key] = new_tat
        return 0.0

    async def adjust_rate(self, key: str, cost: float, limit: float, period_s: float) -> None:
        now = time.monotonic()
        tat = max(self._tat.get(key, now), now)
        self._tat[key] = max(now, tat + cost * period_s / limit)

    async def reserve_budget(self, key: str, amount: float, budget: float, ttl_s: float) -> BudgetState | None:
        spent, reserved = self._spent.get(key, 0.0), self._reserved.get(key, 0.0)
        if spent + reserved + amount > budget:
            return BudgetState(spent, reserved)
        self._reserved[key] = reserved + amount
        return None

    async def settle_budget(self, key: str, reserved: float, actual: float, ttl_s: float) -> float:
        self._reserved[key] = max(0.0, self._reserved.get(key, 0.0) - reserved)
        spent = self._spent[key] = self._spent.get(key, 0.0) + actual
        return spent

    async def seed_budget(self, key: str, spent: float, ttl_s: float) -> None:
        self._spent.setdefault(key, spent)

    async def close(self) -> None:
        return None
