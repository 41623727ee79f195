"""Usage export: ledger rows also sent, in batches, to a webhook or Elasticsearch/OpenSearch.

A `UsageExporter` hangs off `Runtime.ledger.listeners`: each batch the ledger wrote is
handed to `offer`, which only queues the rows. The exporter's own task, with its own
HTTP session, sends them every `interval_s` or as soon as `batch_size` rows wait. A
receiver that is slow, failing or gone therefore costs requests nothing:

- failed sends are retried with exponential backoff (a whole batch after a transport
  error, a 408, 429 or 5xx; only the failed items of an Elasticsearch bulk answer);
- rows wait in a bounded queue; past the bound the oldest are dropped, logged and
  counted in `lockgate_usage_export_dropped_total{sink, reason="queue_full"}`;
- what a receiver refuses for good (another 4xx, a mapping error) is dropped the same
  way (`reason="rejected"`), and what is still unsent after `SHUTDOWN_S` at shutdown
  too (`reason="shutdown"`), and rows that cannot be encoded (`reason="error"`).

Delivery is at least once: a send whose answer was lost is sent again. Documents carry
the request id (the Elasticsearch `_id`), so receivers can drop duplicates.

Wire formats:
- webhook: `POST url` with `{"rows": [row, ...]}` (`Authorization: Bearer <api_key>` if set);
- elasticsearch: `POST url/_bulk` with NDJSON lines
  `{"index": {"_index": INDEX, "_id": request_id}}` then the row
  (`Authorization: ApiKey <api_key>` if set).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import aiohttp
import orjson
from yarl import URL

from gateway.config.model import UsageExportConfig
from gateway.metrics import Metrics
from gateway.store import LedgerRow

log = logging.getLogger("lockgate.usage_export")

MAX_QUEUED_ROWS = 50_000
REQUEST_TIMEOUT_S = 10.0
BACKOFF_START_S = 0.25
BACKOFF_MAX_S = 30.0
SHUTDOWN_S = 5.0
DROP_LOG_EVERY_S = 10.0
RETRYABLE_STATUSES = frozenset({408, 429})


class ExportError(Exception):
    """A send failed as a whole; `retryable` says whether the same rows may succeed later."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(slots=True)
class Delivery:
    """What a receiver did not take: rows to send again, and rows it refused for good."""

    retry: list[LedgerRow] = field(default_factory=list)
    rejected: list[tuple[LedgerRow, str]] = field(default_factory=list)


class Sink(Protocol):
    async def send(self, session: aiohttp.ClientSession, rows: list[LedgerRow]) -> Delivery: ...


def row_document(row: LedgerRow) -> dict[str, Any]:
    """A ledger row as a JSON document: every column, plus `@timestamp` for search engines."""
    document = {column: getattr(row, column) for column in LedgerRow.COLUMNS}
    document["@timestamp"] = datetime.fromtimestamp(row.ts, UTC).isoformat(timespec="milliseconds")
    return document


async def post(session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]) -> bytes:
    """POST and return the body of a 2xx answer; anything else is an `ExportError`."""
    try:
        async with session.post(url, data=body, headers=headers) as response:
            answer = await response.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ExportError(f"{exc!r}", retryable=True) from exc
    if 200 <= response.status < 300:
        return answer
    retryable = response.status in RETRYABLE_STATUSES or response.status >= 500
    raise ExportError(f"answered {response.status}: {answer[:200]!r}", retryable=retryable)


def _auth_headers(config: UsageExportConfig, scheme: str, content_type: str) -> dict[str, str]:
    headers = {"Content-Type": content_type, **dict(config.headers)}
    if config.api_key:
        headers["Authorization"] = f"{scheme} {config.api_key}"
    return headers


class WebhookSink:
    def __init__(self, config: UsageExportConfig) -> None:
        self.url = config.url
        self.headers = _auth_headers(config, "Bearer", "application/json")

    async def send(self, session: aiohttp.ClientSession, rows: list[LedgerRow]) -> Delivery:
        await post(session, self.url, orjson.dumps({"rows": [row_document(row) for row in rows]}), self.headers)
        return Delivery()


class ElasticsearchSink:
    """The `_bulk` API of Elasticsearch and OpenSearch (they share it)."""

    def __init__(self, config: UsageExportConfig) -> None:
        self.url = config.url.rstrip("/") + "/_bulk"
        self.index = config.index
        self.headers = _auth_headers(config, "ApiKey", "application/x-ndjson")

    def body(self, rows: list[LedgerRow]) -> bytes:
        lines: list[bytes] = []
        for row in rows:
            lines.append(orjson.dumps({"index": {"_index": self.index, "_id": row.request_id}}))
            lines.append(orjson.dumps(row_document(row)))
        return b"\n".join(lines) + b"\n"

    async def send(self, session: aiohttp.ClientSession, rows: list[LedgerRow]) -> Delivery:
        answer = await post(session, self.url, self.body(rows), self.headers)
        try:
            result = orjson.loads(answer)
        except orjson.JSONDecodeError as exc:
            raise ExportError("the bulk answer is not JSON", retryable=True) from exc
        if not isinstance(result, dict) or not result.get("errors"):
            return Delivery()
        items = result.get("items")
        if not isinstance(items, list) or len(items) != len(rows):
            raise ExportError("the bulk answer has errors but not one item per row", retryable=True)
        return self.failed_items(rows, items)

    @staticmethod
    def failed_items(rows: list[LedgerRow], items: list[Any]) -> Delivery:
        """Items answer rows in order; a 429 or 5xx item is retried, any other error refused."""
        delivery = Delivery()
        for row, item in zip(rows, items, strict=True):
            outcome = next(iter(item.values()), {}) if isinstance(item, dict) and item else {}
            status = outcome.get("status", 0) if isinstance(outcome, dict) else 0
            if isinstance(status, int) and 200 <= status < 300:
                continue
            if status in RETRYABLE_STATUSES or (isinstance(status, int) and status >= 500):
                delivery.retry.append(row)
            else:
                error = outcome.get("error") if isinstance(outcome, dict) else None
                delivery.rejected.append((row, f"{status}: {orjson.dumps(error).decode()[:200]}"))
        return delivery


