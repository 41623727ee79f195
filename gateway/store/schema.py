"""The storage schema, as ordered migrations (each applied once, in a transaction)."""

from __future__ import annotations

SQLITE_MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE api_keys (
            key_hash TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            name TEXT NOT NULL DEFAULT '',
            created_at REAL NOT NULL,
            revoked_at REAL
        )""",
        """CREATE TABLE ledger (
            id INTEGER PRIMARY KEY,
            ts REAL NOT NULL,
            request_id TEXT NOT NULL,
            tenant TEXT NOT NULL,
            agent TEXT,
            alias TEXT,
            provider TEXT,
            model TEXT,
            api TEXT NOT NULL,
            stream INTEGER NOT NULL,
            status INTEGER NOT NULL,
            error_type TEXT,
            input_tokens INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            cached_tokens INTEGER NOT NULL DEFAULT 0,
            cache_write_tokens INTEGER NOT NULL DEFAULT 0,
            reasoning_tokens INTEGER NOT NULL DEFAULT 0,
            cost_usd REAL,
            latency_ms REAL NOT NULL,
            ttft_ms REAL,
            upstream_ms REAL NOT NULL DEFAULT 0,
            overhead_ms REAL NOT NULL DEFAULT 0,
            attempts INTEGER NOT NULL DEFAULT 0,
            decisions TEXT NOT NULL DEFAULT '',
            estimated INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX ledger_tenant_ts ON ledger (tenant, ts)",
        "CREATE INDEX ledger_ts ON ledger (ts)",
    ],
]
