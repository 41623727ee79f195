"""`--profile`: where Lockgate's CPU goes, sampled with py-spy at a steady request rate.

Lockgate runs as in the default benchmark (pinned, 20 rules, metering, ledger); after
a warm-up the load generator holds a steady rate (`--profile-rate`, default 600 req/s)
while py-spy samples the gateway's Python stacks 200 times a second (non-blocking:
the gateway is never paused), keeping only samples of the thread that holds the GIL:
a thread waiting on a queue or the event loop waiting in epoll is idle, but py-spy
cannot always tell, and such waits would otherwise top the list. Time in C code that
keeps the GIL (orjson, the CEL runtime, aiohttp's parsers) counts for the Python
function that called it; SQLite's own work on the store thread is left out.
Written to bench/results/:

    profile-<date>.svg         the flame graph (open it in a browser)
    profile-<date>.txt         the collapsed stacks (speedscope.app and flamegraph.pl read them)

and the hot spots are printed as shares of the samples (see `hot_spots`). py-spy is found
next to this Python or on PATH (`pip install py-spy`).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from measure import Layout, Loader
from procs import Processes
from targets import ROOT, start_lockgate, start_upstream

SAMPLES_PER_S = 200
WARMUP_S, RECORD_S = 5.0, 20.0
TOP = 20
LINE_NUMBER = re.compile(r":\d+\)$")


def py_spy() -> str:
    for candidate in (Path(sys.executable).parent / "py-spy", shutil.which("py-spy")):
        if candidate and Path(candidate).exists():
            return str(candidate)
    raise RuntimeError("py-spy is not installed: pip install py-spy")


def is_ours(frame: str) -> bool:
    return "(gateway/" in frame or "(providers/" in frame


def hot_spots(collapsed: str) -> dict[str, Any]:
    """Shares of the samples per function (file and name; line numbers dropped), three ways:

    self       the function itself was running
    ours       the deepest Lockgate function on the stack: its own time plus the library
               code it called (aiohttp, logging, json), not its Lockgate callees
    inclusive  a Lockgate function anywhere on the stack
    """
    own: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [LINE_NUMBER.sub(")", frame) for frame in stack.split(";")]
        total += count
        own[frames[-1]] += count
        ours[next((frame for frame in reversed(frames) if is_ours(frame)), "(no Lockgate frame)")] += count
        for frame in {frame for frame in frames if is_ours(frame)}:
            inclusive[frame] += count

    def top(counter: Counter[str]) -> list[dict[str, Any]]:
        return [{"function": name, "share_pct": 100 * count / total} for name, count in counter.most_common(TOP)]

    return {"samples": total, "self": top(own), "ours": top(ours), "inclusive": top(inclusive)}


def record(pid: int, output: Path, kind: str, cpus: str | None) -> subprocess.Popen[bytes]:
    argv = [py_spy(), "record", "--pid", str(pid), "--rate", str(SAMPLES_PER_S), "--duration", f"{RECORD_S:g}",
            "--nonblocking", "--gil", "--format", kind, "--output", str(output)]
    if cpus is not None:
        argv = ["taskset", "-c", cpus, *argv]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def profile(procs: Processes, scratch: Path, args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    loader = Loader(Layout.pinned(), scratch / "logs")
    start_upstream(procs, loader.layout.load_cpus)
    lockgate = start_lockgate(procs, loader.layout.target_cpus, scratch / "lockgate")
    loader.run("closed", lockgate, "chat.json", seconds=2, connections=16, label="warmup")
    load = threading.Thread(target=loader.run, args=("rate", lockgate, "chat.json"), daemon=True,
                            kwargs={"seconds": WARMUP_S + RECORD_S + 3, "rate": args.profile_rate, "label": "profile"})
    load.start()
    time.sleep(WARMUP_S)
    stem = args.results / f"profile-{time.strftime('%Y-%m-%d-%H%M%S')}"
    spies = [record(lockgate.proc.pid, stem.with_suffix(".txt"), "raw", loader.layout.load_cpus),
             record(lockgate.proc.pid, stem.with_suffix(".svg"), "flamegraph", loader.layout.load_cpus)]
    try:
        for spy in spies:
            out, _ = spy.communicate(timeout=RECORD_S + 60)
            if spy.returncode != 0:
                raise RuntimeError(f"py-spy failed: {out.decode(errors='replace')[-800:]}")
    finally:
        for spy in spies:
            if spy.poll() is None:
                spy.kill()
                spy.wait()
    load.join(RECORD_S + 120)
    spots = hot_spots(stem.with_suffix(".txt").read_text())
    run = loader.runs[-1]
    svg, stacks = (stem.with_suffix(suffix).relative_to(ROOT) for suffix in (".svg", ".txt"))
    lines = [f"{spots['samples']:,} samples of Lockgate at {args.profile_rate:g} req/s "
             f"({run['cpu_us_per_request']:.0f} µs CPU per request, {run['cpu_pct']:.0f} % of its core); "
             f"flame graph {svg}, stacks {stacks}",
             "", "| self % | running | ours % | deepest Lockgate function | inclusive % | Lockgate function on "
             "the stack |", "|---|---|---|---|---|---|"]
    for row in zip(spots["self"], spots["ours"], spots["inclusive"], strict=False):
        lines.append("| " + " | ".join(f"{cell['share_pct']:.1f} | `{cell['function']}`" for cell in row) + " |")
    return "\n".join(lines), {"rate": args.profile_rate, "hot_spots": spots, "flamegraph": str(stem) + ".svg",
                              "stacks": str(stem) + ".txt", "runs": loader.runs}
