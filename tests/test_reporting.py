"""Usage reports: window parsing, exact nearest-rank percentiles, grouping, cost honesty, the CLI table.

The hand-counted cases are JSON under tests/fixtures/reporting/: windows.json (parse_window)
and reports.json (usage_report and format_table). The same ledgers are also read back from a
real SQLite store, both as the store returns them today and through the narrow projection
(REPORT_COLUMNS) a store can use for large windows.
"""

from __future__ import annotations

import json
import random
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.reporting import (
    GROUP_KEYS,
    LATENCY_PERCENTILES,
    REPORT_COLUMNS,
    check_group_key,
    format_table,
    iso_utc,
    nearest_rank,
    parse_window,
    usage_report,
)
from gateway.store import LedgerQuery, LedgerRow, SQLiteStore
from gateway.store.schema import SQLITE_MIGRATIONS

FIXTURES = Path(__file__).parent / "fixtures" / "reporting"
WINDOWS = json.loads((FIXTURES / "windows.json").read_text(encoding="utf-8"))
REPORTS = json.loads((FIXTURES / "reports.json").read_text(encoding="utf-8"))


def seconds(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def ledger(case: dict[str, Any]) -> list[dict[str, Any]]:
    """The case's rows as the store returns them: every column, defaults filled in."""
    rows = []
    for number, sparse in enumerate(case["rows"]):
        row = {**REPORTS["row_defaults"], "request_id": f"req_{number}", **sparse}
        row["ts"] = seconds(row.pop("at"))
        rows.append(row)
    return rows


def report_of(case: dict[str, Any], rows: Any) -> dict[str, Any]:
    return usage_report(rows, tenant=case["tenant"], since=seconds(case["since"]), until=seconds(case["until"]),
                        by=case["by"])


def cases(document: dict[str, Any], *, having: str | None = None) -> list[Any]:
    return [pytest.param(case, id=case["name"]) for case in document["cases"] if having is None or having in case]


def assert_matches(report: dict[str, Any], case: dict[str, Any]) -> None:
    if "expected" in case:
        assert report == case["expected"]
    for name, value in case.get("expect", {}).items():
        assert report[name] == value, name
    for name, value in case.get("expect_totals", {}).items():
        assert report["totals"][name] == value, name
    if "expect_groups" in case:
        picked = [{name: group[name] for name in wanted} for group, wanted in
                  zip(report["groups"], case["expect_groups"], strict=False)]
        assert len(report["groups"]) == len(case["expect_groups"])
        assert picked == case["expect_groups"]


# --- the window --------------------------------------------------------------------------------


@pytest.mark.parametrize("case", cases(WINDOWS, having="expected"))
def test_window_forms_resolve_to_the_hand_computed_utc_times(case: dict[str, Any]) -> None:
    since, until = parse_window(case["since"], case["until"], WINDOWS["now"])
    assert (since, until) == (seconds(case["expected"][0]), seconds(case["expected"][1]))
    assert [iso_utc(since), iso_utc(until)] == case["expected"]


@pytest.mark.parametrize("case", cases(WINDOWS, having="error"))
def test_bad_window_values_say_what_to_send(case: dict[str, Any]) -> None:
    with pytest.raises(ValueError) as raised:
        parse_window(case["since"], case["until"], WINDOWS["now"])
    assert case["error"] in str(raised.value)


# --- percentiles -------------------------------------------------------------------------------


def shuffled(values: list[float]) -> list[float]:
    random.Random(7).shuffle(values)
    return values


# Nearest rank: the value at 1-based rank ceil(p * n) of the sorted values.
PERCENTILE_SETS = [
    pytest.param([], (None, None, None), id="no rows"),
    pytest.param([7.0], (7.0, 7.0, 7.0), id="1 row"),
    pytest.param([20.0, 10.0], (10.0, 20.0, 20.0), id="2 rows: ranks 1, 2, 2"),
    pytest.param([3.0, 1.0, 2.0], (2.0, 3.0, 3.0), id="3 rows: ranks 2, 3, 3"),
    pytest.param(shuffled([float(i) for i in range(1, 101)]), (50.0, 99.0, 100.0), id="100 rows: ranks 50, 99, 100"),
    pytest.param(shuffled([float(i * i) for i in range(1, 1001)]), (250_000.0, 980_100.0, 998_001.0),
                 id="1000 rows of i^2: ranks 500, 990, 999"),
    pytest.param(shuffled([float(i) for i in range(1, 1002)]), (501.0, 991.0, 1000.0),
                 id="1001 rows: ranks 501, 991, 1000"),
    pytest.param([5.0] * 9 + [900.0], (5.0, 900.0, 900.0), id="one slow request in ten shows at p99"),
]


@pytest.mark.parametrize(("values", "expected"), PERCENTILE_SETS)
def test_report_latency_percentiles_are_exact_nearest_ranks(values: list[float],
                                                            expected: tuple[float | None, ...]) -> None:
    base = {**REPORTS["row_defaults"], "ts": seconds("2026-11-26T06:00:00Z")}
    rows = [{**base, "request_id": f"r{i}", "latency_ms": value} for i, value in enumerate(values)]
    report = usage_report(rows, tenant="acme", since=seconds("2026-11-26T00:00:00Z"),
                          until=seconds("2026-11-27T00:00:00Z"), by="model")
    assert tuple(report["totals"]["latency_ms"].values()) == expected
    if values:
        assert tuple(report["groups"][0]["latency_ms"].values()) == expected


@given(st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=300))
def test_nearest_rank_meets_its_definition(values: list[int]) -> None:
    ordered = sorted(values)
    for _, permille in LATENCY_PERCENTILES:
        value = nearest_rank(ordered, permille)
        at_or_below = sum(1 for v in values if v <= value)
        below = sum(1 for v in values if v < value)
        # at least p of the values are <= it, and fewer than p are strictly below it
        assert at_or_below * 1000 >= permille * len(values)
        assert below * 1000 < permille * len(values)


