"""The eval report's charts as inline SVG text, drawn in Python: no JavaScript, no CDN.

Three shapes cover the report: grouped vertical bars (accuracy by category, one bar per
alias), a dot plot with percentile markers (latency of every request, one row per
alias) and horizontal bars (cost per alias). Every mark carries a `<title>` (the
browser's tooltip) and `data-*` attributes naming what it shows. Pure: numbers in, text out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from html import escape

PALETTE = ("#2563eb", "#d97706", "#059669", "#dc2626", "#7c3aed", "#0891b2", "#db2777", "#65a30d")
_WIDTH = 760
_FONT = 'font-family="system-ui, sans-serif" font-size="12"'
_GRID = "#e5e7eb"
_INK = "#374151"

Format = Callable[[float], str]


def color(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def nice_ticks(top: float, count: int = 5) -> list[float]:
    """Round tick values from 0 to at least `top` (1, 2, 2.5 or 5 times a power of ten apart)."""
    if top <= 0 or not math.isfinite(top):
        return [0.0, 1.0]
    raw = top / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(power * factor for factor in (1, 2, 2.5, 5, 10) if power * factor >= raw)
    return [step * index for index in range(math.ceil(top / step - 1e-9) + 1)]


def grouped_bars(title: str, groups: Sequence[str], series: Sequence[str],
                 value: Callable[[str, str], float], fmt: Format) -> str:
    """Vertical bars from 0 to 1: for each group, one bar per series."""
    left, top, bottom, height = 52, 40, 56, 300
    plot_w, plot_h = _WIDTH - left - 16, height - top - bottom
    slot = plot_w / max(1, len(groups))
    bar = slot * 0.8 / max(1, len(series))
    parts = [_legend(series, left, 18)]
    parts += _y_grid([0.0, 0.25, 0.5, 0.75, 1.0], left, top, plot_w, plot_h, fmt)
    for g, group in enumerate(groups):
        x0 = left + g * slot + slot * 0.1
        for s, name in enumerate(series):
            share = min(1.0, max(0.0, value(group, name)))
            bar_h = share * plot_h
            parts.append(
                f'<rect class="bar" data-series="{escape(name)}" data-group="{escape(group)}" data-value="{share:g}" '
                f'x="{x0 + s * bar:.1f}" y="{top + plot_h - bar_h:.1f}" width="{max(1.0, bar - 2):.1f}" '
                f'height="{bar_h:.1f}" fill="{color(s)}"><title>{escape(name)}, {escape(group)}: {fmt(share)}'
                f"</title></rect>")
        parts.append(_text(left + g * slot + slot / 2, top + plot_h + 18, _clip(group, slot), "middle"))
    return _svg(title, height, parts)


def dot_plot(title: str, series: Sequence[str], values: Mapping[str, Sequence[float]],
             markers: Mapping[str, Mapping[str, float | None]], fmt: Format) -> str:
    """One row per series: a dot per value, and a labelled tick per marker (p50, p99, ...)."""
    left, top, row_h = 140, 24, 56
    plot_w = _WIDTH - left - 24
    height = top + row_h * max(1, len(series)) + 36
    ticks = nice_ticks(max((v for name in series for v in values.get(name, ())), default=0.0))
    scale = plot_w / ticks[-1]
    parts = _x_grid(ticks, left, top, plot_w, height - 36 - top, fmt)
    for s, name in enumerate(series):
        middle = top + s * row_h + row_h / 2
        parts.append(_text(left - 8, middle + 4, _clip(name, left - 12), "end"))
        for index, number in enumerate(values.get(name, ())):
            jitter = (index * 7919 % 17 - 8) * row_h / 40
            parts.append(f'<circle class="point" data-series="{escape(name)}" data-value="{number:g}" '
                         f'cx="{left + number * scale:.1f}" cy="{middle + jitter:.1f}" r="3.5" fill="{color(s)}" '
                         f'fill-opacity="0.6"><title>{escape(name)}: {fmt(number)}</title></circle>')
        for index, (label, number) in enumerate(_merged(markers.get(name, {}))):
            x = left + number * scale
            parts.append(f'<line class="marker" data-series="{escape(name)}" data-marker="{escape(label)}" '
                         f'x1="{x:.1f}" x2="{x:.1f}" y1="{middle - row_h * 0.35:.1f}" y2="{middle + row_h * 0.35:.1f}" '
                         f'stroke="{_INK}" stroke-width="2"><title>{escape(name)} {escape(label)}: {fmt(number)}'
                         f"</title></line>")
            # Labels alternate above and below the row, so close percentiles stay readable.
            label_y = middle - row_h * 0.38 if index % 2 == 0 else middle + row_h * 0.38 + 9
            parts.append(_text(x, label_y, escape(label), "middle", size=10))
    return _svg(title, height, parts)


def horizontal_bars(title: str, series: Sequence[str], values: Mapping[str, float], fmt: Format) -> str:
    """One bar per series, from 0, labelled with its value."""
    left, top, row_h = 140, 12, 34
    plot_w = _WIDTH - left - 110
    height = top + row_h * max(1, len(series)) + 12
    largest = max((values.get(name, 0.0) for name in series), default=0.0)
    scale = plot_w / largest if largest > 0 else 0.0
    parts = []
    for s, name in enumerate(series):
        number = values.get(name, 0.0)
        y = top + s * row_h
        width = number * scale
        parts.append(_text(left - 8, y + row_h / 2 + 4, _clip(name, left - 12), "end"))
        parts.append(f'<rect class="bar" data-series="{escape(name)}" data-value="{number:g}" x="{left}" '
                     f'y="{y + 6}" width="{width:.1f}" height="{row_h - 12}" fill="{color(s)}">'
                     f"<title>{escape(name)}: {fmt(number)}</title></rect>")
        parts.append(_text(left + width + 6, y + row_h / 2 + 4, escape(fmt(number)), "start"))
    return _svg(title, height, parts)


# --- pieces ------------------------------------------------------------------------------------


def _merged(markers: Mapping[str, float | None]) -> list[tuple[str, float]]:
    """Markers by value, those at the same value under one label (`p99 = p99.9`)."""
    by_value: dict[float, list[str]] = {}
    for label, number in markers.items():
        if number is not None:
            by_value.setdefault(number, []).append(label)
    return [(" = ".join(labels), number) for number, labels in sorted(by_value.items())]


def _svg(title: str, height: float, parts: list[str]) -> str:
    return (f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" role="img" viewBox="0 0 {_WIDTH} {height:.0f}" '
            f'width="{_WIDTH}" height="{height:.0f}" {_FONT}><title>{escape(title)}</title>' + "".join(parts)
            + "</svg>")


def _text(x: float, y: float, content: str, anchor: str, size: int = 12) -> str:
    """`content` must already be escaped."""
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" fill="{_INK}">{content}</text>'


def _legend(series: Sequence[str], x: float, y: float) -> str:
    items = []
    for s, name in enumerate(series):
        items.append(f'<rect class="legend" x="{x:.1f}" y="{y - 10}" width="12" height="12" fill="{color(s)}"/>'
                     + _text(x + 16, y, escape(name), "start"))
        x += 28 + 7 * len(name)
    return "".join(items)


def _y_grid(ticks: Sequence[float], left: float, top: float, width: float, height: float, fmt: Format) -> list[str]:
    lines = []
    for tick in ticks:
        y = top + height - tick / ticks[-1] * height
        lines.append(f'<line x1="{left}" x2="{left + width:.1f}" y1="{y:.1f}" y2="{y:.1f}" stroke="{_GRID}"/>')
        lines.append(_text(left - 6, y + 4, escape(fmt(tick)), "end", size=10))
    return lines


def _x_grid(ticks: Sequence[float], left: float, top: float, width: float, height: float, fmt: Format) -> list[str]:
    lines = []
    for tick in ticks:
        x = left + tick / ticks[-1] * width
        lines.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + height:.1f}" stroke="{_GRID}"/>')
        lines.append(_text(x, top + height + 16, escape(fmt(tick)), "middle", size=10))
    return lines


def _clip(label: str, room: float) -> str:
    """`label` escaped, shortened to about what fits in `room` pixels."""
    fits = max(4, int(room / 7))
    return escape(label if len(label) <= fits else label[: fits - 1] + "…")
