"""Concurrency caps: a request waits up to `server.queue_timeout_s` for a slot, then 429.

A client that leaves the queue leaves it at once (cancellation removes the waiter).
"""

from __future__ import annotations

import asyncio

from gateway import errors


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
