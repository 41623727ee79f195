"""Approval decisions announced to every replica through Redis pub/sub.

A hold waits on its own replica; the decision may be made through any other. Without
this bus the waiting replica notices within a second (it re-reads the store); with
`storage.redis_url` set, every decision is published and the waiting hold is released
at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("lockgate.approvals")
CHANNEL = "lockgate:approvals:decided"


class RedisApprovalBus:
    def __init__(self, url: str) -> None:
        import redis.asyncio as redis  # optional: only with storage.redis_url

        self._redis: Any = redis.from_url(url)
        self._task: asyncio.Task[None] | None = None

    async def publish(self, approval_id: str) -> None:
        try:
            await self._redis.publish(CHANNEL, approval_id)
        except Exception as exc:  # the store is the truth; waiters still poll it
            log.warning("could not announce approval %s: %s", approval_id, type(exc).__name__)

    def listen(self, wake: Callable[[str], None]) -> None:
        self._task = asyncio.get_running_loop().create_task(self._listen(wake), name="lockgate-approval-bus")

    async def _listen(self, wake: Callable[[str], None]) -> None:
        while True:
            try:
                pubsub = self._redis.pubsub()
                await pubsub.subscribe(CHANNEL)
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        data = message["data"]
                        wake(data.decode() if isinstance(data, bytes) else str(data))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("approval bus disconnected (%s); reconnecting", type(exc).__name__)
                await asyncio.sleep(1.0)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._redis.aclose()
