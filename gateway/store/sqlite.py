"""The SQLite backend: one connection on one dedicated thread, WAL mode.

Every call is shipped to the store's thread, so the event loop never waits on disk
and SQLite sees a single writer. Ledger rows arrive in batches and are committed in
one transaction each (single-row commits cost about ten times more).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

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
from gateway.store.schema import SQLITE_MIGRATIONS

T = TypeVar("T")


class SQLiteStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lockgate-sqlite")
        self._db: sqlite3.Connection | None = None

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, work)

    def _call(self, work: Callable[[sqlite3.Connection], T]) -> T:
        if self._db is None:
            self._db = self._connect()
        return work(self._db)

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA busy_timeout=30000")
        _use_wal(db)
        db.execute("PRAGMA synchronous=NORMAL")
        _migrate(db)
        return db

    async def open(self) -> None:
        await self._run(lambda db: None)

    async def close(self) -> None:
        def shut(db: sqlite3.Connection) -> None:
            db.close()
            self._db = None
        if self._db is not None:
            await self._run(shut)
        self._executor.shutdown(wait=True)

    # -- keys ----------------------------------------------------------------------------

    async def add_key(self, record: KeyRecord) -> None:
        await self._run(lambda db: db.execute(
            "INSERT INTO api_keys (key_hash, tenant, name, created_at) VALUES (?, ?, ?, ?)",
            (record.key_hash, record.tenant, record.name, record.created_at)))

    async def revoke_key(self, key_id: str) -> KeyRecord | None:
        prefix = key_id_prefix(key_id)
        if prefix is None:
            return None

        def revoke(db: sqlite3.Connection) -> KeyRecord | None:
            rows = db.execute("SELECT key_hash FROM api_keys WHERE substr(key_hash, 8, ?) = ? AND revoked_at IS NULL",
                              (len(prefix), prefix)).fetchall()
            if len(rows) != 1:
                return None
            db.execute("UPDATE api_keys SET revoked_at = ? WHERE key_hash = ?", (time.time(), rows[0]["key_hash"]))
            return _key(db.execute("SELECT * FROM api_keys WHERE key_hash = ?", (rows[0]["key_hash"],)).fetchone())
        return await self._run(revoke)

    async def list_keys(self, tenant: str | None = None) -> list[KeyRecord]:
        def select(db: sqlite3.Connection) -> list[KeyRecord]:
            if tenant is None:
                rows = db.execute("SELECT * FROM api_keys ORDER BY created_at").fetchall()
            else:
                rows = db.execute("SELECT * FROM api_keys WHERE tenant = ? ORDER BY created_at",
                                  (tenant,)).fetchall()
            return [_key(row) for row in rows]
        return await self._run(select)

    async def find_key(self, key_hash: str) -> KeyRecord | None:
        def select(db: sqlite3.Connection) -> KeyRecord | None:
            row = db.execute("SELECT * FROM api_keys WHERE key_hash = ?", (key_hash,)).fetchone()
            return _key(row) if row is not None else None
        return await self._run(select)

    # -- ledger --------------------------------------------------------------------------

    async def write_ledger(self, rows: list[LedgerRow]) -> None:
        if not rows:
            return
        sql = _insert("ledger", LedgerRow.COLUMNS)
        values = [row.values() for row in rows]
        await self._run(lambda db: _in_transaction(db, lambda: db.executemany(sql, values)))

    async def spend_since(self, tenant: str, since: float) -> float:
        def total(db: sqlite3.Connection) -> float:
            row = db.execute("SELECT COALESCE(SUM(cost_usd), 0) FROM ledger WHERE tenant = ? AND ts >= ?",
                             (tenant, since)).fetchone()
            return float(row[0])
        return await self._run(total)

    async def ledger_rows(self, query: LedgerQuery) -> list[dict[str, Any]]:
        def select(db: sqlite3.Connection) -> list[dict[str, Any]]:
            sql = "SELECT * FROM ledger WHERE ts >= ? AND ts < ?"
            params: list[Any] = [query.since, query.until]
            if query.tenant is not None:
                sql += " AND tenant = ?"
                params.append(query.tenant)
            return [dict(row) for row in db.execute(sql + query.order_sql(), params)]
        return await self._run(select)


    # -- approvals -----------------------------------------------------------------------

    async def add_approval(self, record: ApprovalRecord) -> None:
        sql = _insert("approvals", ApprovalRecord.COLUMNS)
        await self._run(lambda db: db.execute(sql, record.values()))

    async def get_approval(self, approval_id: str) -> ApprovalRecord | None:
        def select(db: sqlite3.Connection) -> ApprovalRecord | None:
            row = db.execute("SELECT * FROM approvals WHERE id = ?", (approval_id,)).fetchone()
            return _approval(row) if row is not None else None
        return await self._run(select)

    async def list_approvals(self, status: str | None, tenant: str | None, limit: int) -> list[ApprovalRecord]:
        def select(db: sqlite3.Connection) -> list[ApprovalRecord]:
            sql, params = "SELECT * FROM approvals WHERE 1 = 1", []
            if status is not None:
                sql += " AND status = ?"
                params.append(status)
            if tenant is not None:
                sql += " AND tenant = ?"
                params.append(tenant)
            rows = db.execute(sql + " ORDER BY created_at DESC LIMIT ?", [*params, limit]).fetchall()
            return [_approval(row) for row in rows]
        return await self._run(select)

    async def decide_approval(self, approval_id: str, status: str, by: str, reason: str | None,
                              now: float) -> ApprovalRecord | None:
        def decide(db: sqlite3.Connection) -> ApprovalRecord | None:
            changed = db.execute(
                "UPDATE approvals SET status = ?, decided_by = ?, reason = ?, decided_at = ? "
                "WHERE id = ? AND status = 'pending' AND expires_at > ?",
                (status, by, reason, now, approval_id, now)).rowcount
            if not changed:
                return None
            return _approval(db.execute("SELECT * FROM approvals WHERE id = ?", (approval_id,)).fetchone())
        return await self._run(decide)

    async def expire_approvals(self, now: float) -> list[ApprovalRecord]:
        def expire(db: sqlite3.Connection) -> list[ApprovalRecord]:
            db.execute("BEGIN IMMEDIATE")
            try:
                rows = db.execute("SELECT * FROM approvals WHERE status = 'pending' AND expires_at <= ?",
                                  (now,)).fetchall()
                for row in rows:
                    status = "approved" if row["on_timeout"] == "approve" else "expired"
                    db.execute("UPDATE approvals SET status = ?, decided_by = 'timeout', decided_at = ? "
                               "WHERE id = ?", (status, now, row["id"]))
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return [_approval(db.execute("SELECT * FROM approvals WHERE id = ?", (row["id"],)).fetchone())
                    for row in rows]
        return await self._run(expire)

    async def use_approval(self, approval_id: str, now: float) -> bool:
        return await self._run(lambda db: db.execute(
            "UPDATE approvals SET used_at = ? WHERE id = ? AND status = 'approved' AND used_at IS NULL",
            (now, approval_id)).rowcount == 1)

    # -- audit and reviews ---------------------------------------------------------------

    async def write_audit(self, events: list[AuditEvent]) -> None:
        if not events:
            return
        sql = _insert("audit", AuditEvent.COLUMNS)
        values = [(e.ts, e.request_id, e.tenant, e.agent, e.kind, e.policy, e.rule, e.stage, e.action,
                   int(e.shadow), orjson.dumps(e.detail).decode()) for e in events]
        await self._run(lambda db: _in_transaction(db, lambda: db.executemany(sql, values)))

    async def audit_events(self, since: float, request_id: str | None, limit: int) -> list[dict[str, Any]]:
        def select(db: sqlite3.Connection) -> list[dict[str, Any]]:
            sql, params = "SELECT * FROM audit WHERE ts >= ?", [since]
            if request_id is not None:
                sql += " AND request_id = ?"
                params.append(request_id)
            rows = db.execute(sql + " ORDER BY ts DESC, id DESC LIMIT ?", [*params, limit]).fetchall()
            return [{**dict(row), "shadow": bool(row["shadow"]), "detail": orjson.loads(row["detail"])}
                    for row in rows]
        return await self._run(select)

    async def add_review(self, review: ReviewRecord) -> None:
        sql = _insert("reviews", ReviewRecord.COLUMNS)
        await self._run(lambda db: db.execute(sql, tuple(getattr(review, c) for c in ReviewRecord.COLUMNS)))

    async def list_reviews(self, since: float, tenant: str | None, limit: int) -> list[dict[str, Any]]:
        def select(db: sqlite3.Connection) -> list[dict[str, Any]]:
            sql, params = "SELECT * FROM reviews WHERE ts >= ?", [since]
            if tenant is not None:
                sql += " AND tenant = ?"
                params.append(tenant)
            return [dict(row) for row in db.execute(sql + " ORDER BY ts DESC LIMIT ?", [*params, limit])]
        return await self._run(select)


def _insert(table: str, columns: tuple[str, ...]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"


def _in_transaction(db: sqlite3.Connection, work: Callable[[], Any]) -> None:
    db.execute("BEGIN")
    try:
        work()
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _approval(row: sqlite3.Row) -> ApprovalRecord:
    return ApprovalRecord(**{column: row[column] for column in ApprovalRecord.COLUMNS})


def _key(row: sqlite3.Row) -> KeyRecord:
    return KeyRecord(key_hash=row["key_hash"], tenant=row["tenant"], name=row["name"],
                     created_at=row["created_at"], revoked_at=row["revoked_at"])


def _use_wal(db: sqlite3.Connection, tries: int = 100) -> None:
    # Switching a new file to WAL needs it alone, and fails at once (no busy wait) while
    # another process opens it too, as `--workers N` starting together do: try again shortly.
    for attempt in range(tries):
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == tries - 1:
                raise
            time.sleep(0.05)


def _migrate(db: sqlite3.Connection) -> None:
    """Apply the migrations this database lacks, in one transaction. The version is read
    under the write lock, so processes opening a new database together take turns and the
    later ones find nothing left to do (they used to run migration 1 again, and fail)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        current = db.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0
        for version, statements in enumerate(SQLITE_MIGRATIONS, start=1):
            if version <= current:
                continue
            for statement in statements:
                db.execute(statement)
            db.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
