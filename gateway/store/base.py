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


_HEX_DIGITS = frozenset("0123456789abcdef")


def key_id_prefix(key_id: str) -> str | None:
    """`key_id` as the lowercase hex prefix of a key hash that `revoke_key` matches, or None.

    Both backends refuse the same ids before any query: an empty id is a prefix of every
    key, and anything but hex digits (`%`, `_`, spaces, `sha256:`) cannot name a key.
    """
    prefix = key_id.lower()
    if not prefix or not _HEX_DIGITS.issuperset(prefix):
        return None
    return prefix


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
class ApprovalRecord:
    """A held or deferred decision waiting for (or having had) a human."""

    id: str
    status: str
    """pending, approved, denied or expired"""
    tenant: str
    agent: str | None
    policy: str
    rule: str
    stage: str
    """request or tool_call"""
    mode: str
    """hold or defer"""
    tool_name: str | None
    arguments: str | None
    summary: str | None
    digest: str
    """What the approval is bound to: the canonical request, or the tool name and arguments."""
    policy_version: str
    request_id: str
    on_timeout: str
    created_at: float
    expires_at: float
    decided_at: float | None = None
    decided_by: str | None = None
    reason: str | None = None
    used_at: float | None = None

    COLUMNS = ("id", "status", "tenant", "agent", "policy", "rule", "stage", "mode", "tool_name", "arguments",
               "summary", "digest", "policy_version", "request_id", "on_timeout", "created_at", "expires_at",
               "decided_at", "decided_by", "reason", "used_at")

    def values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, column) for column in self.COLUMNS)

    def public(self) -> dict[str, Any]:
        """The admin API's view (the binding digest stays internal)."""
        return {column: getattr(self, column) for column in self.COLUMNS if column != "digest"}


@dataclass(slots=True)
class AuditEvent:
    ts: float
    request_id: str
    tenant: str | None
    agent: str | None
    kind: str
    """decision, approval, review, reload"""
    policy: str | None = None
    rule: str | None = None
    stage: str | None = None
    action: str | None = None
    shadow: bool = False
    detail: dict[str, Any] = field(default_factory=dict)

    COLUMNS = ("ts", "request_id", "tenant", "agent", "kind", "policy", "rule", "stage", "action", "shadow",
               "detail")


@dataclass(slots=True)
class ReviewRecord:
    ts: float
    request_id: str
    tenant: str
    agent: str | None
    policy: str
    rule: str
    request: str
    response: str | None

    COLUMNS = ("ts", "request_id", "tenant", "agent", "policy", "rule", "request", "response")


@dataclass(slots=True)
class LedgerQuery:
    tenant: str | None
    since: float
    until: float
    limit: int | None = None
    newest_first: bool = False

    def order_sql(self) -> str:
        """The ORDER BY / LIMIT tail both backends append (LIMIT is a validated int)."""
        tail = " ORDER BY ts DESC" if self.newest_first else " ORDER BY ts"
        return tail + (f" LIMIT {int(self.limit)}" if self.limit is not None else "")


class Store(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    # keys
    async def add_key(self, record: KeyRecord) -> None: ...

    async def revoke_key(self, key_id: str) -> KeyRecord | None:
        """Revoke the one active key whose id starts with `key_id` (hex, any case); None if
        `key_id` is not hex (see `key_id_prefix`), or matches no active key or several."""
        ...

    async def list_keys(self, tenant: str | None = None) -> list[KeyRecord]: ...

    async def find_key(self, key_hash: str) -> KeyRecord | None: ...

    # ledger
    async def write_ledger(self, rows: list[LedgerRow]) -> None: ...

    async def ledger_rows(self, query: LedgerQuery) -> list[dict[str, Any]]: ...

    async def spend_since(self, tenant: str, since: float) -> float:
        """The tenant's recorded cost since `since` (budgets restart from it)."""
        ...

    # approvals
    async def add_approval(self, record: ApprovalRecord) -> None: ...

    async def get_approval(self, approval_id: str) -> ApprovalRecord | None: ...

    async def list_approvals(self, status: str | None, tenant: str | None, limit: int) -> list[ApprovalRecord]: ...

    async def decide_approval(self, approval_id: str, status: str, by: str, reason: str | None,
                              now: float) -> ApprovalRecord | None:
        """Pending -> `status`, atomically; None if it was not pending, or `now` is at or past its
        `expires_at` (then only `expire_approvals` decides it, by its `on_timeout`)."""
        ...

    async def expire_approvals(self, now: float) -> list[ApprovalRecord]:
        """Every pending approval past its expiry, now decided by its `on_timeout`."""
        ...

    async def use_approval(self, approval_id: str, now: float) -> bool:
        """Mark an approved deferred approval as used; False if it was used already."""
        ...

    # audit and reviews
    async def write_audit(self, events: list[AuditEvent]) -> None: ...

    async def audit_events(self, since: float, request_id: str | None, limit: int) -> list[dict[str, Any]]: ...

    async def add_review(self, review: ReviewRecord) -> None: ...

    async def list_reviews(self, since: float, tenant: str | None, limit: int) -> list[dict[str, Any]]: ...
