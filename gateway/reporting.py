"""Usage reports: requests, tokens, cost, errors and latency per tenant, from the ledger.

This is the one place that turns ledger rows into the figures behind `GET /v1/usage`,
`GET /admin/usage` and `lockgate usage`, so the API and the CLI can never disagree.
It is pure: the caller fetches the rows of the window from the store and passes them in
(any iterable of rows readable as `row["column"]`: dicts, `sqlite3.Row`, `asyncpg.Record`),
and gets back a JSON-ready dict, or a text table for the terminal.

The window is half-open, `since <= ts < until`, like the store's query. Percentiles use
the nearest-rank method (see `nearest_rank`) so every reported latency is one that a real
request had. docs/usage.md is the reference for every field.
"""

from __future__ import annotations

import math
import re
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

ERROR_TYPES = ("timeout", "rate_limit", "validation_error", "upstream_error", "policy", "budget")
"""The closed set of ledger `error_type` values; every report lists all of them, zeros included."""

GROUP_KEYS = ("model", "agent", "provider", "day", "hour", "alias", "tenant")
"""What `by=` may name. `day` is the UTC date of the row's `ts` (`2026-11-26`), `hour` the UTC hour it
started in (`2026-11-26T05:00Z`); the others are ledger columns."""

REPORT_COLUMNS = ("ts", "tenant", "agent", "alias", "provider", "model", "error_type", "input_tokens",
                  "output_tokens", "cached_tokens", "cache_write_tokens", "reasoning_tokens", "cost_usd",
                  "latency_ms", "ttft_ms", "overhead_ms", "estimated")
"""The only ledger columns a report reads: a store can SELECT just these."""

DEFAULT_SINCE = "24h"

LATENCY_PERCENTILES = (("p50", 500), ("p99", 990), ("p999", 999))
"""(field, permille): in permille the rank arithmetic stays in integers, exact for any number of rows."""

_SHORT_PERCENTILES = LATENCY_PERCENTILES[:2]
_COST_DECIMALS = 10  # finer than any per-token price, coarse enough to drop float noise (0.1 + 0.2)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])", re.IGNORECASE)
_UNIX_SECONDS = re.compile(r"\d+(?:\.\d+)?")
_MILLISECONDS_FROM = 1e11  # year 5138 in seconds, but an ordinary timestamp in milliseconds
_YEAR_10000 = 253_402_300_800.0  # 10000-01-01T00:00:00Z: Python's datetime (and so iso_utc) ends before it
_WINDOW_FORMS = ("send a duration back from now (24h, 7d, 30m, 90s), an ISO-8601 UTC time "
                 "(2026-11-27T05:00:00Z), or unix seconds")


# --- the window --------------------------------------------------------------------------------


def parse_window(since: str | None, until: str | None, now: float) -> tuple[float, float]:
    """The report window as unix seconds, from the query's `since` and `until`.

    Each may be a duration back from `now` (`24h`, `7d`, `30m`, `90s`, `2w`), an ISO-8601
    time (a time without offset is UTC; a bare date is its 00:00 UTC), unix seconds, or
    `now`. Missing or empty: since 24h ago, until now. Raises ValueError naming the
    parameter and the accepted forms, also when the window is empty or reversed.
    """
    start = _parse_instant("since", since or DEFAULT_SINCE, now)
    end = _parse_instant("until", until or "now", now)
    if start >= end:
        raise ValueError(f"since ({iso_utc(start)}) must be earlier than until ({iso_utc(end)})")
    return start, end


def _parse_instant(param: str, text: str, now: float) -> float:
    value = text.strip()
    if value.lower() == "now":
        return _checked(param, text, now)
    if duration := _DURATION.fullmatch(value):
        amount, unit = duration.groups()
        return _checked(param, text, now - float(amount) * _UNIT_SECONDS[unit.lower()])
    if _UNIX_SECONDS.fullmatch(value):
        seconds = float(value)
        if seconds >= _MILLISECONDS_FROM:
            raise ValueError(f"{param}={text!r} looks like milliseconds; send unix seconds")
        return _checked(param, text, seconds)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{param}={text!r} is not a time: {_WINDOW_FORMS}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return _checked(param, text, moment.timestamp())


def _checked(param: str, text: str, seconds: float) -> float:
    if seconds < 0:
        raise ValueError(f"{param}={text!r} is before 1970-01-01; send a later time")
    # A time with an offset can name a UTC instant past year 9999 (9999-12-31T23:59:59-14:00):
    # refused here, so every accepted window can be reported back as UTC text.
    if seconds >= _YEAR_10000:
        raise ValueError(f"{param}={text!r} is after 9999-12-31T23:59:59Z; send an earlier time")
    return seconds


