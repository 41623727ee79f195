"""Buffered, batched writes to the store: the request ledger and the audit log.

`append` is O(1) and never waits; a background task hands batches to the store (whose
own thread does the disk work). If the store fails, rows stay buffered and are tried
again; `stop()` flushes everything, so a graceful shutdown loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

log = logging.getLogger("lockgate.batch")
Row = TypeVar("Row")


def store_unavailable(exc: Exception) -> bool:
    """Whether `exc` says the store cannot be reached (down, restarting, locked), as opposed to
    refusing one row: network and timeout errors, SQLite's OperationalError, and the driver
    errors named for connections (asyncpg's ConnectionDoesNotExistError, CannotConnectNowError, ...)."""
    if isinstance(exc, OSError | TimeoutError | sqlite3.OperationalError):
        return True
    name = type(exc).__name__
    return "Connection" in name or "CannotConnect" in name


class BatchWriter(Generic[Row]):
    def __init__(self, write: Callable[[list[Row]], Awaitable[None]], name: str, *, interval_s: float = 0.2,
                 batch_size: int = 2000, max_buffered: int = 1_000_000) -> None:
        self.name = name
        self._write = write
        self._interval = interval_s
        self._batch_size = batch_size
        self._max_buffered = max_buffered
        self._rows: list[Row] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._lock = asyncio.Lock()
        self.listeners: list[Callable[[list[Row]], None]] = []
        self.dropped = 0

    def append(self, row: Row) -> None:
        self._rows.append(row)
        if len(self._rows) >= self._batch_size:
            self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._rows)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"lockgate-{self.name}")

    async def stop(self) -> None:
        """Stop the timer and write everything left. A write in progress is never cancelled:
        cancelling it could lose its rows (or write them twice)."""
        if self._task is not None:
            self._stopping = True
            self._wake.set()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.flush()

    async def flush(self) -> None:
        async with self._lock:
            while self._rows:
                batch, self._rows = self._rows[:self._batch_size], self._rows[self._batch_size:]
                try:
                    await self._write(batch)
                except Exception:
                    self._rows[:0] = batch
                    raise
                self._stored(batch)

    async def _isolate(self) -> None:
        """The store keeps refusing a batch: write row by row, so one bad row blocks nothing else.

        A row is dropped only when the store refuses that row: an error that says the store
        itself is unreachable, or a pass in which it took no row at all, keeps every row
        buffered for the next try (a database restart must not cost the usage it missed).
        """
        async with self._lock:
            batch, self._rows = self._rows[:self._batch_size], self._rows[self._batch_size:]
            written: list[Row] = []
            refused: list[tuple[Row, Exception]] = []
            for index, row in enumerate(batch):
                try:
                    await self._write([row])
                except Exception as exc:
                    if store_unavailable(exc):
                        self._rows[:0] = [row for row, _ in refused] + batch[index:]
                        self._stored(written)
                        log.warning("%s: the store is unavailable (%s); %d rows kept", self.name, exc,
                                    len(self._rows))
                        return
                    refused.append((row, exc))
                else:
                    written.append(row)
            if not written:
                self._rows[:0] = batch  # it took nothing: the store, not these rows
                return
            for row, exc in refused:
                self.dropped += 1
                log.error("%s: dropped a row the store refuses (%s): %r", self.name, exc, row)
            self._stored(written)

    def _stored(self, rows: list[Row]) -> None:
        """Tell the listeners (usage export) which rows the store now holds, however written."""
        for listener in self.listeners if rows else ():
            listener(rows)

    async def _run(self) -> None:
        failures = 0
        while not self._stopping:
            try:
                await asyncio.wait_for(self._wake.wait(), self._interval)
            except TimeoutError:
                pass
            self._wake.clear()
            if self._stopping:
                return
            try:
                await self.flush()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                log.exception("%s write failed; %d rows kept for the next try", self.name, len(self._rows))
                self._shed()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), 1.0)
                if failures >= 3:
                    await self._isolate()

    def _shed(self) -> None:
        """Bound memory if the store stays down: drop the oldest rows, loudly."""
        excess = len(self._rows) - self._max_buffered
        if excess > 0:
            del self._rows[:excess]
            self.dropped += excess
            log.error("%s buffer full: dropped %d rows", self.name, excess)
