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

from gateway.store.base import KeyRecord, LedgerQuery, LedgerRow
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
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=30000")
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
        def revoke(db: sqlite3.Connection) -> KeyRecord | None:
            rows = db.execute("SELECT * FROM api_keys WHERE key_hash LIKE ? AND revoked_at IS NULL",
                              (f"sha256:{key_id}%",)).fetchall()
            if len(rows) != 1:
                return None
            db.execute("UPDATE api_keys SET revoked_at = ? WHERE key_hash = ?", (time.time(), rows[0]["key_hash"]))
            return _key(rows[0])
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
        sql = (f"INSERT INTO ledger ({', '.join(LedgerRow.COLUMNS)}) "
               f"VALUES ({', '.join('?' for _ in LedgerRow.COLUMNS)})")
        values = [row.values() for row in rows]

        def insert(db: sqlite3.Connection) -> None:
            db.execute("BEGIN")
            try:
                db.executemany(sql, values)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        await self._run(insert)

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
            return [dict(row) for row in db.execute(sql + " ORDER BY ts", params)]
        return await self._run(select)


def _key(row: sqlite3.Row) -> KeyRecord:
    return KeyRecord(key_hash=row["key_hash"], tenant=row["tenant"], name=row["name"],
                     created_at=row["created_at"], revoked_at=row["revoked_at"])


def _migrate(db: sqlite3.Connection) -> None:
    db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = db.execute("SELECT MAX(version) FROM schema_version").fetchone()
    current = row[0] or 0
    for version, statements in enumerate(SQLITE_MIGRATIONS, start=1):
        if version <= current:
            continue
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in statements:
                db.execute(statement)
            db.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