# --- reports -----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", cases(REPORTS))
def test_reports_match_the_hand_counted_figures(case: dict[str, Any]) -> None:
    report = report_of(case, ledger(case))
    assert report["since"] == case["since"] and report["until"] == case["until"]
    assert_matches(report, case)


@pytest.mark.parametrize("case", cases(REPORTS, having="table"))
def test_cli_table_matches_the_golden_text(case: dict[str, Any]) -> None:
    assert format_table(report_of(case, ledger(case))) == "\n".join(case["table"]) + "\n"


def test_every_group_key_groups_and_the_report_is_json_ready() -> None:
    case = REPORTS["cases"][0]
    for by in GROUP_KEYS:
        report = report_of({**case, "by": by}, ledger(case))
        assert sum(group["requests"] for group in report["groups"]) == report["totals"]["requests"] == 7
        assert json.loads(json.dumps(report)) == report


@pytest.mark.parametrize("by", ["week", "Model", "cost", "ts"])
def test_an_unknown_grouping_is_refused_with_the_choices(by: str) -> None:
    with pytest.raises(ValueError, match="send one of model, agent, provider, day, hour, alias, tenant"):
        usage_report([], tenant=None, since=0, until=1, by=by)
    with pytest.raises(ValueError, match=f"by='{by}'"):
        check_group_key(by)


def test_by_hour_groups_on_utc_hour_boundaries() -> None:
    # An hour's group holds [HH:00, HH+1:00); the edges, a day change and a non-UTC input prove the key.
    case = {"tenant": "acme", "since": "2026-11-26T05:00:00Z", "until": "2026-11-27T02:00:00Z", "by": "hour",
            "rows": [{"at": "2026-11-26T05:00:00Z", "cost_usd": 0.1},
                     {"at": "2026-11-26T05:59:59.999Z", "cost_usd": 0.2},
                     {"at": "2026-11-26T06:00:00Z", "cost_usd": 0.4},
                     {"at": "2026-11-26T20:30:00-04:00", "cost_usd": 0.05},
                     {"at": "2026-11-27T01:59:00Z", "cost_usd": 0.05}]}
    report = report_of(case, ledger(case))
    assert [(group["key"], group["requests"], group["cost_usd"]) for group in report["groups"]] == [
        ("2026-11-26T06:00Z", 1, 0.4), ("2026-11-26T05:00Z", 2, 0.3),
        ("2026-11-27T00:00Z", 1, 0.05), ("2026-11-27T01:00Z", 1, 0.05)]


def test_an_empty_grouping_means_totals_only() -> None:
    assert check_group_key("") is None
    assert usage_report([], tenant=None, since=0, until=1, by="")["by"] is None


# --- rows from a real store --------------------------------------------------------------------


def ledger_records(case: dict[str, Any]) -> list[LedgerRow]:
    return [LedgerRow(**{**row, "stream": bool(row["stream"]), "estimated": bool(row["estimated"]),
                         "decisions": [d for d in row["decisions"].split(",") if d]})
            for row in ledger(case)]


@pytest.mark.parametrize("case", cases(REPORTS))
async def test_reports_from_the_sqlite_store_rows(tmp_path: Path, case: dict[str, Any]) -> None:
    store = SQLiteStore(tmp_path / "ledger.db")
    await store.open()
    try:
        await store.write_ledger(ledger_records(case))
        tenant, since, until = case["tenant"], seconds(case["since"]), seconds(case["until"])
        rows = await store.ledger_rows(LedgerQuery(tenant, since, until))
    finally:
        await store.close()
    assert_matches(report_of(case, rows), case)


@pytest.mark.parametrize("case", cases(REPORTS))
def test_reports_stream_from_a_cursor_over_only_the_report_columns(case: dict[str, Any]) -> None:
    db = sqlite3.connect(":memory:")
    db.row_factory = sqlite3.Row
    for statement in SQLITE_MIGRATIONS[0]:
        db.execute(statement)
    db.executemany(f"INSERT INTO ledger ({', '.join(LedgerRow.COLUMNS)}) "
                   f"VALUES ({', '.join('?' for _ in LedgerRow.COLUMNS)})",
                   [record.values() for record in ledger_records(case)])
    cursor = db.execute(f"SELECT {', '.join(REPORT_COLUMNS)} FROM ledger WHERE ts >= ? AND ts < ?",
                        (seconds(case["since"]), seconds(case["until"])))
    assert_matches(report_of(case, cursor), case)
    db.close()