SINKS: dict[str, type[WebhookSink] | type[ElasticsearchSink]] = {
    "webhook": WebhookSink, "elasticsearch": ElasticsearchSink}


class UsageExporter:
    """One configured sink: a bounded queue of rows and the task that delivers them."""

    def __init__(self, config: UsageExportConfig, metrics: Metrics, *, max_queued: int = MAX_QUEUED_ROWS) -> None:
        self.config = config
        self.where = str(URL(config.url).with_user(None))
        """The URL without credentials, for logs."""
        self.sink: Sink = SINKS[config.type](config)
        self._dropped = metrics.usage_export_dropped
        self._max_queued = max_queued
        self._rows: deque[LedgerRow] = deque()
        self._in_flight: list[LedgerRow] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._session: aiohttp.ClientSession | None = None
        self.task: asyncio.Task[None] | None = None
        self._unlogged: dict[str, int] = {}
        self._logged_at: dict[str, float] = {}

    @property
    def label(self) -> str:
        """The `sink` label of the dropped-rows metric."""
        return self.config.type

    @property
    def queued(self) -> int:
        return len(self._rows)

    def offer(self, rows: list[LedgerRow]) -> None:
        """The ledger listener: queue the rows (never waits)."""
        self._rows.extend(rows)
        excess = len(self._rows) - self._max_queued
        if excess > 0:
            for _ in range(excess):
                self._rows.popleft()
            self._drop(excess, "queue_full", f"the queue is full ({self._max_queued} rows): the oldest dropped")
        if len(self._rows) >= self.config.batch_size:
            self._wake.set()

    def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S))
        self.task = asyncio.get_running_loop().create_task(self._run(), name=f"lockgate-usage-export-{self.label}")

    async def stop(self) -> None:
        """Send what is queued (for up to `SHUTDOWN_S`), then count the rest as dropped."""
        self._closing = True
        self._wake.set()
        if self.task is not None:
            try:
                await asyncio.wait_for(self.task, SHUTDOWN_S)
            except TimeoutError:
                pass
            except Exception:
                log.exception("usage export to %s failed", self.where)
        unsent = len(self._rows) + len(self._in_flight)
        if unsent:
            self._drop(unsent, "shutdown", "still unsent at shutdown")
        self._rows.clear()
        self._in_flight = []
        if self._session is not None:
            await self._session.close()

    async def _run(self) -> None:
        while True:
            if not self._closing:
                try:
                    await asyncio.wait_for(self._wake.wait(), self.config.interval_s)
                except TimeoutError:
                    pass
                self._wake.clear()
            while self._rows:
                batch = [self._rows.popleft() for _ in range(min(self.config.batch_size, len(self._rows)))]
                await self._deliver(batch)
            if self._closing:
                return

    async def _deliver(self, rows: list[LedgerRow]) -> None:
        """Send until every row is taken or refused, backing off between tries."""
        assert self._session is not None
        backoff = BACKOFF_START_S
        self._in_flight = rows
        while self._in_flight:
            try:
                delivery = await self.sink.send(self._session, self._in_flight)
            except ExportError as exc:
                if not exc.retryable:
                    self._drop(len(self._in_flight), "rejected", f"refused: {exc}")
                    break
                log.warning("usage export to %s %s; retrying %d rows in %.1fs", self.where, exc,
                            len(self._in_flight), backoff)
            except Exception:  # a bug, not the receiver: trying again would fail again
                log.exception("usage export to %s failed", self.where)
                self._drop(len(self._in_flight), "error", "they could not be sent")
                break
            else:
                if delivery.rejected:
                    row, reason = delivery.rejected[0]
                    self._drop(len(delivery.rejected), "rejected", f"refused, e.g. {row.request_id}: {reason}")
                self._in_flight = delivery.retry
                if not self._in_flight:
                    break
                log.warning("usage export to %s: %d rows failed; retrying them in %.1fs", self.where,
                            len(self._in_flight), backoff)
            await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
            backoff = min(backoff * 2, BACKOFF_MAX_S)
        self._in_flight = []

    def _drop(self, count: int, reason: str, message: str) -> None:
        """Count every drop; log them at most every `DROP_LOG_EVERY_S` per reason (a dead
        receiver overflows the queue at every ledger flush)."""
        self._dropped(self.label, reason).inc(count)
        self._unlogged[reason] = self._unlogged.get(reason, 0) + count
        now = time.monotonic()
        if now - self._logged_at.get(reason, -DROP_LOG_EVERY_S) >= DROP_LOG_EVERY_S:
            self._logged_at[reason] = now
            log.error("usage export to %s: dropped %d rows: %s", self.where, self._unlogged.pop(reason), message)
