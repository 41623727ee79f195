"""One load run against one target, with the target's CPU and memory measured around it.

The load generator (bench/load.py) runs as its own process on the load CPUs; the
target's process tree is read from /proc before, during (every half second, for the
highest RSS) and after the run. CPU per request is the tree's user+system CPU time
over the run divided by the requests it answered.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from targets import BENCH, PYTHON, Target

SAMPLE_EVERY_S = 0.5


@dataclass(slots=True)
class Layout:
    """Which CPUs run what. On two or more CPUs: the load generator and the upstream share
    CPU 0, the system measured has CPU 1 to itself, so it never competes with its load."""

    load_cpus: str | None
    target_cpus: str | None

    @classmethod
    def pinned(cls) -> Layout:
        import os

        return cls("0", "1") if len(os.sched_getaffinity(0)) >= 2 else cls(None, None)

    @classmethod
    def unpinned(cls) -> Layout:
        return cls(None, None)

    def describe(self) -> str:
        if self.target_cpus is None:
            return "not pinned (the scheduler places every process)"
        return f"load generator + upstream on CPU {self.load_cpus}, measured system on CPU {self.target_cpus}"


@dataclass(slots=True)
class Loader:
    layout: Layout
    logs: Path
    runs: list[dict[str, Any]] = field(default_factory=list)
    """Every run's result, in order: the raw data of the JSON report."""

    def run(self, mode: str, target: Target, body: str | Path, *, seconds: float, label: str = "",
            rss_samples: bool = False, **options: float | int | str) -> dict[str, Any]:
        # A bare name is one of bench/bodies/; a path is used as it is.
        argv = [PYTHON, str(BENCH / "load.py"), mode, "--url", target.url, "--body", str(BENCH / "bodies" / body),
                "--seconds", f"{seconds:g}"]
        for name, value in options.items():
            argv += [f"--{name.replace('_', '-')}", str(value)]
        if self.layout.load_cpus is not None:
            argv = ["taskset", "-c", self.layout.load_cpus, *argv]
        before = target.proc.usage()
        started = time.monotonic()
        samples: list[tuple[float, float]] = []
        with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as load:
            try:
                while load.poll() is None:
                    if time.monotonic() - started > seconds + 90:
                        raise RuntimeError(f"load run against {target.name} did not finish: {' '.join(argv)}")
                    samples.append((time.monotonic() - started, target.proc.usage().rss_mb))
                    try:
                        load.wait(SAMPLE_EVERY_S)
                    except subprocess.TimeoutExpired:
                        pass
            except BaseException:  # interrupted or stuck: the generator must not outlive the run
                load.kill()
                raise
            out, err = load.communicate()
        wall = time.monotonic() - started
        after = target.proc.usage()
        result = _parse(out, err, target.name)
        cpu = after.cpu_s - before.cpu_s
        # The CPU covers every request the run sent, the rate mode's uncounted warm-up included.
        answered = (result.get("requests") if mode == "rate" else result.get("ok")) or 0
        result.update(target=target.name, label=label or mode, cpu_s=cpu, cpu_pct=100 * cpu / wall,
                      cpu_us_per_request=1e6 * cpu / answered if answered else None,
                      rss_mb=after.rss_mb, rss_max_mb=max([after.rss_mb, *(rss for _, rss in samples)]),
                      peak_rss_mb=after.peak_rss_mb)
        if rss_samples:
            result["rss_samples"] = [[round(t, 2), round(rss, 1)] for t, rss in samples]
        self.runs.append(result)
        return result


def closed_rounds(loader: Loader, systems: Sequence[Target], rounds: int, seconds: float, *,
                  warmup_s: float, warmup_connections: int) -> dict[str, list[dict[str, Any]]]:
    """Warm every system up, then measure each at max throughput (closed loop, 64
    connections) in `rounds` interleaved rounds; each system's runs (labelled `max`)."""
    for system in systems:
        loader.run("closed", system, "chat.json", seconds=warmup_s, connections=warmup_connections, label="warmup")
    for round_ in range(rounds):
        for system in systems:
            loader.run("closed", system, "chat.json", seconds=seconds, connections=64, label="max")["round"] = round_
    return {system.name: [run for run in loader.runs if run["target"] == system.name and run["label"] == "max"]
            for system in systems}


def _parse(out: bytes, err: bytes, name: str) -> dict[str, Any]:
    for line in out.decode(errors="replace").splitlines():
        if line.startswith("RESULT "):
            return orjson.loads(line[len("RESULT "):])
    raise RuntimeError(f"load run against {name} printed no result:\n{err.decode(errors='replace')[-1500:]}")
