"""The eval as one self-contained HTML page (`--out report.html`): inline CSS, inline SVG
charts, no scripts and no network, so it can be mailed, archived or attached to a CI run.

It is drawn from the JSON report alone (`report.build_report`), so a `--json` file can be
rendered again later. Sections: the run, figures per alias, the three charts (accuracy by
category, latency of every request, cost), accuracy by category, errors and policy
decisions, and every case with each alias's verdicts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from gateway.eval import svg
from gateway.eval.report import dollars, milliseconds, percent
from gateway.reporting import LATENCY_PERCENTILES

_MARKERS = (("p50", "p50"), ("p99", "p99"), ("p999", "p99.9"))
_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; color: #111827; margin: 2rem auto; max-width: 64rem; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin-bottom: .25rem; } h2 { font-size: 1.1rem; margin-top: 2rem; }
.meta { color: #4b5563; } .meta span { margin-right: 1.25rem; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0; }
th, td { border-bottom: 1px solid #e5e7eb; padding: .3rem .5rem; text-align: right; white-space: nowrap; }
th:first-child, td:first-child, .text { text-align: left; } td.text { white-space: normal; }
.wide { overflow-x: auto; }
th { background: #f9fafb; font-weight: 600; }
.chart { max-width: 100%; height: auto; display: block; margin: .5rem 0 1rem; }
.verdict { display: inline-block; min-width: 1.4rem; padding: 0 .35rem; margin: 1px; border-radius: .6rem;
           font-size: 12px; text-align: center; cursor: help; }
.correct { background: #d1fae5; color: #065f46; } .partial { background: #fef3c7; color: #92400e; }
.incorrect { background: #fee2e2; color: #991b1b; }
.swatch { display: inline-block; width: .8rem; height: .8rem; border-radius: 2px; vertical-align: -1px; }
"""
_SYMBOLS = {"correct": "✓", "partial": "½", "incorrect": "✗"}


def render_html(report: Mapping[str, Any]) -> str:
    aliases: list[str] = report["aliases"]
    summary = report["summary"]
    sections = [
        f"<h1>Lockgate eval: {escape(str(report.get('dataset', '')))}</h1>",
        _meta(report),
        "<h2>Per model alias</h2>", _alias_table(aliases, summary["aliases"]),
        "<h2>Accuracy by category</h2>", _accuracy_chart(aliases, summary["categories"]),
        _category_table(aliases, summary["categories"]),
        "<h2>Latency of every request</h2>", _latency_chart(aliases, summary["aliases"], report["results"]),
        "<h2>Cost per alias</h2>", _cost_chart(aliases, summary["aliases"]),
        "<h2>Errors and policy decisions</h2>", _hits(aliases, summary["aliases"]),
        "<h2>Cases</h2>", _case_table(aliases, report["results"]),
    ]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>Lockgate eval: {escape(str(report.get('dataset', '')))}</title><style>{_STYLE}</style></head>"
            "<body>" + "\n".join(sections) + "</body></html>\n")


def _meta(report: Mapping[str, Any]) -> str:
    facts = [("gateway", report.get("gateway")), ("judge", report.get("judge")),
             ("repeat", report.get("repeat")), ("started", report.get("started_at")),
             ("finished", report.get("finished_at"))]
    return '<p class="meta">' + "".join(f"<span>{name}: <b>{escape(str(value))}</b></span>"
                                        for name, value in facts if value is not None) + "</p>"


def _alias_table(aliases: Sequence[str], figures: Mapping[str, Any]) -> str:
    head = ["alias", "runs", "✓ / ½ / ✗", "accuracy", "error rate",
            *(f"{label} ms" for _, label in _MARKERS), "input tok", "output tok", "cost USD", "USD / run"]
    rows = []
    for index, alias in enumerate(aliases):
        data = figures[alias]
        latency = data["latency_ms"]
        rows.append([f'<span class="swatch" style="background:{svg.color(index)}"></span> {escape(alias)}',
                     str(data["runs"]), f"{data['correct']} / {data['partial']} / {data['incorrect']}",
                     percent(data["accuracy"]), percent(data["error_rate"]),
                     *(milliseconds(latency[key]) for key, _ in LATENCY_PERCENTILES),
                     f"{data['input_tokens']:,}", f"{data['output_tokens']:,}",
                     dollars(data["cost_usd"]) + ("?" if data["unpriced_runs"] else ""),
                     dollars(data["cost_per_run_usd"])])
    return _table(head, rows)


