"""The batched writer behind the ledger and the audit log, on a real SQLite store."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from gateway.batch import BatchWriter
from gateway.store import LedgerQuery, LedgerRow, SQLiteStore


def row(request_id: str, agent: object = None) -> LedgerRow:
    return LedgerRow(ts=time.time(), request_id=request_id, tenant="acme", agent=agent,  # type: ignore[arg-type]
                     alias="a", provider="p", model="m", api="chat", stream=False, status=200)


async def test_rows_are_written_in_batches_and_flushed_on_stop(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "l.db")
    await store.open()
    writer: BatchWriter[LedgerRow] = BatchWriter(store.write_ledger, "ledger", interval_s=60)
    writer.start()
    for index in range(5000):
        writer.append(row(f"r{index}"))
    await writer.stop()  # nothing was written by the timer yet: stop must flush everything
    rows = await store.ledger_rows(LedgerQuery(tenant="acme", since=0, until=time.time() + 1))
    assert len(rows) == 5000
    await store.close()


async def test_a_row_the_store_refuses_does_not_block_the_others(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "l.db")
    await store.open()
    writer: BatchWriter[LedgerRow] = BatchWriter(store.write_ledger, "ledger", interval_s=0.01)
    writer.start()
    writer.append(row("good-1"))
    writer.append(row("poison", agent={"not": "bindable"}))
    writer.append(row("good-2"))
    deadline = time.monotonic() + 15
    while writer.pending and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    await writer.stop()
    rows = await store.ledger_rows(LedgerQuery(tenant="acme", since=0, until=time.time() + 1))
    assert sorted(r["request_id"] for r in rows) == ["good-1", "good-2"]
    assert writer.dropped == 1
    await store.close()


async def test_rows_stored_one_by_one_still_reach_the_listeners(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "l.db")
    await store.open()
    writer: BatchWriter[LedgerRow] = BatchWriter(store.write_ledger, "ledger", interval_s=0.01)
    offered: list[str] = []
    writer.listeners.append(lambda rows: offered.extend(r.request_id for r in rows))  # e.g. usage export
    writer.start()
    for request_id in ("good-1", "good-2"):
        writer.append(row(request_id))
    writer.append(row("poison", agent={"not": "bindable"}))
    deadline = time.monotonic() + 15
    while writer.pending and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    await writer.stop()
    assert sorted(offered) == ["good-1", "good-2"]
    await store.close()


async def test_rows_survive_a_store_outage(tmp_path: Path) -> None:
    """A database restart: every write fails for a while, then works. Nothing is dropped."""
    store = SQLiteStore(tmp_path / "l.db")
    await store.open()
    down = {"until": time.monotonic() + 5}

    async def write(rows: list[LedgerRow]) -> None:
        if time.monotonic() < down["until"]:
            raise ConnectionRefusedError(111, "Connection refused")
        await store.write_ledger(rows)

    writer: BatchWriter[LedgerRow] = BatchWriter(write, "ledger", interval_s=0.01)
    writer.start()
    for index in range(5):
        writer.append(row(f"r{index}"))
    await asyncio.sleep(5.5)  # past the writer's third failure, when it goes row by row
    deadline = time.monotonic() + 10
    while writer.pending and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    await writer.stop()
    rows = await store.ledger_rows(LedgerQuery(tenant="acme", since=0, until=time.time() + 1))
    assert sorted(r["request_id"] for r in rows) == [f"r{index}" for index in range(5)]
    assert writer.dropped == 0
    await store.close()
