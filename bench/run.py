"""Lockgate's benchmark, one command: `python bench/run.py` (under 5 minutes).

    python bench/run.py                    direct vs passthrough vs Lockgate (vs LiteLLM), see quick.py
    python bench/run.py --workers 2        Lockgate with 1 and with 2 workers: throughput, CPU/request
    python bench/run.py --streams-memory   RSS with 1,000 streams open at once
    python bench/run.py --soak             RSS across 200,000 requests at a steady rate
    python bench/run.py --failover         30 % of the primary's answers fail, a backup is healthy
    python bench/run.py --profile          Lockgate under py-spy at a steady rate: hot spots
    python bench/run.py --stages           CPU per request with parts switched off: what each costs

Several flags run one after the other. Each run prints its table(s) and targets and
writes bench/results/<mode>-<date>.json (machine, settings, raw runs, summary). All
traffic stays on 127.0.0.1; every process started is stopped at the end, on errors
and on Ctrl-C. See bench/README.md for the method and the latest results.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from failover import failover
from memory import soak, streams_memory
from procs import Interrupted, Processes
from profiling import profile
from quick import quick
from scaling import workers
from stages import stages
from targets import BENCH, ROOT

RESULTS = BENCH / "results"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    memory_kb = int(Path("/proc/meminfo").read_text().split()[1])
    import aiohttp
    import uvloop

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return {"cpu": cpu, "cpus": os.cpu_count(), "memory_gb": round(memory_kb / 2**20, 1),
            "kernel": platform.release(), "python": platform.python_version(), "aiohttp": aiohttp.__version__,
            "uvloop": uvloop.__version__, "commit": commit.stdout.strip() or None,
            "load_average_at_start": os.getloadavg()}


def write_results(mode: str, document: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{mode}-{time.strftime('%Y-%m-%d-%H%M%S')}.json"
    path.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
    return path


Mode = Callable[[Processes, Path, argparse.Namespace], tuple[str, dict[str, Any]]]
MODES: dict[str, Mode] = {"quick": quick, "workers": workers, "streams-memory": streams_memory, "soak": soak,
                          "failover": failover, "profile": profile,
                          "stages": stages}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--quick", action="store_true", help="the default comparison (when other modes are given)")
    parser.add_argument("--workers", type=int, metavar="N", help="compare Lockgate with 1 and with N workers")
    parser.add_argument("--streams-memory", action="store_true", help="RSS with 1,000 open streams")
    parser.add_argument("--soak", action="store_true", help="RSS across 200,000 requests")
    parser.add_argument("--soak-rate", type=float, default=500.0, help="req/s of the soak (200,000 requests)")
    parser.add_argument("--failover", action="store_true", help="flaky primary, healthy backup, 60 s")
    parser.add_argument("--failover-rate", type=float, default=200.0)
    parser.add_argument("--failover-seconds", type=float, default=60.0)
    parser.add_argument("--profile", action="store_true", help="Lockgate under py-spy: flame graph, hot spots")
    parser.add_argument("--profile-rate", type=float, default=600.0)
    parser.add_argument("--stages", action="store_true", help="CPU per request with parts switched off")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of each measurement")
    parser.add_argument("--keep-scratch", action="store_true", help="keep logs and ledgers (printed path)")
    args = parser.parse_args(argv)
    args.results = RESULTS
    return args


def chosen_modes(args: argparse.Namespace) -> list[str]:
    chosen = [mode for mode, wanted in (("quick", args.quick), ("workers", args.workers),
                                        ("streams-memory", args.streams_memory), ("soak", args.soak),
                                        ("failover", args.failover), ("profile", args.profile),
                                        ("stages", args.stages)) if wanted]
    return chosen or ["quick"]


def run_mode(mode: str, scratch: Path, args: argparse.Namespace) -> None:
    log(f"{mode}: starting (logs in {scratch / mode / 'logs'})")
    started = time.monotonic()
    info = machine()
    with Processes(scratch / mode / "logs") as procs:
        text, data = MODES[mode](procs, scratch / mode, args)
    info["load_average_at_end"] = os.getloadavg()
    elapsed = time.monotonic() - started
    path = write_results(mode, {"mode": mode, "machine": info, "elapsed_s": elapsed, **data})
    print(f"\n## {mode} ({elapsed:.0f} s; load average {info['load_average_at_start'][0]:.1f} at start, "
          f"{info['load_average_at_end'][0]:.1f} at end)\n\n{text}\n\nraw data: {path.relative_to(ROOT)}",
          flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="lockgate-bench-"))
    status = 0
    try:
        for mode in chosen_modes(args):
            try:
                run_mode(mode, scratch, args)
            except RuntimeError as exc:
                log(f"{mode}: failed: {exc}")
                status = 1
    except Interrupted as exc:
        log(f"interrupted ({exc}); every process started was stopped")
        status = 130
    finally:
        if not args.keep_scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