def _category_table(aliases: Sequence[str], categories: Mapping[str, Mapping[str, Any]]) -> str:
    rows = [[escape(category), *(f"{percent(by_alias[alias]['accuracy'])} "
                                 f"({by_alias[alias]['correct']}/{by_alias[alias]['partial']}/"
                                 f"{by_alias[alias]['incorrect']})" for alias in aliases)]
            for category, by_alias in categories.items()]
    return _table(["category", *(f"{alias} (✓/½/✗)" for alias in aliases)], rows)


def _accuracy_chart(aliases: Sequence[str], categories: Mapping[str, Mapping[str, Any]]) -> str:
    return svg.grouped_bars("Accuracy by category per alias", list(categories), aliases,
                            lambda category, alias: categories[category][alias]["accuracy"], percent)


def _latency_chart(aliases: Sequence[str], figures: Mapping[str, Any], results: Sequence[Mapping[str, Any]]) -> str:
    values = {alias: [r["latency_ms"] for r in results if r["alias"] == alias] for alias in aliases}
    markers = {alias: {label: figures[alias]["latency_ms"][key] for key, label in _MARKERS} for alias in aliases}
    return svg.dot_plot("Latency per request (ms), with p50, p99 and p99.9", aliases, values, markers,
                        lambda number: f"{number:,.1f} ms")


def _cost_chart(aliases: Sequence[str], figures: Mapping[str, Any]) -> str:
    costs = {alias: figures[alias]["cost_usd"] for alias in aliases}
    judge = sum(figures[alias]["judge_cost_usd"] for alias in aliases)
    note = f"<p class=\"meta\">The judge cost {dollars(judge)} USD more, not counted above.</p>" if judge else ""
    return svg.horizontal_bars("Cost per alias (USD)", aliases, costs, lambda number: f"${dollars(number)}") + note


def _hits(aliases: Sequence[str], figures: Mapping[str, Any]) -> str:
    rows = []
    for alias in aliases:
        errors = ", ".join(f"{escape(kind)} &times; {count}" for kind, count in figures[alias]["errors"].items())
        policies = ", ".join(f"{escape(label)} &times; {count}" for label, count in figures[alias]["policies"].items())
        rows.append([escape(alias), errors or "none", policies or "none"])
    return _table(["alias", "errors", "policy decisions (X-Lockgate-Policies)"], rows, text_columns=(1, 2))


def _case_table(aliases: Sequence[str], results: Sequence[Mapping[str, Any]]) -> str:
    cases: dict[str, dict[str, Any]] = {}
    for result in results:
        case = cases.setdefault(result["case"], {"result": result, "runs": {alias: [] for alias in aliases}})
        case["runs"][result["alias"]].append(result)
    rows = []
    for entry in sorted(cases.values(), key=lambda entry: entry["result"]["number"]):
        first = entry["result"]
        rows.append([escape(first["case"]), escape(first["category"]), escape(first["match"]),
                     *("".join(_chip(run) for run in entry["runs"][alias]) for alias in aliases)])
    return _table(["case", "category", "match", *aliases], rows, text_columns=(1,))


def _chip(run: Mapping[str, Any]) -> str:
    tip = run["detail"] or run["verdict"]
    if run["error"]:
        tip = f"{run['error']}: {tip}"
    return (f'<span class="verdict {escape(run["verdict"])}" title="{escape(tip)}">'
            f"{_SYMBOLS.get(run['verdict'], '?')}</span>")


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], text_columns: Sequence[int] = ()) -> str:
    """Cells are HTML already; `text_columns` wrap and align left, the rest are figures."""
    header = "".join(f'<th class="text">{escape(name)}</th>' if column in text_columns else f"<th>{escape(name)}</th>"
                     for column, name in enumerate(head))
    body = "".join("<tr>" + "".join(f'<td class="text">{cell}</td>' if column in text_columns else f"<td>{cell}</td>"
                                    for column, cell in enumerate(row)) + "</tr>" for row in rows)
    return f'<div class="wide"><table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table></div>'
