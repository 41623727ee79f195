"""Micro-benchmarks of the per-request work that end-to-end numbers hide.

    metering   `Meter.capture_json` + `Meter.record` for one finished chat request (usage
               read, priced, metrics counted, a ledger row queued), on Lockgate's own
               runtime built from bench/lockgate.yaml.
    ledger     `SQLiteStore.write_ledger` in batches of the size the gateway's
               `BatchWriter` hands it at the benchmark's load (rows/s and µs per row),
               and the `BatchWriter` itself fed a steady 10,000 rows/s (what it sustains,
               the backlog it builds).
    policy     bench/policy_bench.py: the 20 rules of bench/policies/bench.yaml.

Per request, "metering + ledger" = the metering µs + the ledger's µs per row: the
SQLite thread shares the gateway's core, so its time is the request's time too.
Run in the working directory where the ledger file may go (bench/run.py uses scratch).

    python bench/micro.py [--seconds 1] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import orjson
import policy_bench
from targets import BODIES, LOCKGATE_CONFIG

from gateway.batch import BatchWriter
from gateway.bundle import load_bundle
from gateway.exchange import Exchange, new_request_id
from gateway.metering import Meter
from gateway.runtime import Runtime
from gateway.store import LedgerRow
from gateway.store.sqlite import SQLiteStore
from providers.base import CHAT

ANSWER = {"id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-mini",
          "choices": [{"index": 0, "message": {"role": "assistant", "content": "lorem ipsum"},
                       "finish_reason": "stop"}],
          "usage": {"prompt_tokens": 257, "completion_tokens": 20, "total_tokens": 277}}


async def discard(rows: list[LedgerRow]) -> None:
    """The ledger's cost is measured apart (see `ledger`)."""


def metering_us(seconds: float) -> float:
    bundle, problems = load_bundle(LOCKGATE_CONFIG)
    assert bundle is not None, problems
    runtime = Runtime(bundle)
    target = runtime.snapshot.routes["gpt-4o-mini"].targets[0]
    rows: BatchWriter[LedgerRow] = BatchWriter(discard, "bench-ledger")
    meter = Meter(runtime.metrics, runtime.snapshot.prices, rows)
    tenant = bundle.config.tenants["acme"]
    body = orjson.loads((BODIES / "chat.json").read_bytes())

    def one_request() -> None:
        exchange = Exchange(request_id=new_request_id(), api=CHAT, tenant=tenant, alias="gpt-4o-mini",
                            known_alias="gpt-4o-mini", body=body, reached_upstream=True)
        exchange.outcome.target, exchange.outcome.attempts, exchange.outcome.upstream_s = target, 1, 0.001
        meter.capture_json(exchange, ANSWER)
        exchange.finished = time.perf_counter()
        meter.record(exchange)
        if rows.pending > 10_000:  # no writer task runs here: empty the queue now and then
            asyncio.run(rows.flush())

    return min(policy_bench.five_rounds(seconds, one_request))


def ledger_row(index: int) -> LedgerRow:
    return LedgerRow(ts=time.time(), request_id=f"req_{index:024x}", tenant="acme", agent="support",
                     alias="gpt-4o-mini", provider="upstream", model="gpt-4o-mini", api="chat", stream=False,
                     status=200, input_tokens=257, output_tokens=20, cost_usd=5.1e-05, latency_ms=1.9,
                     upstream_ms=0.9, overhead_ms=1.0, attempts=1, decisions=["bench/answer-review"])


async def write_batches(path: Path, batch: int, rows: int) -> dict[str, float]:
    store = SQLiteStore(path)
    await store.open()
    try:
        started = time.perf_counter()
        for first in range(0, rows, batch):
            await store.write_ledger([ledger_row(i) for i in range(first, min(rows, first + batch))])
        elapsed = time.perf_counter() - started
    finally:
        await store.close()
    return {"batch": batch, "rows_per_s": rows / elapsed, "us_per_row": elapsed / rows * 1e6}


async def steady_writer(path: Path, rows_per_s: int, seconds: float) -> dict[str, float]:
    """Feed a BatchWriter (the gateway's defaults) a steady stream of rows, as requests would."""
    store = SQLiteStore(path)
    await store.open()
    writer: BatchWriter[LedgerRow] = BatchWriter(store.write_ledger, "ledger")
    writer.start()
    tick, sent, most_pending = 0.01, 0, 0
    started = time.perf_counter()
    try:
        while time.perf_counter() - started < seconds:
            due = int((time.perf_counter() - started) * rows_per_s)
            for index in range(sent, due):
                writer.append(ledger_row(index))
            sent = due
            most_pending = max(most_pending, writer.pending)
            await asyncio.sleep(tick)
        await writer.stop()
        elapsed = time.perf_counter() - started
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        stored = db.execute("SELECT COUNT(*) FROM ledger").fetchone()[0]
    return {"offered_rows_per_s": rows_per_s, "rows": sent, "stored": stored, "rows_per_s": stored / elapsed,
            "most_pending": most_pending}


def ledger(seconds: float, directory: Path) -> dict[str, Any]:
    directory.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"batches": []}
    for batch in (1, 200, 2000):  # one by one; what 1,000 req/s fills in the writer's 0.2 s; its cap
        path = directory / f"ledger-{batch}.db"
        path.unlink(missing_ok=True)
        rows = 2000 if batch == 1 else 40_000
        results["batches"].append(asyncio.run(write_batches(path, batch, rows)))
    path = directory / "ledger-steady.db"
    path.unlink(missing_ok=True)
    results["steady"] = asyncio.run(steady_writer(path, 10_000, max(2.0, seconds * 3)))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--json", action="store_true", help="end with one line: RESULT {json}")
    parser.add_argument("--scratch", type=Path, default=Path("micro-scratch"))
    args = parser.parse_args()
    results: dict[str, Any] = {"policy": policy_bench.measure(args.seconds)}
    results["metering_us"] = metering_us(args.seconds)
    print(f"{'metering (capture_json + record)':<48} {results['metering_us']:8.1f} µs")
    results["ledger"] = ledger(args.seconds, args.scratch)
    for batch in results["ledger"]["batches"]:
        print(f"ledger write, batches of {batch['batch']:<5}                  {batch['rows_per_s']:8.0f} rows/s"
              f"  ({batch['us_per_row']:.1f} µs per row)")
    steady = results["ledger"]["steady"]
    print(f"BatchWriter fed 10,000 rows/s                    {steady['rows_per_s']:8.0f} rows/s stored"
          f"  ({steady['stored']}/{steady['rows']} rows, backlog at most {steady['most_pending']})")
    if args.json:
        print("RESULT " + orjson.dumps(results).decode(), flush=True)


if __name__ == "__main__":
    main()
