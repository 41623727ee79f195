"""Admission: may this request go upstream now?

Concurrency caps (global, per tenant) queue a request for up to
`server.queue_timeout_s` before answering 429; a client that leaves the queue leaves
it at once (cancellation removes the waiter).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from gateway import errors
from gateway.exchange import Exchange

if TYPE_CHECKING:
    from gateway.runtime import Runtime


class ConcurrencyCap:
    """A semaphore whose waiters give up after a timeout with a 429."""

    def __init__(self, limit: int, what: str) -> None:
        self.limit = limit
        self.what = what
        self._semaphore = asyncio.Semaphore(limit)

    async def acquire(self, timeout_s: float) -> None:
        if not self._semaphore.locked():
            await self._semaphore.acquire()
            return
        try:
            async with asyncio.timeout(timeout_s):
                await self._semaphore.acquire()
        except TimeoutError:
            raise errors.rate_limited(
                f"Too many concurrent requests for {self.what} (limit {self.limit}); "
                f"waited {timeout_s:g}s in the queue. Retry shortly or lower your concurrency.",
                retry_after=1.0,
            ) from None

    def release(self) -> None:
        self._semaphore.release()


class Admission:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
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

    @asynccontextmanager
    async def admit(self, exchange: Exchange) -> AsyncIterator[None]:
        assert exchange.tenant is not None
        queue_timeout = self.runtime.snapshot.config.server.queue_timeout_s
        held: list[ConcurrencyCap] = []
        try:
            limit = exchange.tenant.limits.max_concurrent
            if limit:
                cap = self._tenant_cap(exchange.tenant.name, limit)
                await cap.acquire(queue_timeout)
                held.append(cap)
            cap = self._global_cap()
            await cap.acquire(queue_timeout)
            held.append(cap)
            self.runtime.metrics.in_flight.inc()
            try:
                yield
            finally:
                self.runtime.metrics.in_flight.dec()
        finally:
            for cap in held:
                cap.release()