def iso_utc(seconds: float) -> str:
    """`2026-11-27T05:00:00Z`; milliseconds are shown only when the time has a fraction."""
    moment = datetime.fromtimestamp(seconds, UTC)
    spec = "seconds" if moment.microsecond == 0 else "milliseconds"
    return moment.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def utc_day(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d")


def utc_hour(seconds: float) -> str:
    """The UTC hour `seconds` falls in, as `2026-11-26T05:00Z`: sorts as text in time order, like `utc_day`."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:00Z")


# --- percentiles -------------------------------------------------------------------------------


def nearest_rank(ordered: Sequence[float], permille: int) -> float | None:
    """The nearest-rank percentile of ascending values: the value at 1-based rank ceil(p * n).

    So p50 of [10, 20] is 10 and p99 of 100 values is the 99th smallest; None when empty.
    """
    if not ordered:
        return None
    rank = -(-len(ordered) * permille // 1000)  # ceil, in integers so float rounding can never shift a rank
    return ordered[rank - 1]


def _percentiles(values: Iterable[float], which: Sequence[tuple[str, int]]) -> dict[str, float | None]:
    ordered = sorted(values)
    return {name: nearest_rank(ordered, permille) for name, permille in which}


# --- aggregation -------------------------------------------------------------------------------


@dataclass(slots=True)
class _Tally:
    """The running figures of one group; the totals are the groups merged."""

    requests: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    unpriced_requests: int = 0
    estimated_requests: int = 0
    # Raw values are kept so costs sum exactly and percentiles are exact; 8 bytes each in an array.
    costs: array = field(default_factory=lambda: array("d"))
    latency_ms: array = field(default_factory=lambda: array("d"))
    ttft_ms: array = field(default_factory=lambda: array("d"))
    overhead_ms: array = field(default_factory=lambda: array("d"))

    def add(self, row: Mapping[str, Any]) -> None:
        self.requests += 1
        if row["error_type"]:
            self.errors[row["error_type"]] += 1
        input_tokens, output_tokens = row["input_tokens"] or 0, row["output_tokens"] or 0
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens
        self.cached_tokens += row["cached_tokens"] or 0
        self.cache_write_tokens += row["cache_write_tokens"] or 0
        self.reasoning_tokens += row["reasoning_tokens"] or 0
        if row["cost_usd"] is not None:
            self.costs.append(row["cost_usd"])
        elif input_tokens or output_tokens:
            self.unpriced_requests += 1
        if row["estimated"]:
            self.estimated_requests += 1
        self.latency_ms.append(row["latency_ms"] or 0.0)
        self.overhead_ms.append(row["overhead_ms"] or 0.0)
        if row["ttft_ms"] is not None:
            self.ttft_ms.append(row["ttft_ms"])

    @classmethod
    def merged(cls, parts: Iterable[_Tally]) -> _Tally:
        whole = cls()
        for part in parts:
            for name in _COUNTS:
                setattr(whole, name, getattr(whole, name) + getattr(part, name))
            whole.errors.update(part.errors)
            for name in _VALUES:
                getattr(whole, name).extend(getattr(part, name))
        return whole

    def summary(self) -> dict[str, Any]:
        failed = sum(self.errors.values())
        return {
            "requests": self.requests,
            "errors": {kind: self.errors[kind] for kind in (*ERROR_TYPES, *sorted(self.errors.keys() - ERROR_TYPES))},
            "error_rate": failed / self.requests if self.requests else 0.0,
            **{kind: getattr(self, kind) for kind in _TOKEN_KINDS},
            "cost_usd": round(math.fsum(self.costs), _COST_DECIMALS),
            "unpriced_requests": self.unpriced_requests,
            "estimated_requests": self.estimated_requests,
            "latency_ms": _percentiles(self.latency_ms, LATENCY_PERCENTILES),
            "ttft_ms": _percentiles(self.ttft_ms, _SHORT_PERCENTILES),
            "overhead_ms": _percentiles(self.overhead_ms, _SHORT_PERCENTILES),
        }


_TOKEN_KINDS = ("input_tokens", "output_tokens", "cached_tokens", "cache_write_tokens", "reasoning_tokens")
_COUNTS = ("requests", *_TOKEN_KINDS, "unpriced_requests", "estimated_requests")
_VALUES = ("costs", "latency_ms", "ttft_ms", "overhead_ms")


def _group_reader(by: str | None) -> Callable[[Mapping[str, Any]], str | None]:
    if by is None:
        return lambda row: None
    if by == "day":
        return lambda row: utc_day(row["ts"])
    if by == "hour":
        return lambda row: utc_hour(row["ts"])
    return lambda row: row[by] or None  # an empty agent and no agent are the same group


def default_grouping(tenant: str | None) -> str:
    """The grouping of a report that names none: per tenant across tenants, else per model."""
    return "tenant" if tenant is None else "model"


def check_group_key(by: str | None) -> str | None:
    """`by` as given (None for no grouping, an empty value included); ValueError if unknown."""
    if not by:
        return None
    if by not in GROUP_KEYS:
        raise ValueError(f"by={by!r} is not a grouping; send one of {', '.join(GROUP_KEYS)}")
    return by


def usage_report(rows: Iterable[Mapping[str, Any]], *, tenant: str | None, since: float, until: float,
                 by: str | None) -> dict[str, Any]:
    """The usage answer for `tenant` (None: every tenant) over `since <= ts < until`.

    Rows outside the window or of another tenant are skipped, so the answer always matches
    its own header whatever the caller fetched. Groups are sorted by cost, highest first,
    then by key (the null key last). Raises ValueError for an unknown `by`.
    """
    group_by = check_group_key(by)
    key_of = _group_reader(group_by)
    groups: dict[str | None, _Tally] = {}
    for row in rows:
        if not since <= row["ts"] < until or (tenant is not None and row["tenant"] != tenant):
            continue
        key = key_of(row)
        group = groups.get(key)
        if group is None:
            group = groups[key] = _Tally()
        group.add(row)
    listed = [{"key": key, **tally.summary()} for key, tally in groups.items()] if group_by else []
    listed.sort(key=lambda group: (-group["cost_usd"], group["key"] is None, group["key"] or ""))
    return {"tenant": tenant, "since": iso_utc(since), "until": iso_utc(until), "by": group_by,
            "totals": _Tally.merged(groups.values()).summary(), "groups": listed}


# --- the CLI table -----------------------------------------------------------------------------

_COLUMNS = ("requests", "input", "output", "cached", "cost usd", "errors", "p50 ms", "p99 ms", "p99.9 ms")


def format_table(report: Mapping[str, Any]) -> str:
    """The report as aligned text: a title, one line per group, a totals line, and a footnote
    when some requests had no price (their cost is marked `?`: the sum is a lower bound)."""
    label = report.get("by") or ""
    lines = [[label.upper(), *(name.upper() for name in _COLUMNS)]]
    lines += [[_key_text(group["key"]), *_figures(group)] for group in report["groups"]]
    lines.append(["TOTAL", *_figures(report["totals"])])
    widths = [max(len(line[column]) for line in lines) for column in range(len(lines[0]))]
    text = [f"usage of {_tenant_text(report['tenant'])} from {report['since']} to {report['until']}", ""]
    text += ["  ".join([line[0].ljust(widths[0]), *(cell.rjust(width) for cell, width in
                                                    zip(line[1:], widths[1:], strict=True))]).rstrip()
             for line in lines]
    unpriced = report["totals"]["unpriced_requests"]
    if unpriced:
        text += ["", f"? {unpriced} request(s) used a model with no price: the cost shown is a lower bound."]
    return "\n".join(text) + "\n"


def _figures(summary: Mapping[str, Any]) -> list[str]:
    cost = dollars(summary["cost_usd"]) + ("?" if summary["unpriced_requests"] else "")
    latency = summary["latency_ms"]
    return [f"{summary['requests']:,}", f"{summary['input_tokens']:,}", f"{summary['output_tokens']:,}",
            f"{summary['cached_tokens']:,}", cost, f"{summary['error_rate'] * 100:.1f}%",
            *(milliseconds(latency[name]) for name, _ in LATENCY_PERCENTILES)]


def dollars(cost: float) -> str:
    # A few requests on a cheap model cost less than the last shown digit; never print them as zero.
    return "<0.0001" if 0 < cost < 0.0001 else f"{cost:,.4f}"


def milliseconds(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _key_text(key: str | None) -> str:
    return "(none)" if key is None else key


def _tenant_text(tenant: str | None) -> str:
    return "all tenants" if tenant is None else f"tenant {tenant}"
