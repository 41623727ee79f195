"""From raw runs to what a reader wants: one table per run, and each target met or not.

    python bench/report.py bench/results/quick-<date>.json [--write]   render a saved run again

Overheads are paired by round: a system's latency minus direct's in the same round
(the machine's other load changes from minute to minute, less within a round), then
the median over rounds. A target whose value lands within 10 % of its limit is marked
`close`: rerun before drawing a conclusion from it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

Run = dict[str, Any]


def median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def runs_of(runs: list[Run], target: str, label: str) -> list[Run]:
    return [run for run in runs if run["target"] == target and run["label"] == label]


def paired_overhead(runs: list[Run], target: str, label: str, metric: str, quantile: str) -> float | None:
    """Median over rounds of (target - direct) for e.g. metric latency_ms, quantile p99."""
    direct = {run.get("round"): run for run in runs_of(runs, "direct", label)}
    gaps = []
    for run in runs_of(runs, target, label):
        base = direct.get(run.get("round"))
        if base is not None and run[metric][quantile] is not None and base[metric][quantile] is not None:
            gaps.append(run[metric][quantile] - base[metric][quantile])
    return median(gaps)


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b not in (None, 0) else None


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    value: float | None
    limit: float
    unit: str
    at_most: bool = True
    close_band: float = 0.1
    """Within this fraction of the limit the verdict says `close: rerun` (0 for exact counts)."""

    @property
    def verdict(self) -> str:
        if self.value is None:
            return "not measured"
        met = self.value <= self.limit if self.at_most else self.value >= self.limit
        close = self.close_band > 0 and abs(self.value - self.limit) <= self.close_band * abs(self.limit)
        return ("met" if met else "NOT met") + (" (close: rerun)" if close else "")

    def line(self) -> str:
        sign = "<=" if self.at_most else ">="
        value = "-" if self.value is None else f"{self.value:,.0f}" if abs(self.value) >= 1000 else f"{self.value:.3g}"
        return f"| {self.name} | {value} {self.unit} | {sign} {self.limit:g} {self.unit} | {self.verdict} |"

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "limit": self.limit, "unit": self.unit,
                "at_most": self.at_most, "verdict": self.verdict}


def rate_summary(runs: list[Run], name: str, label: str) -> dict[str, Any]:
    chosen = runs_of(runs, name, label)
    quantiles = ("p50", "p99", "p999")
    if not chosen:
        return {"ran": False}
    return {"ran": True,
            "latency_ms": {q: median(run["latency_ms"][q] for run in chosen) for q in quantiles},
            "added_ms": {q: paired_overhead(runs, name, label, "latency_ms", q) for q in quantiles},
            "cpu_us_per_request": median(run["cpu_us_per_request"] for run in chosen),
            "errors": sum(run["errors"] for run in chosen)}


def stream_summary(runs: list[Run], name: str, label: str) -> dict[str, Any]:
    chosen, direct = runs_of(runs, name, label), runs_of(runs, "direct", label)
    reads, direct_reads = (median(run["reads_p50"] for run in group) for group in (chosen, direct))
    spread, direct_spread = (median(run["spread_ms"]["p50"] for run in group) for group in (chosen, direct))
    return {"ttfb_ms": median(run["ttfb_ms"]["p50"] for run in chosen),
            "ttft_ms": median(run["ttft_ms"]["p50"] for run in chosen),
            "added_ttfb_ms": paired_overhead(runs, name, label, "ttfb_ms", "p50"),
            "added_ttft_ms": paired_overhead(runs, name, label, "ttft_ms", "p50"),
            "total_ms": median(run["total_ms"]["p50"] for run in chosen),
            # A relay that coalesces chunks makes fewer, later reads: first-to-last byte shrinks.
            "reads": reads, "reads_vs_direct": ratio(reads, direct_reads),
            "spread_ms": spread, "spread_vs_direct": ratio(spread, direct_spread),
            "cpu_us_per_stream": median(run["cpu_us_per_request"] for run in chosen),
            "errors": sum(run["errors"] for run in chosen)}


def system_summary(runs: list[Run], name: str, quick: dict[str, Any]) -> dict[str, Any]:
    at_max = runs_of(runs, name, "max")
    cpu_at_max = median(run["cpu_us_per_request"] for run in at_max)
    return {
        "max_rps": quick["max_rps"].get(name),
        "cpu_pct_at_max": median(run["cpu_pct"] for run in at_max),
        "cpu_us_per_request_at_max": cpu_at_max,
        # What one whole core would serve at that CPU cost: robust to other load on the machine.
        "one_core_capacity_rps": 1e6 / cpu_at_max if cpu_at_max else None,
        "rates": {f"{rate:g}": rate_summary(runs, name, f"rate@{rate:g}") for rate in quick["rates"]},
        "stream": stream_summary(runs, name, "stream"),
        "tool_stream": stream_summary(runs, name, "stream-tool"),
        "peak_rss_mb": quick["peak_rss_mb"].get(name),
    }


def quick_checks(systems: dict[str, dict[str, Any]], quick: dict[str, Any]) -> list[Check]:
    floor, lockgate = systems["passthrough"], systems["lockgate"]
    at_floor = f"{quick['rates'][0]:g}"
    floor_rate, lockgate_rate = floor["rates"][at_floor], lockgate["rates"][at_floor]
    micro = quick["micro"]
    ledger = micro["ledger"]
    # Rows per batch at the benchmark's load: the writer flushes every 0.2 s.
    batch = next((b for b in ledger["batches"] if b["batch"] == 200), ledger["batches"][-1])

    def added(q: str) -> float | None:
        if not lockgate_rate["ran"]:
            return math.inf  # it cannot sustain the load at all
        return ratio(lockgate_rate["added_ms"][q], floor_rate["added_ms"][q])

    checks = [
        Check(f"added latency p50 at {at_floor} req/s, x floor's", added("p50"), 1.5, "x"),
        Check(f"added latency p99 at {at_floor} req/s, x floor's", added("p99"), 1.5, "x"),
        *(Check(f"(same at {rate} req/s, 50 % of Lockgate's max) {q}", ratio(
            lockgate["rates"][rate]["added_ms"][q], floor["rates"][rate]["added_ms"][q]), 1.5, "x")
          for rate in list(lockgate["rates"])[1:] for q in ("p50", "p99")),
        Check("max throughput (1 worker), x floor's", ratio(lockgate["max_rps"], floor["max_rps"]), 0.7, "x",
              at_most=False),
        Check("same, from CPU per request (one full core each)", ratio(
            lockgate["one_core_capacity_rps"], floor["one_core_capacity_rps"]), 0.7, "x", at_most=False),
        Check("streaming TTFB overhead p50 (first event)", lockgate["stream"]["added_ttfb_ms"], 1.0, "ms"),
        Check("streaming TTFT overhead p50 (first token)", lockgate["stream"]["added_ttft_ms"], 1.0, "ms"),
        Check("text stream relayed as it arrives: reads, x direct's", lockgate["stream"]["reads_vs_direct"], 0.8,
              "x", at_most=False),
        Check("policy, request stage, 20 rules", micro["policy"]["request_us"], 50, "µs"),
        Check("metering + ledger per request", micro["metering_us"] + batch["us_per_row"], 100, "µs"),
        Check("ledger via BatchWriter", ledger["steady"]["rows_per_s"], 5000, "rows/s", at_most=False),
    ]
    if "litellm" in systems:
        checks.append(Check("LiteLLM max throughput, x floor's (reference)",
                            ratio(systems["litellm"]["max_rps"], floor["max_rps"]), 0, "x", at_most=False))
    return checks


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def quick_table(systems: dict[str, dict[str, Any]], rates: list[float]) -> list[str]:
    floor_rps = systems["passthrough"]["max_rps"]
    added_columns = "".join(f" added p50 / p99 / p99.9 ms at {rate:g} req/s |" for rate in rates)
    lines = [f"| system | max req/s (CPU %) | x floor | CPU µs/req |{added_columns} added TTFB / TTFT ms "
             "| reads x direct | peak RSS MB |",
             "|---" * (7 + len(rates)) + "|"]
    for name, s in systems.items():
        cells = [name, f"{fmt(s['max_rps'], 0)} ({fmt(s['cpu_pct_at_max'], 0)} %)", fmt(ratio(s["max_rps"], floor_rps)),
                 fmt(s["cpu_us_per_request_at_max"], 0)]
        for rate in rates:
            at = s["rates"][f"{rate:g}"]
            cells.append(" / ".join(fmt(at["added_ms"][q]) for q in ("p50", "p99", "p999"))
                         if at["ran"] else "cannot sustain")
        stream = s["stream"]
        cells += [f"{fmt(stream['added_ttfb_ms'])} / {fmt(stream['added_ttft_ms'])}", fmt(stream["reads_vs_direct"]),
                  fmt(s["peak_rss_mb"], 0)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def checks_table(checks: list[Check]) -> list[str]:
    return ["| target | measured | limit | verdict |", "|---|---|---|---|", *(check.line() for check in checks)]


def quick_report(runs: list[Run], quick: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    names = list(dict.fromkeys(run["target"] for run in runs))
    systems = {name: system_summary(runs, name, quick) for name in names}
    checks = quick_checks(systems, quick)
    micro = quick["micro"]
    tool = systems["lockgate"]["tool_stream"]
    text = [*quick_table(systems, quick["rates"]), "", *checks_table(checks), "",
            f"- tool-call stream through Lockgate: added TTFB {fmt(tool['added_ttfb_ms'])} ms, reads x direct "
            f"{fmt(tool['reads_vs_direct'])}, first-to-last byte x direct {fmt(tool['spread_vs_direct'])} "
            "(tool-call deltas are held while a rule needs the call's arguments)",
            f"- policy µs: request {fmt(micro['policy']['request_us'], 1)}, tool call "
            f"{fmt(micro['policy']['tool_call_us'], 1)}, response text per delta "
            f"{fmt(micro['policy']['response_text_us_per_delta'], 1)}; metering {fmt(micro['metering_us'], 1)} µs; "
            "ledger rows/s by batch size: " + ", ".join(
                f"{b['batch']}: {fmt(b['rows_per_s'], 0)}" for b in micro["ledger"]["batches"])]
    return "\n".join(text), {"systems": systems, "checks": [check.as_json() for check in checks]}


def main() -> None:
    """Render a saved quick run again: python bench/report.py bench/results/quick-<date>.json [--write]"""
    import sys
    from pathlib import Path

    import orjson

    path = Path(sys.argv[1])
    document = orjson.loads(path.read_bytes())
    text, summary = quick_report(document["runs"], document)
    print(text)
    if "--write" in sys.argv[2:]:
        path.write_bytes(orjson.dumps(document | summary, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
