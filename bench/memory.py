"""Memory: many streams open at once, and a long soak at a steady rate.

    streams-memory  1,000 streaming requests opened over 3 s and held open while the
                    upstream sends 15 chunks one second apart; the system's RSS is
                    sampled every 0.5 s. Target: Lockgate under 150 MB with all 1,000
                    open. The passthrough is measured the same way, for reference.
    soak            200,000 requests at a steady rate (default 500 req/s: 400 s)
                    through Lockgate; RSS sampled every 0.5 s. Target: flat, under 5 %
                    growth from the end of the first tenth of the run to the last tenth.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

from measure import Layout, Loader
from procs import Processes
from report import Check, checks_table, fmt
from targets import Target, start_lockgate, start_passthrough, start_upstream

STREAMS = 1000
STREAM_CHUNKS, STREAM_CHUNK_INTERVAL_MS = 15, 1000.0
SOAK_REQUESTS = 200_000


def held_streams(loader: Loader, system: Target) -> dict[str, Any]:
    loader.run("closed", system, "chat.json", seconds=2, connections=16, label="warmup")
    idle = system.proc.usage().rss_mb
    seconds = 3 + STREAM_CHUNKS * STREAM_CHUNK_INTERVAL_MS / 1000 + 15
    result = loader.run("hold", system, "chat_stream.json", seconds=seconds, connections=STREAMS,
                        ramp_seconds=3, label="hold", rss_samples=True)
    return {"idle_rss_mb": idle, "peak_rss_mb": result["rss_max_mb"], "vm_hwm_mb": result["peak_rss_mb"],
            "peak_open": result["peak_open"], "ok": result["ok"], "errors": result["errors"],
            "all_open_after_s": result["all_open_after_s"]}


def streams_memory(procs: Processes, scratch: Path, args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    loader = Loader(Layout.pinned(), scratch / "logs")
    start_upstream(procs, loader.layout.load_cpus, chunk_interval_ms=STREAM_CHUNK_INTERVAL_MS,
                   options=("--chunks", str(STREAM_CHUNKS)))
    systems = {"passthrough": start_passthrough(procs, loader.layout.target_cpus),
               "lockgate": start_lockgate(procs, loader.layout.target_cpus, scratch / "lockgate")}
    results = {name: held_streams(loader, system) for name, system in systems.items()}
    lines = ["| system | RSS idle MB | RSS peak MB (sampled) | VmHWM MB | streams open at once | completed | errors |",
             "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {fmt(r['idle_rss_mb'], 0)} | {fmt(r['peak_rss_mb'], 0)} | "
                     f"{fmt(r['vm_hwm_mb'], 0)} | {r['peak_open']} | {r['ok']} | {r['errors']} |")
    lockgate = results["lockgate"]
    checks = [Check(f"Lockgate RSS with {STREAMS:,} open streams", lockgate["vm_hwm_mb"], 150, "MB"),
              Check("streams open at once", lockgate["peak_open"], STREAMS, "", at_most=False, close_band=0)]
    return "\n".join([*lines, "", *checks_table(checks)]), {
        "streams": STREAMS, "chunks": STREAM_CHUNKS, "chunk_interval_ms": STREAM_CHUNK_INTERVAL_MS,
        "systems": results, "checks": [check.as_json() for check in checks], "runs": loader.runs}


def window_rss(samples: list[list[float]], start: float, end: float) -> float | None:
    """Median RSS of the samples between two fractions of the run."""
    if not samples:
        return None
    last = samples[-1][0]
    chosen = [rss for t, rss in samples if start * last <= t <= end * last]
    return statistics.median(chosen) if chosen else None


def soak(procs: Processes, scratch: Path, args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    loader = Loader(Layout.pinned(), scratch / "logs")
    start_upstream(procs, loader.layout.load_cpus)
    lockgate = start_lockgate(procs, loader.layout.target_cpus, scratch / "lockgate")
    loader.run("closed", lockgate, "chat.json", seconds=2, connections=16, label="warmup")
    seconds = SOAK_REQUESTS / args.soak_rate
    result = loader.run("rate", lockgate, "chat.json", seconds=seconds, rate=args.soak_rate,
                        requests=SOAK_REQUESTS, warmup_seconds=2, label="soak", rss_samples=True)
    samples = result["rss_samples"]
    early, late = window_rss(samples, 0.1, 0.2), window_rss(samples, 0.9, 1.0)
    growth = (late - early) / early * 100 if early and late else None
    latency = result["latency_ms"]
    lines = [f"{result['requests']:,} requests at {args.soak_rate:g} req/s ({result['errors']} errors); "
             f"latency p50 / p99 / p99.9 {fmt(latency['p50'])} / {fmt(latency['p99'])} / {fmt(latency['p999'])} ms; "
             f"CPU {fmt(result['cpu_us_per_request'], 0)} µs/request",
             f"RSS: {fmt(early, 1)} MB at 10-20 % of the run, {fmt(late, 1)} MB at 90-100 %, "
             f"peak (VmHWM) {fmt(result['peak_rss_mb'], 1)} MB", ""]
    checks = [Check(f"RSS growth across {SOAK_REQUESTS:,} requests", growth, 5, "%"),
              Check("soak errors", float(result["errors"]), 0, "", close_band=0)]
    return "\n".join([*lines, *checks_table(checks)]), {
        "rate": args.soak_rate, "rss_early_mb": early, "rss_late_mb": late, "growth_pct": growth,
        "checks": [check.as_json() for check in checks], "runs": loader.runs}
