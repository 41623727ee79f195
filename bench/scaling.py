"""`--workers N`: Lockgate with one worker and with N, side by side.

Nothing is pinned here (N workers need N cores, and this machine may have only two):
the load generator, the upstream and the gateway share every CPU. Both gateways run
at once on two ports and are measured in interleaved rounds of closed-loop load at 64
connections. Targets: N workers serve more than one, and spend no more than 10 %
more CPU per request (all processes of the tree, the supervisor included).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from measure import Layout, Loader, closed_rounds
from procs import Processes
from report import Check, checks_table, fmt, median, ratio
from targets import LOCKGATE_PORT, start_lockgate, start_upstream

ROUND_SECONDS = 5.0


def workers(procs: Processes, scratch: Path, args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    loader = Loader(Layout.unpinned(), scratch / "logs")
    start_upstream(procs, None)
    one = start_lockgate(procs, None, scratch / "one", name="lockgate-1-worker")
    many = start_lockgate(procs, None, scratch / "many", workers=args.workers, port=LOCKGATE_PORT + 1,
                          name=f"lockgate-{args.workers}-workers")
    systems = (one, many)
    measured = closed_rounds(loader, systems, args.rounds, ROUND_SECONDS, warmup_s=3, warmup_connections=32)
    results = {}
    for system in systems:
        runs = measured[system.name]
        results[system.name] = {"max_rps": max(run["rps"] for run in runs),
                                "median_rps": median(run["rps"] for run in runs),
                                "cpu_us_per_request": median(run["cpu_us_per_request"] for run in runs),
                                "cpu_pct": median(run["cpu_pct"] for run in runs),
                                "peak_rss_mb": system.proc.usage().peak_rss_mb}
    lines = ["| system | max req/s (best round) | median req/s | CPU µs/req | CPU % (of one core) | peak RSS MB |",
             "|---|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {fmt(r['max_rps'], 0)} | {fmt(r['median_rps'], 0)} | "
                     f"{fmt(r['cpu_us_per_request'], 0)} | {fmt(r['cpu_pct'], 0)} | {fmt(r['peak_rss_mb'], 0)} |")
    a, b = results[one.name], results[many.name]
    checks = [Check(f"{args.workers} workers' throughput, x one worker's", ratio(b["median_rps"], a["median_rps"]),
                    1.0, "x", at_most=False),
              Check(f"{args.workers} workers' CPU per request, x one worker's",
                    ratio(b["cpu_us_per_request"], a["cpu_us_per_request"]), 1.1, "x")]
    return "\n".join([*lines, "", *checks_table(checks)]), {
        "workers": args.workers, "layout": loader.layout.describe(), "systems": results,
        "checks": [check.as_json() for check in checks], "runs": loader.runs}
