"""`--failover`: a primary that fails 30 % of requests, a healthy backup, steady load.

The primary (fake upstream, port 19000) answers 30 % of requests with a failure
drawn from 500, 429 and a connection reset (TCP RST before any answer); the backup
(port 19001) always answers. Both think for 20 ms. Lockgate's `bench-failover` model
(bench/lockgate.yaml) tries the primary twice with backoff, then the backup.

First the backup alone is measured at the same rate, directly and through Lockgate
(`bench-backup`, the same pipeline with the backup as its only target), then the
failover route for 60 s. Targets: every request succeeds, and the failover route's p99
stays within the backoff budget (the longest total backoff the retry settings allow,
jitter included) plus the backup's own p99 as Lockgate serves it: what failover may
add is the backoff, while the gateway's own cost per request is `bench/run.py`'s
subject (issue #8). The budget against the backup measured directly is reported too.
The ledger tells how requests were served (attempts, provider).
"""

from __future__ import annotations

import argparse
import sqlite3
from pathlib import Path
from typing import Any

import orjson
import yaml
from load import percentile
from measure import Layout, Loader
from procs import Processes
from report import Check, checks_table, fmt
from targets import BACKUP_PORT, BODIES, LOCKGATE_CONFIG, start_lockgate, start_upstream

THINK_MS = 20.0
FAIL_RATE = 0.3
JITTER = 1.2  # the router's backoff jitter is uniform in [0.8, 1.2]


def backoff_budget_ms() -> float:
    """The most a request can wait in backoffs on the failover route, from bench/lockgate.yaml."""
    route = yaml.safe_load(LOCKGATE_CONFIG.read_text())["models"]["bench-failover"]
    retry = route["retry"]
    per_target = sum(min(retry["backoff_ms"] * 2**attempt, retry.get("max_backoff_ms", 2000))
                     for attempt in range(retry["attempts"] - 1))
    # Backoffs happen on each target but the last (the backup is healthy: it answers first time).
    return per_target * JITTER * (len(route["targets"]) - 1)


def served_by(ledger: Path) -> dict[str, dict[str, float]]:
    """How requests were served (provider, attempts), with the gateway's own latency of each path."""
    with sqlite3.connect(ledger) as db:
        rows = db.execute("SELECT provider, attempts, latency_ms FROM ledger WHERE alias = 'bench-failover'"
                          ).fetchall()
    paths: dict[str, list[float]] = {}
    for provider, attempts, latency in rows:
        paths.setdefault(f"{provider} after {attempts} attempt(s)", []).append(latency)
    return {path: {"requests": len(latencies), "p50_ms": percentile(latencies, 50),
                   "p99_ms": percentile(latencies, 99), "max_ms": max(latencies)}
            for path, latencies in sorted(paths.items())}


def failover(procs: Processes, scratch: Path, args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    loader = Loader(Layout.pinned(), scratch / "logs")
    cpus = loader.layout.load_cpus
    think = ("--latency-ms", f"{THINK_MS:g}")
    start_upstream(procs, cpus, name="primary",
                   options=(*think, "--fail-rate", f"{FAIL_RATE:g}", "--fail-codes", "500,429,reset"))
    backup = start_upstream(procs, cpus, port=BACKUP_PORT, name="backup", options=think)
    lockgate = start_lockgate(procs, loader.layout.target_cpus, scratch / "lockgate")
    body, backup_body = (_body_for(scratch, alias) for alias in ("bench-failover", "bench-backup"))
    direct = loader.run("rate", backup, "chat.json", seconds=10, rate=args.failover_rate, label="backup direct")
    loader.run("closed", lockgate, body, seconds=2, connections=8, label="warmup")
    alone = loader.run("rate", lockgate, backup_body, seconds=10, rate=args.failover_rate,
                       warmup_seconds=1, label="backup through Lockgate", max_connections=256)
    result = loader.run("rate", lockgate, body, seconds=args.failover_seconds, rate=args.failover_rate,
                        warmup_seconds=1, label="failover", max_connections=256)
    procs.stop(lockgate.proc)  # a graceful stop flushes the ledger
    ledger = served_by(scratch / "lockgate" / "lockgate-bench.db")
    budget = backoff_budget_ms() + alone["latency_ms"]["p99"]
    strict_budget = backoff_budget_ms() + direct["latency_ms"]["p99"]
    latency = result["latency_ms"]
    measured = result["ok"] + result["errors"]
    lines = [f"primary fails {FAIL_RATE:.0%} (500 / 429 / reset), both upstreams think {THINK_MS:g} ms; "
             f"{args.failover_rate:g} req/s for {args.failover_seconds:g} s",
             f"backup alone, p50 / p99: direct {fmt(direct['latency_ms']['p50'])} / "
             f"{fmt(direct['latency_ms']['p99'])} ms, through Lockgate {fmt(alone['latency_ms']['p50'])} / "
             f"{fmt(alone['latency_ms']['p99'])} ms",
             f"failover route through Lockgate: p50 / p99 / p99.9 {fmt(latency['p50'])} / {fmt(latency['p99'])} / "
             f"{fmt(latency['p999'])} ms; statuses {result['statuses']}",
             "served (from the ledger; latency inside the gateway p50 / p99 / max): " + "; ".join(
                 f"{path}: {row['requests']} ({fmt(row['p50_ms'])} / {fmt(row['p99_ms'])} / {fmt(row['max_ms'])} ms)"
                 for path, row in ledger.items()),
             f"budget = backoff budget {fmt(backoff_budget_ms(), 0)} ms + backup p99 through Lockgate "
             f"{fmt(alone['latency_ms']['p99'])} ms = {fmt(budget)} ms (with the backup's direct p99: "
             f"{fmt(strict_budget)} ms)", ""]
    checks = [Check("requests that succeeded", 100 * result["ok"] / measured if measured else None, 100, "%",
                    at_most=False, close_band=0),
              Check("p99 latency, within the budget", latency["p99"], budget, "ms")]
    return "\n".join([*lines, *checks_table(checks)]), {
        "fail_rate": FAIL_RATE, "think_ms": THINK_MS, "rate": args.failover_rate, "seconds": args.failover_seconds,
        "backoff_budget_ms": backoff_budget_ms(), "budget_ms": budget, "direct_budget_ms": strict_budget,
        "served": ledger,
        "checks": [check.as_json() for check in checks], "runs": loader.runs}


def _body_for(scratch: Path, alias: str) -> Path:
    body = scratch / f"{alias}.json"
    body.write_bytes(orjson.dumps(orjson.loads((BODIES / "chat.json").read_bytes()) | {"model": alias}))
    return body
