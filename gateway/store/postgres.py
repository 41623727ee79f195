"""The PostgreSQL backend: one asyncpg connection pool, shared by several gateway replicas.

It keeps the same tables and columns as the SQLite backend, and every method has the same
meaning, so rows come back as the same dicts. What differs is that several replicas write
at once, so each state change that must happen once is a single conditional statement:
deciding, expiring and using an approval are `UPDATE ... WHERE <still in the old state>`,
and the row lock PostgreSQL takes makes exactly one of two racing replicas see the old
state. Ledger batches arrive through one binary COPY each. Text is stored without U+0000,
which PostgreSQL cannot hold (see `_set_codecs`).

asyncpg is an optional dependency (`pip install 'lockgate[postgres]'`); this module is only
imported for `postgresql://` storage URLs.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import orjson

from gateway.store.base import (
    ApprovalRecord,
    AuditEvent,
    KeyRecord,
    LedgerQuery,
    LedgerRow,
    ReviewRecord,
    key_id_prefix,
)
from gateway.store.schema import POSTGRES_MIGRATIONS

try:
    import asyncpg
except ImportError as missing:  # pragma: no cover - depends on the installation
    raise ImportError("a postgresql:// storage.url needs asyncpg: pip install 'lockgate[postgres]'") from missing

MIGRATION_LOCK_KEY = int.from_bytes(b"lockgate", "big")
"""The advisory lock replicas take while migrating, so only one of them changes the schema."""

_LEDGER_FLAGS = ("stream", "estimated")
# SQLite hands the flags back as 0/1, so this backend does too: both give identical rows.
_LEDGER_OUTPUT = ", ".join(f"{column}::integer AS {column}" if column in _LEDGER_FLAGS else column
                           for column in LedgerRow.COLUMNS)
_LEDGER_SELECT = f"SELECT id, {_LEDGER_OUTPUT} FROM ledger"
_FLAG_POSITIONS = tuple(LedgerRow.COLUMNS.index(flag) for flag in _LEDGER_FLAGS)
_NUL, _REPLACEMENT = "\x00", "\ufffd"


class PostgresStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self._pool: asyncpg.Pool | None = None

    @property
    def _db(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("the PostgreSQL store is not open: call open() first")
        return self._pool

    async def open(self) -> None:
        if self._pool is not None:
            return
        # The URL is the DSN as given, so libpq's conventions (PGPASSWORD, sslmode...) apply.
        pool = await asyncpg.create_pool(dsn=self.url, min_size=1, max_size=10, init=_set_codecs)
        try:
            async with pool.acquire() as connection:
                await _migrate(connection)
        except BaseException:
            await pool.close()
            raise
        self._pool = pool

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    # -- keys ----------------------------------------------------------------------------

    async def add_key(self, record: KeyRecord) -> None:
        await self._db.execute("INSERT INTO api_keys (key_hash, tenant, name, created_at) VALUES ($1, $2, $3, $4)",
                               record.key_hash, record.tenant, record.name, record.created_at)

    async def revoke_key(self, key_id: str) -> KeyRecord | None:
        prefix = key_id_prefix(key_id)
        if prefix is None:
            return None
        # One statement: the key is revoked only when exactly one active key has this id prefix.
        row = await self._db.fetchrow(
            """WITH matches AS (
                   SELECT key_hash FROM api_keys
                   WHERE starts_with(key_hash, $1) AND revoked_at IS NULL
                   LIMIT 2
               )
               UPDATE api_keys SET revoked_at = $2
               WHERE key_hash IN (SELECT key_hash FROM matches) AND revoked_at IS NULL
                 AND (SELECT count(*) FROM matches) = 1
               RETURNING *""",
            "sha256:" + prefix, time.time())
        return _key(row) if row is not None else None

    async def list_keys(self, tenant: str | None = None) -> list[KeyRecord]:
        if tenant is None:
            rows = await self._db.fetch("SELECT * FROM api_keys ORDER BY created_at")
        else:
            rows = await self._db.fetch("SELECT * FROM api_keys WHERE tenant = $1 ORDER BY created_at", tenant)
        return [_key(row) for row in rows]

    async def find_key(self, key_hash: str) -> KeyRecord | None:
        row = await self._db.fetchrow("SELECT * FROM api_keys WHERE key_hash = $1", key_hash)
        return _key(row) if row is not None else None

    # -- ledger --------------------------------------------------------------------------

    async def write_ledger(self, rows: list[LedgerRow]) -> None:
        if not rows:
            return
        # One COPY is one statement: the whole batch lands, or none of it.
        await self._db.copy_records_to_table("ledger", records=[_ledger_record(row) for row in rows],
                                             columns=LedgerRow.COLUMNS)

    async def spend_since(self, tenant: str, since: float) -> float:
        total = await self._db.fetchval(
            "SELECT COALESCE(SUM(cost_usd), 0) FROM ledger WHERE tenant = $1 AND ts >= $2", tenant, since)
        return float(total)

    async def ledger_rows(self, query: LedgerQuery) -> list[dict[str, Any]]:
        sql, params = _filtered(f"{_LEDGER_SELECT} WHERE ts >= $1 AND ts < $2", query.since, query.until,
                                tenant=query.tenant)
        return [dict(row) for row in await self._db.fetch(sql + query.order_sql(), *params)]

    # -- approvals -----------------------------------------------------------------------

    async def add_approval(self, record: ApprovalRecord) -> None:
        await self._db.execute(_insert("approvals", ApprovalRecord.COLUMNS), *record.values())

    async def get_approval(self, approval_id: str) -> ApprovalRecord | None:
        row = await self._db.fetchrow("SELECT * FROM approvals WHERE id = $1", approval_id)
        return _approval(row) if row is not None else None

    async def list_approvals(self, status: str | None, tenant: str | None, limit: int) -> list[ApprovalRecord]:
        sql, params = _filtered("SELECT * FROM approvals WHERE TRUE", status=status, tenant=tenant)
        rows = await self._db.fetch(f"{sql} ORDER BY created_at DESC LIMIT ${len(params) + 1}", *params, limit)
        return [_approval(row) for row in rows]

    async def decide_approval(self, approval_id: str, status: str, by: str, reason: str | None,
                              now: float) -> ApprovalRecord | None:
        row = await self._db.fetchrow(
            "UPDATE approvals SET status = $2, decided_by = $3, reason = $4, decided_at = $5 "
            "WHERE id = $1 AND status = 'pending' AND expires_at > $5 RETURNING *",
            approval_id, status, by, reason, now)
        return _approval(row) if row is not None else None

    async def expire_approvals(self, now: float) -> list[ApprovalRecord]:
        # SKIP LOCKED: a row another replica is sweeping (or a human is deciding) right now is
        # theirs; waiting for it could deadlock two sweeps that lock rows in different orders.
        rows = await self._db.fetch(
            """UPDATE approvals
               SET status = CASE on_timeout WHEN 'approve' THEN 'approved' ELSE 'expired' END,
                   decided_by = 'timeout', decided_at = $1
               WHERE id IN (SELECT id FROM approvals WHERE status = 'pending' AND expires_at <= $1
                            FOR UPDATE SKIP LOCKED)
               RETURNING *""", now)
        return [_approval(row) for row in rows]

    async def use_approval(self, approval_id: str, now: float) -> bool:
        used = await self._db.fetchval(
            "UPDATE approvals SET used_at = $2 WHERE id = $1 AND status = 'approved' AND used_at IS NULL "
            "RETURNING id", approval_id, now)
        return used is not None

    # -- audit and reviews ---------------------------------------------------------------

    async def write_audit(self, events: list[AuditEvent]) -> None:
        if not events:
            return
        values = [tuple(getattr(event, column) for column in AuditEvent.COLUMNS) for event in events]
        await self._db.executemany(_insert("audit", AuditEvent.COLUMNS), values)  # atomic, like a COPY

    async def audit_events(self, since: float, request_id: str | None, limit: int) -> list[dict[str, Any]]:
        sql, params = _filtered("SELECT * FROM audit WHERE ts >= $1", since, request_id=request_id)
        rows = await self._db.fetch(f"{sql} ORDER BY ts DESC, id DESC LIMIT ${len(params) + 1}", *params, limit)
        return [dict(row) for row in rows]

    async def add_review(self, review: ReviewRecord) -> None:
        await self._db.execute(_insert("reviews", ReviewRecord.COLUMNS),
                               *(getattr(review, column) for column in ReviewRecord.COLUMNS))

    async def list_reviews(self, since: float, tenant: str | None, limit: int) -> list[dict[str, Any]]:
        sql, params = _filtered("SELECT * FROM reviews WHERE ts >= $1", since, tenant=tenant)
        rows = await self._db.fetch(f"{sql} ORDER BY ts DESC LIMIT ${len(params) + 1}", *params, limit)
        return [dict(row) for row in rows]


def _insert(table: str, columns: Iterable[str]) -> str:
    names = list(columns)
    placeholders = ", ".join(f"${number}" for number in range(1, len(names) + 1))
    return f"INSERT INTO {table} ({', '.join(names)}) VALUES ({placeholders})"


def _filtered(sql: str, *params: Any, **equal: Any) -> tuple[str, list[Any]]:
    """`sql` narrowed by `column = value` for each given value (None means any)."""
    values = list(params)
    for column, value in equal.items():
        if value is not None:
            values.append(value)
            sql += f" AND {column} = ${len(values)}"
    return sql, values


def _ledger_record(row: LedgerRow) -> list[Any]:
    values = list(row.values())
    for position in _FLAG_POSITIONS:
        values[position] = bool(values[position])  # binary COPY wants a real boolean
    return values


def _approval(row: asyncpg.Record) -> ApprovalRecord:
    return ApprovalRecord(**{column: row[column] for column in ApprovalRecord.COLUMNS})


def _key(row: asyncpg.Record) -> KeyRecord:
    return KeyRecord(key_hash=row["key_hash"], tenant=row["tenant"], name=row["name"],
                     created_at=row["created_at"], revoked_at=row["revoked_at"])


async def _set_codecs(connection: asyncpg.Connection) -> None:
    """Text without U+0000, and audit detail as Python objects (JSON text on the wire).

    PostgreSQL's text and JSONB cannot hold U+0000, which SQLite stores and a model or a
    client can send. Refusing it would fail the whole batch holding it, and the batch
    writer would retry that batch forever, so it is stored as U+FFFD instead.
    """
    await connection.set_type_codec("text", schema="pg_catalog", format="binary", encoder=_text_bytes,
                                    decoder=bytes.decode)
    await connection.set_type_codec("jsonb", schema="pg_catalog", format="text", encoder=_json_text,
                                    decoder=orjson.loads)


def _text_bytes(text: str) -> bytes:
    return text.replace(_NUL, _REPLACEMENT).encode()


def _json_text(value: Any) -> str:
    text = orjson.dumps(value).decode()
    # orjson writes U+0000 as this escape; an escaped backslash before 'u0000' is a harmless false alarm.
    return orjson.dumps(_without_nul(value)).decode() if "\\u0000" in text else text


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace(_NUL, _REPLACEMENT)
    if isinstance(value, dict):
        return {_without_nul(key): _without_nul(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_without_nul(item) for item in value]
    return value


async def _migrate(connection: asyncpg.Connection) -> None:
    """Apply the migrations this database lacks, all in one transaction.

    Replicas starting together queue on a transaction-scoped advisory lock (released by the
    commit or rollback, so a crashed migrator never leaves it held); each then reads the
    version the previous one reached and finds nothing left to do.
    """
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
        await connection.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        current = await connection.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version")
        for version, statements in enumerate(POSTGRES_MIGRATIONS, start=1):
            if version <= current:
                continue
            for statement in statements:
                await connection.execute(statement)
            await connection.execute("INSERT INTO schema_version (version) VALUES ($1)", version)
