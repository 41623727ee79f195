"""`--stages`: what each part of Lockgate's request work costs, by switching parts off.

Five systems in front of one fake upstream, each pinned like the default run, measured
in interleaved rounds of closed-loop load (64 connections); the CPU per request of each
(its best round: other load only ever adds to it), and the differences between neighbours:

    passthrough             the floor (bench/passthrough.py)
    lockgate bare           Lockgate's server, app and runtime; the handler only forwards
    lockgate no policy      the pipeline without policy rules and without metering
    + metering              ... with metering (ledger row, metrics, request log)
    lockgate (everything)   ... with the 20 rules of policies/bench.yaml: the default run's Lockgate

    bare - passthrough         Lockgate's HTTP server, middlewares and runtime
    no policy - bare           the pipeline's skeleton: auth, body checks, limits, routing,
                               the provider's call, the answer
    + metering - no policy     metering
    everything - + metering    the policy stage (request rules, the answer's gate)

The variants other than the full one come from bench/variant_serve.py (parts switched
off in the process) and from a config whose tenant has no policies.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml
from measure import Layout, Loader, closed_rounds
from procs import Processes
from report import fmt, median
from targets import BENCH, LOCKGATE_CONFIG, LOCKGATE_PORT, Target, start_lockgate, start_passthrough, start_upstream

ROUND_SECONDS = 4.0
SYSTEMS = (  # name, variant_serve variant, tenant keeps its policies
    ("lockgate bare", "bare", False),
    ("lockgate no policy", "no-metering", False),
    ("+ metering", "full", False),
    ("lockgate (everything)", "full", True),
)
PARTS = (  # what the difference between two neighbours costs
    ("Lockgate's HTTP server, middlewares and runtime", "lockgate bare", "passthrough"),
    ("pipeline skeleton: auth, checks, limits, routing, answer", "lockgate no policy", "lockgate bare"),
    ("metering: ledger row, metrics, request log", "+ metering", "lockgate no policy"),
    ("policy stage: 20 rules, the answer's gate", "lockgate (everything)", "+ metering"),
)


def variant_config(scratch: Path, with_policies: bool) -> Path:
    config = yaml.safe_load(LOCKGATE_CONFIG.read_text())
    config["policies_dir"] = str(BENCH / "policies")
    if not with_policies:
        for tenant in config["tenants"].values():
            tenant["policies"] = []
    path = scratch / ("with-policies.yaml" if with_policies else "no-policies.yaml")
    path.write_text(yaml.safe_dump(config))
    return path


def start_variant(procs: Processes, cpus: str | None, scratch: Path, name: str, variant: str,
                  with_policies: bool, port: int) -> Target:
    workdir = scratch / variant / ("policies" if with_policies else "none")
    workdir.mkdir(parents=True, exist_ok=True)
    return start_lockgate(procs, cpus, workdir, name=name, port=port,
                          config=variant_config(workdir, with_policies),
                          launcher=(str(BENCH / "variant_serve.py"), variant))


def stages(procs: Processes, scratch: Path, args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    loader = Loader(Layout.pinned(), scratch / "logs")
    layout = loader.layout
    start_upstream(procs, layout.load_cpus)
    systems = [start_passthrough(procs, layout.target_cpus)]
    for offset, (name, variant, with_policies) in enumerate(SYSTEMS):
        systems.append(start_variant(procs, layout.target_cpus, scratch, name, variant, with_policies,
                                     LOCKGATE_PORT + offset))
    measured = closed_rounds(loader, systems, args.rounds, ROUND_SECONDS, warmup_s=2, warmup_connections=16)
    rounds = {name: [run["cpu_us_per_request"] for run in runs] for name, runs in measured.items()}
    # The best round: other load on the machine only ever adds CPU per request (it evicts
    # caches), so the lowest figure is the closest to what the code itself costs.
    cpu = {name: min((value for value in values if value is not None), default=None)
           for name, values in rounds.items()}
    lines = ["| system | CPU µs/req (best round) | median | each round |", "|---|---|---|---|"]
    lines += [f"| {name} | {fmt(cpu[name], 0)} | {fmt(median(values), 0)} | "
              f"{', '.join(fmt(value, 0) for value in values)} |" for name, values in rounds.items()]
    parts = {what: _difference(cpu[more], cpu[less]) for what, more, less in PARTS}
    lines += ["", "| part | CPU µs/req |", "|---|---|"]
    lines += [f"| {what} | {fmt(value, 0)} |" for what, value in parts.items()]
    return "\n".join(lines), {"layout": layout.describe(), "cpu_us_per_request": cpu, "parts": parts,
                              "runs": loader.runs}


def _difference(more: float | None, less: float | None) -> float | None:
    return more - less if more is not None and less is not None else None
