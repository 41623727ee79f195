"""Processes opening one new SQLite database at the same moment (`lockgate serve --workers N`
on a fresh ledger) all start: the WAL switch waits its turn, and the schema is migrated once."""

from __future__ import annotations

import asyncio
import multiprocessing
import sqlite3
from pathlib import Path
from typing import Any

from gateway.store.schema import SQLITE_MIGRATIONS
from gateway.store.sqlite import SQLiteStore

PAIRS = 12


def _open(path: str, barrier: Any, failures: Any) -> None:
    barrier.wait()
    try:
        asyncio.run(_open_and_close(Path(path)))
    except Exception as exc:  # reported to the test, which shows it
        failures.put(f"{type(exc).__name__}: {exc}")


async def _open_and_close(path: Path) -> None:
    store = SQLiteStore(path)
    await store.open()
    await store.close()


def test_workers_opening_a_new_database_together_all_start(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    failures = context.Queue()
    for pair in range(PAIRS):
        path = tmp_path / f"ledger-{pair}.db"
        barrier = context.Barrier(2)
        processes = [context.Process(target=_open, args=(str(path), barrier, failures)) for _ in range(2)]
        for process in processes:
            process.start()
        for process in processes:
            process.join(60)
        with sqlite3.connect(path) as db:
            versions = [row[0] for row in db.execute("SELECT version FROM schema_version ORDER BY version")]
        assert versions == list(range(1, len(SQLITE_MIGRATIONS) + 1)), versions
    problems = []
    while not failures.empty():
        problems.append(failures.get())
    assert problems == []
