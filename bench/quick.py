"""The default run: direct, passthrough, Lockgate (and LiteLLM) side by side, in under 5 minutes.

Every system is started once, in front of one fake upstream, and measured in rounds
that interleave the systems (direct, passthrough, lockgate, direct, ...), so that the
machine's other load falls on all of them alike:

  1. warm-up         closed loop, 16 connections
  2. max throughput  closed loop, 64 connections; the best round counts (noise only
                     ever lowers throughput)
  3. fixed rate      open loop at 50 % of the passthrough's max throughput (and at 50 %
                     of Lockgate's, when that is lower), every system that can sustain
                     it; latency from the intended send time; overhead = system minus
                     direct in the same round, median of rounds
  4. streaming       8 concurrent streams of 20 chunks 5 ms apart: TTFB, and whether
                     chunks arrive one by one; then streams of a forced tool call
                     (checked by the tool whitelist and the tool_call-stage rules)
  5. micro           bench/micro.py on the measured system's CPU: policy, metering, ledger
"""

from __future__ import annotations

import argparse
import os
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson
from measure import Layout, Loader
from procs import Processes
from report import quick_report
from targets import BENCH, PYTHON, ROOT, Target, start_litellm, start_lockgate, start_passthrough, start_upstream


@dataclass(frozen=True, slots=True)
class QuickPlan:
    rounds: int = 3
    warmup_s: float = 2.0
    max_s: float = 4.0
    rate_s: float = 6.0
    rate_fraction: float = 0.5
    stream_s: float = 4.0
    micro_s: float = 1.0


def start_systems(procs: Processes, loader: Loader, scratch: Path, notes: list[str]) -> list[Target]:
    layout = loader.layout
    systems = [start_upstream(procs, layout.load_cpus), start_passthrough(procs, layout.target_cpus),
               start_lockgate(procs, layout.target_cpus, scratch / "lockgate")]
    litellm = start_litellm(procs, layout.target_cpus, scratch / "litellm")
    if litellm is None:
        notes.append("LiteLLM not measured: no `litellm` executable (set LITELLM_BIN to include it).")
    else:
        systems.append(litellm)
    return systems


def run_quick(procs: Processes, loader: Loader, scratch: Path, plan: QuickPlan, notes: list[str]
              ) -> dict[str, Any]:
    systems = start_systems(procs, loader, scratch, notes)
    for system in systems:
        loader.run("closed", system, "chat.json", seconds=plan.warmup_s, connections=16, label="warmup")
    best: dict[str, float] = {}
    for round_ in range(plan.rounds):
        for system in systems:
            result = loader.run("closed", system, "chat.json", seconds=plan.max_s, connections=64, label="max")
            result["round"] = round_
            best[system.name] = max(best.get(system.name, 0.0), result["rps"])
    rates = fixed_rates(best, plan.rate_fraction)
    for rate in rates:
        for round_ in range(plan.rounds):
            for system in systems:
                if best[system.name] < rate / 0.95:
                    if round_ == 0:
                        notes.append(f"{system.name} not run at {rate:g} req/s: it cannot sustain it "
                                     f"(max {best[system.name]:.0f} req/s)")
                    continue
                result = loader.run("rate", system, "chat.json", seconds=plan.rate_s, rate=rate,
                                    label=f"rate@{rate:g}", max_connections=64)
                result["round"] = round_
    for round_ in range(plan.rounds):
        for system in systems:
            result = loader.run("stream", system, "chat_stream.json", seconds=plan.stream_s, connections=8,
                                label="stream")
            result["round"] = round_
    for system in systems:
        result = loader.run("stream", system, "tool_stream.json", seconds=plan.stream_s, connections=8,
                            label="stream-tool")
        result["round"] = 0
    idle = {system.name: system.proc.usage() for system in systems}
    return {"rates": rates, "max_rps": best, "micro": run_micro(loader, scratch / "micro", plan.micro_s),
            "startup_s": {system.name: system.startup_s for system in systems},
            "peak_rss_mb": {name: usage.peak_rss_mb for name, usage in idle.items()}}


def quick(procs: Processes, scratch: Path, args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    loader = Loader(Layout.pinned(), scratch / "load-logs")
    notes: list[str] = [f"CPU layout: {loader.layout.describe()}"]
    plan = QuickPlan(rounds=args.rounds)
    data = run_quick(procs, loader, scratch, plan, notes)
    text, summary = quick_report(loader.runs, data)
    return text + "\n" + "\n".join(f"- {note}" for note in notes), {
        "plan": asdict(plan), "notes": notes, **data, **summary, "runs": loader.runs}


def fixed_rates(best: dict[str, float], fraction: float) -> list[float]:
    """`fraction` of the floor's max (the targets' load), and of Lockgate's when it is well below."""
    floor = max(10.0, round(fraction * best["passthrough"], -1))
    lockgate = max(10.0, round(fraction * best["lockgate"], -1))
    return [floor, lockgate] if lockgate < floor / 1.15 else [floor]


def run_micro(loader: Loader, scratch: Path, seconds: float) -> dict[str, Any]:
    scratch.mkdir(parents=True, exist_ok=True)
    argv = [PYTHON, str(BENCH / "micro.py"), "--json", "--seconds", f"{seconds:g}", "--scratch", str(scratch)]
    if loader.layout.target_cpus is not None:
        argv = ["taskset", "-c", loader.layout.target_cpus, *argv]
    done = subprocess.run(argv, capture_output=True, timeout=300, cwd=scratch,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    for line in done.stdout.decode().splitlines():
        if line.startswith("RESULT "):
            return orjson.loads(line[len("RESULT "):])
    raise RuntimeError(f"bench/micro.py failed:\n{done.stderr.decode(errors='replace')[-1500:]}")
