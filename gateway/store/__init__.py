"""Durable storage: SQLite by default, PostgreSQL for several replicas."""

from __future__ import annotations

from pathlib import Path

from gateway.store.base import ApprovalRecord, AuditEvent, KeyRecord, LedgerQuery, LedgerRow, ReviewRecord, Store
from gateway.store.sqlite import SQLiteStore

__all__ = ["ApprovalRecord", "AuditEvent", "KeyRecord", "LedgerQuery", "LedgerRow", "ReviewRecord", "SQLiteStore",
           "Store", "open_store"]


def open_store(url: str) -> Store:
    """A store for `storage.url` (not yet opened)."""
    if url.startswith("sqlite:///"):
        return SQLiteStore(Path(url.removeprefix("sqlite:///")))
    if url.startswith(("postgresql://", "postgres://")):
        from gateway.store.postgres import PostgresStore  # asyncpg is an optional dependency

        return PostgresStore(url)
    raise ValueError(f"unsupported storage url {url!r}")
