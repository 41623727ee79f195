"""What the gateway keeps durably, and the interface every storage backend implements.

SQLite is the single-node default; PostgreSQL serves several replicas. Both keep the
same records: minted API keys (hashed), the request ledger, approvals and the audit
log. Methods are async; the SQLite backend runs them on its own thread so the event
loop never blocks on disk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(slots=True)
class KeyRecord:
    key_hash: str
    tenant: str
    name: str
    created_at: float
    revoked_at: float | None = None

    @property
    def key_id(self) -> str:
        """A short, safe handle for a key: the first hex digits of its hash."""
        return self.key_hash.removeprefix("sha256:")[:12]


@dataclass(slots=True)
class LedgerRow:
    """One request, as metered. Written in batches, never on the request path."""

    ts: float
    request_id: str
    tenant: str
    agent: str | None
    alias: str | None
    provider: str | None
    model: str | None
    api: str
    stream: bool
    status: int
    error_type: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float | None = None
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    upstream_ms: float = 0.0
    overhead_ms: float = 0.0
    attempts: int = 0
    decisions: list[str] = field(default_factory=list)
    estimated: bool = False

    COLUMNS = ("ts", "request_id", "tenant", "agent", "alias", "provider", "model", "api", "stream",
               "status", "error_type", "input_tokens", "output_tokens", "cached_tokens",
               "cache_write_tokens", "reasoning_tokens", "cost_usd", "latency_ms", "ttft_ms",
               "upstream_ms", "overhead_ms", "attempts", "decisions", "estimated")

    def values(self) -> tuple[Any, ...]:
        return (self.ts, self.request_id, self.tenant, self.agent, self.alias, self.provider, self.model,
                self.api, int(self.stream), self.status, self.error_type, self.input_tokens,
                self.output_tokens, self.cached_tokens, self.cache_write_tokens, self.reasoning_tokens,
                self.cost_usd, self.latency_ms, self.ttft_ms, self.upstream_ms, self.overhead_ms,
                self.attempts, ",".join(self.decisions), int(self.estimated))


@dataclass(slots=True)
class LedgerQuery:
    tenant: str | None
    since: float
    until: float


class Store(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    # keys
    async def add_key(self, record: KeyRecord) -> None: ...

    async def revoke_key(self, key_id: str) -> KeyRecord | None: ...

    async def list_keys(self, tenant: str | None = None) -> list[KeyRecord]: ...

    async def find_key(self, key_hash: str) -> KeyRecord | None: ...

    # ledger
    async def write_ledger(self, rows: list[LedgerRow]) -> None: ...

    async def ledger_rows(self, query: LedgerQuery) -> list[dict[str, Any]]: ...

    async def spend_since(self, tenant: str, since: float) -> float:
        """The tenant's recorded cost since `since` (budgets restart from it)."""
        ...
