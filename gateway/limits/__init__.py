"""Limits on what a tenant may use: rate limits, budgets, concurrency.

`Admission` applies them to each request; the counters live in a backend: this
process's memory by default, Redis (`storage.redis_url`) for several replicas.
"""

from __future__ import annotations

from gateway.limits.admission import Admission
from gateway.limits.backend import LimitBackend, MemoryBackend
from gateway.limits.quota import Quotas


def open_backend(redis_url: str | None) -> LimitBackend:
    if redis_url:
        from gateway.limits.redis_backend import RedisBackend

        return RedisBackend(redis_url)
    return MemoryBackend()


__all__ = ["Admission", "LimitBackend", "MemoryBackend", "Quotas", "open_backend"]
