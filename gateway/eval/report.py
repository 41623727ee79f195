"""An eval's figures, per alias and per alias and category, as JSON and as a terminal table.

Pure: scored `RunResult`s in. For each group: correct / partial / incorrect counts and
accuracy (`(correct + partial / 2) / runs`), latency p50/p99/p99.9 (nearest rank, as
`lockgate usage` computes them, over every request as the client timed it, failed ones
included), input and output tokens, cost (total and per run; runs whose model has no
price are counted in `unpriced_runs`, so the total is then a lower bound), the judge's
cost apart, errors by kind and the error rate (a policy refusal on a refusal case is the
expected answer, not an error), and how often each policy decision was hit.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from gateway.eval.runner import RunResult
from gateway.eval.scoring import CREDIT, VERDICTS

# The same money and time formats as `lockgate usage`, so the tables read alike.
from gateway.reporting import LATENCY_PERCENTILES, dollars, milliseconds, nearest_rank

_COST_DECIMALS = 10
_RATIO_DECIMALS = 4


def figures(results: Sequence[RunResult]) -> dict[str, Any]:
    """The figures of one group of runs."""
    runs = len(results)
    verdicts = Counter(result.verdict for result in results)
    latencies = sorted(result.reply.latency_ms for result in results)
    errors = Counter(result.error_kind for result in results if result.error_kind is not None)
    costs = [result.cost_usd for result in results if result.cost_usd is not None]
    cost = round(math.fsum(costs), _COST_DECIMALS)
    policies = Counter(label for result in results for label in result.reply.outcome.policies)
    return {
        "runs": runs,
        "cases": len({result.case.id for result in results}),
        **{verdict: verdicts[verdict] for verdict in VERDICTS},
        "accuracy": round(sum(CREDIT[result.verdict] for result in results) / runs, _RATIO_DECIMALS) if runs else 0.0,
        "latency_ms": {name: _rounded(nearest_rank(latencies, permille)) for name, permille in LATENCY_PERCENTILES},
        "input_tokens": sum(result.reply.usage.input_tokens for result in results if result.reply.usage),
        "output_tokens": sum(result.reply.usage.output_tokens for result in results if result.reply.usage),
        "cost_usd": cost,
        "cost_per_run_usd": round(cost / runs, _COST_DECIMALS) if runs else 0.0,
        "unpriced_runs": runs - len(costs),
        "judge_cost_usd": round(math.fsum(result.judge_cost_usd or 0.0 for result in results), _COST_DECIMALS),
        "errors": dict(sorted(errors.items())),
        "error_rate": round(sum(errors.values()) / runs, _RATIO_DECIMALS) if runs else 0.0,
        "policies": dict(sorted(policies.items(), key=lambda item: (-item[1], item[0]))),
    }


def summarize(results: Sequence[RunResult], aliases: Sequence[str]) -> dict[str, Any]:
    """`{"aliases": {alias: figures}, "categories": {category: {alias: figures}}}`, in dataset order."""
    categories = categories_of(results)
    return {
        "aliases": {alias: figures([r for r in results if r.alias == alias]) for alias in aliases},
        "categories": {category: {alias: figures([r for r in results if r.alias == alias
                                                  and r.case.category == category]) for alias in aliases}
                       for category in categories},
    }


def build_report(results: Sequence[RunResult], aliases: Sequence[str], **about: Any) -> dict[str, Any]:
    """The whole eval as JSON (what `--json` writes and the HTML report draws): `about` fields
    (dataset, gateway, judge, repeat, times), the summary, and every run."""
    return {**about, "aliases": list(aliases), "summary": summarize(results, aliases),
            "results": [result.as_json() for result in results]}


def below(report: dict[str, Any], min_accuracy: float) -> list[str]:
    """The aliases whose accuracy is under `min_accuracy`."""
    return [alias for alias, figures in report["summary"]["aliases"].items() if figures["accuracy"] < min_accuracy]


# --- the terminal table ------------------------------------------------------------------------

_ALIAS_COLUMNS = ("runs", "correct", "partial", "incorrect", "accuracy", "errors", "p50 ms", "p99 ms",
                  "p99.9 ms", "in tok", "out tok", "cost usd", "usd/run")


def format_table(report: dict[str, Any]) -> str:
    """Aliases side by side, then accuracy by category, then errors and policy decisions."""
    summary = report["summary"]
    aliases = report["aliases"]
    lines = [_aligned([["ALIAS", *(name.upper() for name in _ALIAS_COLUMNS)],
                       *([alias, *_alias_cells(summary["aliases"][alias])] for alias in aliases)])]
    lines.append(_aligned([["CATEGORY", *aliases],
                           *([category, *(percent(by_alias[alias]["accuracy"]) for alias in aliases)]
                             for category, by_alias in summary["categories"].items())]))
    notes = [f"{alias}: {kind} x{count}" for alias in aliases
             for kind, count in summary["aliases"][alias]["errors"].items()]
    if notes:
        lines.append("errors: " + "; ".join(notes))
    hits = [f"{alias}: {label} x{count}" for alias in aliases
            for label, count in summary["aliases"][alias]["policies"].items()]
    if hits:
        lines.append("policy decisions: " + "; ".join(hits))
    if any(summary["aliases"][alias]["unpriced_runs"] for alias in aliases):
        lines.append("? some runs used a model with no price: their cost is not counted.")
    judge_cost = sum(summary["aliases"][alias]["judge_cost_usd"] for alias in aliases)
    if judge_cost:
        lines.append(f"judge cost: {dollars(judge_cost)} USD (not in the aliases' cost)")
    return "\n\n".join(lines) + "\n"


def _alias_cells(figures: dict[str, Any]) -> list[str]:
    latency = figures["latency_ms"]
    cost = dollars(figures["cost_usd"]) + ("?" if figures["unpriced_runs"] else "")
    return [str(figures["runs"]), str(figures["correct"]), str(figures["partial"]), str(figures["incorrect"]),
            percent(figures["accuracy"]), percent(figures["error_rate"]),
            *(milliseconds(latency[name]) for name, _ in LATENCY_PERCENTILES),
            f"{figures['input_tokens']:,}", f"{figures['output_tokens']:,}", cost,
            dollars(figures["cost_per_run_usd"])]


def _aligned(rows: list[list[str]]) -> str:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return "\n".join("  ".join([row[0].ljust(widths[0]), *(cell.rjust(width) for cell, width
                                                           in zip(row[1:], widths[1:], strict=True))]).rstrip()
                     for row in rows)


def percent(ratio: float) -> str:
    """`0.875` as `87.5%`."""
    return f"{ratio * 100:.1f}%"


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def categories_of(results: Iterable[RunResult]) -> list[str]:
    """The categories in dataset order."""
    return list(dict.fromkeys(result.case.category for result in sorted(results, key=lambda r: r.case.number)))
