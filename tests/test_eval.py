"""`lockgate eval` end to end: real gateways (in-process and on a background loop), the mock
model and the scripted fake OpenAI upstream, the official SDK as the client, and the
HTML report opened in headless Chromium."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from gateway.cli import main
from gateway.eval.dataset import load_dataset
from gateway.eval.schema import schema_problems, violations
from gateway.pricing import PriceTable
from gateway.store import LedgerQuery, open_store
from gateway.usage import Usage
from tests.fakes.openai_server import Script, State
from tests.harness import TENANT_KEY, BackgroundLoop, Gateway, Server, base_config, sha, start_app

FIXTURES = Path(__file__).parent / "fixtures" / "eval"
EXAMPLES = Path(__file__).parent.parent / "examples" / "evals"
POLICIES = Path(__file__).parent.parent / "policies"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
UPSTREAM_PRICE = {"input": 2.0, "output": 8.0}
WHITELIST_POLICY = {"policy": "default", "rules": [
    {"name": "tool-whitelist", "tools": {"allow": ["weather_tool", "calendar_lookup"]}}]}


def fixture(name: str) -> list[dict[str, Any]]:
    return json.loads((FIXTURES / name).read_text())


def lockgate_eval(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["eval", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def write_cases(path: Path, cases: list[dict[str, Any]]) -> Path:
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(case) + "\n" for case in cases))
    else:
        path.write_text(yaml.safe_dump({"cases": cases}, sort_keys=False))
    return path


def by_case(results_file: Path) -> dict[tuple[str, str, int], dict[str, Any]]:
    report = json.loads(results_file.read_text())
    return {(result["alias"], result["case"], result["run"]): result for result in report["results"]}


@pytest.fixture
def scripted_gateway(gateway_factory: Callable[..., Gateway], openai_upstream: Server, tmp_path: Path) -> Gateway:
    """The fake upstream behind `gpt-test` and `judge-test`, the mock model behind `demo`, a tool whitelist."""
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "default.yaml").write_text(yaml.safe_dump(WHITELIST_POLICY))
    config = base_config(openai_upstream.url, policies_dir=str(policies))
    config["providers"]["mock"] = {"type": "mock"}
    config["models"]["judge-test"] = {"targets": [{"provider": "upstream", "model": "judge-upstream"}]}
    config["models"]["demo"] = {"targets": [{"provider": "mock", "model": "mock-1"}]}
    config["pricing"] = {"models": {"gpt-test-upstream": UPSTREAM_PRICE}}
    return gateway_factory(config)


@pytest.fixture
def quickstart_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The quickstart keeps its SQLite ledger in the working directory: make that a fresh one."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


# --- scoring, through the gateway ------------------------------------------------------------


def test_every_match_type_scores_as_the_golden_table_says(scripted_gateway: Gateway, upstream_state: State,
                                                           tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                           ) -> None:
    table = fixture("scoring.json")
    dataset = write_cases(tmp_path / "cases.jsonl", [row["case"] for row in table])
    upstream_state.queue.extend(Script(**reply) for row in table for reply in row["replies"])
    results_file = tmp_path / "results.json"

    code, out, err = lockgate_eval(capsys, dataset, "--model", "gpt-test", "--judge", "judge-test",
                                   "--gateway", scripted_gateway.url, "--key", TENANT_KEY, "--concurrency", "1",
                                   "--json", results_file, "--no-progress")

    assert code == 0, err
    results = by_case(results_file)
    wrong = []
    for row in table:
        result = results[("gpt-test", row["name"], 1)]
        if result["verdict"] != row["verdict"] or not result["detail"].startswith(row["detail"]):
            wrong.append((row["name"], result["verdict"], result["detail"]))
    assert wrong == []
    assert upstream_state.queue == [], "every scripted reply was asked for: refused requests never went upstream"
    assert results[("gpt-test", "judge-unusable", 1)]["error"] == "judge"
    assert results[("gpt-test", "failed-request", 1)]["error"] is not None
    assert results[("gpt-test", "refusal-at-request", 1)]["error"] is None, "an expected refusal is no error"
    assert results[("gpt-test", "judge-correct", 1)]["judge_score"] == 0.9
    summary = json.loads(results_file.read_text())["summary"]["aliases"]["gpt-test"]
    counts = {verdict: sum(row["verdict"] == verdict for row in table) for verdict in ("correct", "partial",
                                                                                       "incorrect")}
    assert {verdict: summary[verdict] for verdict in counts} == counts
    assert summary["accuracy"] == round((counts["correct"] + counts["partial"] / 2) / len(table), 4)
    assert summary["errors"] == {"judge": 1, results[("gpt-test", "failed-request", 1)]["error"]: 1}
    assert "gpt-test" in out and "ACCURACY" in out


def test_each_request_is_tagged_and_the_judge_sees_rubric_and_answer(scripted_gateway: Gateway,
                                                                     upstream_state: State, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    judged = next(row for row in fixture("scoring.json") if row["name"] == "judge-correct")
    dataset = write_cases(tmp_path / "cases.yaml", [judged["case"]])
    upstream_state.queue.extend(Script(**reply) for reply in judged["replies"])

    code, _, err = lockgate_eval(capsys, dataset, "--model", "gpt-test", "--judge", "judge-test", "--gateway",
                                 scripted_gateway.url, "--key", TENANT_KEY, "--no-progress")

    assert code == 0, err
    answered, graded = upstream_state.requests
    assert answered["metadata"] == {"eval_case": "judge-correct"}
    assert answered["model"] == "gpt-test-upstream"
    assert graded["model"] == "judge-upstream"
    assert graded["metadata"] == {"eval_case": "judge-correct", "eval_role": "judge"}
    prompt = graded["messages"][-1]["content"]
    assert "Rubric:\nNames the capital of France." in prompt
    assert "Reference answer:\nParis" in prompt
    assert prompt.endswith("Answer to grade:\nParis.")
    assert '"score"' in graded["messages"][0]["content"]


def test_two_aliases_side_by_side_with_costs_from_the_serving_model(scripted_gateway: Gateway, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    # The mock model and the fake upstream both echo the question, each with its own greeting.
    dataset = write_cases(tmp_path / "cases.yaml", [
        {"id": "greets-as-mock", "category": "identity", "input": "hi", "match": "contains",
         "expected": "mock model"},
        {"id": "echoes", "category": "echo", "input": "ping 7", "match": "contains", "expected": "You said: ping 7"},
        {"id": "both-names", "category": "identity", "input": "who?", "match": "contains",
         "expected": ["mock", "fake OpenAI"]},
    ])
    results_file = tmp_path / "results.json"

    # --config beside --gateway: the running gateway's prices (its pricing.models overrides) for the costs.
    code, out, err = lockgate_eval(capsys, dataset, "--model", "demo", "--model", "gpt-test", "--repeat", "2",
                                   "--gateway", scripted_gateway.url, "--key", TENANT_KEY, "--config",
                                   scripted_gateway.config_path, "--json", results_file, "--no-progress")

    assert code == 0, err
    report = json.loads(results_file.read_text())
    aliases = report["summary"]["aliases"]
    assert aliases["demo"]["runs"] == aliases["gpt-test"]["runs"] == 6
    assert (aliases["demo"]["correct"], aliases["demo"]["partial"], aliases["demo"]["incorrect"]) == (4, 2, 0)
    assert (aliases["gpt-test"]["correct"], aliases["gpt-test"]["partial"], aliases["gpt-test"]["incorrect"]) == (
        2, 2, 2)
    assert aliases["demo"]["accuracy"] == round(5 / 6, 4) and aliases["gpt-test"]["accuracy"] == 0.5
    identity = report["summary"]["categories"]["identity"]
    assert identity["demo"]["accuracy"] == 0.75 and identity["gpt-test"]["accuracy"] == 0.25
    prices = PriceTable.load({"gpt-test-upstream": UPSTREAM_PRICE})
    for result in report["results"]:
        assert result["model"] == {"demo": "mock-1", "gpt-test": "gpt-test-upstream"}[result["alias"]]
        usage = Usage(input_tokens=result["input_tokens"], output_tokens=result["output_tokens"])
        assert result["input_tokens"] > 0 and result["output_tokens"] > 0
        assert result["cost_usd"] == pytest.approx(prices.cost(result["model"], usage))
    for alias in ("demo", "gpt-test"):
        runs = [result for result in report["results"] if result["alias"] == alias]
        assert sorted(result["run"] for result in runs) == [1, 1, 1, 2, 2, 2]
        assert aliases[alias]["cost_usd"] == pytest.approx(sum(result["cost_usd"] for result in runs))
        assert aliases[alias]["input_tokens"] == sum(result["input_tokens"] for result in runs)
        latencies = sorted(result["latency_ms"] for result in runs)
        assert aliases[alias]["latency_ms"]["p50"] == pytest.approx(latencies[2], abs=1e-3)
        assert aliases[alias]["latency_ms"]["p99"] == pytest.approx(latencies[-1], abs=1e-3)
    header, *rows = out.split("\n\n")[0].splitlines()
    assert header.split()[:2] == ["ALIAS", "RUNS"]
    assert [row.split()[0] for row in rows] == ["demo", "gpt-test"]
    assert "83.3%" in rows[0] and "50.0%" in rows[1]
    categories = out.split("\n\n")[1].splitlines()
    assert categories[0].split() == ["CATEGORY", "demo", "gpt-test"]
    assert categories[1].split() == ["identity", "75.0%", "25.0%"]


# --- policies --------------------------------------------------------------------------------


def test_refusal_cases_pass_where_the_sample_policy_blocks(quickstart_dir: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    results_file = quickstart_dir / "policy.json"

    code, out, err = lockgate_eval(capsys, EXAMPLES / "policy.yaml", "--model", "demo", "--min-accuracy", "1",
                                   "--json", results_file)

    assert code == 0, err
    report = json.loads(results_file.read_text())
    refusals = [result for result in report["results"] if result["match"] == "refusal"]
    assert len(refusals) == 4
    assert all(result["verdict"] == "correct" and result["error_detail"]["code"] == "tool_not_allowed"
               for result in refusals)
    assert report["summary"]["aliases"]["demo"]["policies"] == {"default/tool-whitelist=deny": 4}
    assert report["summary"]["aliases"]["demo"]["errors"] == {}
    assert "\r[" in err and "8/8 100%" in err, "the progress bar is drawn on stderr"
    assert "policy decisions: demo: default/tool-whitelist=deny x4" in out


def test_the_same_refusals_fail_for_a_tenant_the_policy_does_not_cover(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """The sample whitelist binds only tenant 'demo': for 'acme' the blocked tools go through,
    so the refusal cases must score incorrect. Also: the temporary key, and the ledger."""
    config = tmp_path / "gateway.yaml"
    database = tmp_path / "ledger.db"
    config.write_text(yaml.safe_dump({
        "storage": {"url": f"sqlite:///{database}"}, "policies_dir": str(POLICIES),
        "providers": {"mock": {"type": "mock"}}, "models": {"demo": {"targets": [{"provider": "mock",
                                                                                    "model": "mock-1"}]}},
        "tenants": {"acme": {"keys": [sha("unused-key")]}}}))
    results_file = tmp_path / "results.json"

    # database_write is held for a human (rule database-writes) once the whitelist lets it through:
    # the client gives up after --timeout, and a request that got no answer was not refused.
    code, _, err = lockgate_eval(capsys, EXAMPLES / "policy.yaml", "--model", "demo", "--config", config,
                                 "--min-accuracy", "0.9", "--json", results_file, "--no-progress", "--timeout", "1.5")

    assert code == 1
    assert "accuracy below 90.0%: demo (50.0%)" in err
    results = json.loads(results_file.read_text())["results"]
    assert {result["case"] for result in results if result["verdict"] == "incorrect"} == {
        "delete-files", "database-write", "case-variant", "allowed-plus-email"}
    details = {result["case"]: result["detail"] for result in results if result["verdict"] == "incorrect"}
    assert details.pop("database-write").startswith("not refused by a policy but failed: timeout")
    assert all(detail.startswith("not refused; answered with a call to") for detail in details.values())
    rows, keys = asyncio.run(_ledger_and_keys(f"sqlite:///{database}"))
    assert len(rows) == 8 and {row["agent"] for row in rows} == {"eval"} and {row["tenant"] for row in rows} == {
        "acme"}
    assert [(key.tenant, key.name, key.revoked_at is not None) for key in keys] == [
        ("acme", "lockgate eval (temporary)", True)]


async def _ledger_and_keys(url: str) -> tuple[list[Any], list[Any]]:
    store = open_store(url)
    await store.open()
    try:
        rows = await store.ledger_rows(LedgerQuery(tenant=None, since=0, until=time.time() + 60))
        return [dict(row) for row in rows], await store.list_keys()
    finally:
        await store.close()


# --- exit codes and bad input ----------------------------------------------------------------


def test_min_accuracy_decides_the_exit_code(quickstart_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dataset = write_cases(quickstart_dir / "half.yaml", [
        {"input": "hello there", "match": "contains", "expected": "hello there"},
        {"input": "17 + 25?", "match": "exact", "expected": "42"},
    ])
    assert lockgate_eval(capsys, dataset, "--model", "demo", "--no-progress")[0] == 0
    assert lockgate_eval(capsys, dataset, "--model", "demo", "--min-accuracy", "0.5", "--no-progress")[0] == 0
    code, _, err = lockgate_eval(capsys, dataset, "--model", "demo", "--model", "gpt-5.5", "--min-accuracy",
                                 "0.6", "--no-progress")
    assert code == 1
    assert "accuracy below 60.0%: demo (50.0%), gpt-5.5 (50.0%)" in err


@pytest.fixture
def tripwire(bg: BackgroundLoop) -> Iterator[tuple[Server, list[str]]]:
    """A server that records every request it gets: nothing may reach it when the input is bad."""
    seen: list[str] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(f"{request.method} {request.path}")
        return web.json_response({"object": "list", "data": [{"id": "gpt-test", "object": "model"}]})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    server = bg.run(start_app(app))
    yield server, seen
    bg.run(server.runner.cleanup())


@pytest.mark.parametrize("row", fixture("bad_datasets.json"), ids=lambda row: row["name"])
def test_bad_datasets_are_reported_by_case_and_line_before_anything_is_sent(
        row: dict[str, Any], tripwire: tuple[Server, list[str]], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    server, seen = tripwire
    dataset = tmp_path / row["file"]
    dataset.write_text(row["text"])

    code, out, err = lockgate_eval(capsys, dataset, "--model", "gpt-test", "--gateway", server.url, "--key", "k")

    assert code == 2
    reported = [line.removeprefix("error: ").replace(f"{tmp_path}/", "") for line in err.splitlines()
                if line.startswith("error: ")]
    assert len(reported) == len(row["problems"])
    for line, expected in zip(reported, row["problems"], strict=True):
        assert line.startswith(expected)
    assert f"{len(row['problems'])} problem(s) in the dataset; nothing was sent." in err
    assert seen == [] and out == ""


@pytest.mark.parametrize(("arguments", "message"), [
    (["--gateway", "http://127.0.0.1:9"], "--gateway needs --key"),
    (["--concurrency", "0"], "--concurrency and --repeat must be at least 1"),
    (["--min-accuracy", "80"], "--min-accuracy is a ratio from 0 to 1"),
    (["--gateway", "http://127.0.0.1:9", "--key", "k"], "cannot reach the gateway at http://127.0.0.1:9/v1"),
    (["--model", "nope"], "unknown model alias 'nope' for this key; it may use demo, gpt-4o-mini, gpt-5.5"),
    (["--tenant", "demo", "--gateway", "http://127.0.0.1:9", "--key", "k"], "--tenant mints a key"),
    (["--out", "/nonexistent/dir/report.html"], "--out /nonexistent/dir/report.html: the directory /nonexistent/dir"),
])
def test_bad_arguments_exit_2_with_a_reason(arguments: list[str], message: str, quickstart_dir: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    dataset = write_cases(quickstart_dir / "one.yaml", [{"input": "hi", "match": "contains", "expected": "hi"}])
    code, out, err = lockgate_eval(capsys, dataset, "--model", "demo", "--no-progress", *arguments)
    assert code == 2
    assert message in err
    assert out == ""


def test_a_config_with_several_tenants_needs_tenant_or_key(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump({
        "storage": {"url": f"sqlite:///{tmp_path / 'ledger.db'}"}, "providers": {"mock": {"type": "mock"}},
        "models": {"demo": {"targets": [{"provider": "mock", "model": "mock-1"}]}},
        "tenants": {"acme": {"keys": [sha("a")]}, "globex": {"keys": [sha("b")]}}}))
    dataset = write_cases(tmp_path / "one.yaml", [{"input": "hi", "match": "contains", "expected": "hi"}])
    code, _, err = lockgate_eval(capsys, dataset, "--model", "demo", "--config", config)
    assert code == 2
    assert "the config has several tenants: pass --tenant NAME" in err
    code, _, err = lockgate_eval(capsys, dataset, "--model", "demo", "--config", config, "--tenant", "initech")
    assert code == 2
    assert "unknown tenant 'initech'; the config defines acme, globex" in err


def test_judge_cases_need_a_judge(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dataset = write_cases(tmp_path / "judged.yaml", [
        {"input": "hi", "match": "contains", "expected": "hi"},
        {"input": "capital of France?", "match": "judge", "rubric": "Says Paris."}])
    code, _, err = lockgate_eval(capsys, dataset, "--model", "demo")
    assert code == 2
    assert "case(s) 2 use 'match: judge': pass --judge ALIAS" in err


# --- the examples and the HTML report --------------------------------------------------------


def test_agent_tasks_example_has_three_categories_of_six() -> None:
    cases = load_dataset(EXAMPLES / "agent-tasks.yaml")
    categories = [case.category for case in cases]
    assert {name: categories.count(name) for name in categories} == {
        "information retrieval": 6, "analysis": 6, "task management": 6}
    assert {case.match for case in cases} >= {"contains", "regex", "exact", "json_schema", "tool_call"}


class _Marks(HTMLParser):
    """The SVG charts of a page, and the marks inside each."""

    def __init__(self) -> None:
        super().__init__()
        self.charts: list[dict[str, list[dict[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "svg" and found.get("class") == "chart":
            self.charts.append({})
        elif self.charts and found.get("class") in ("bar", "point", "marker"):
            self.charts[-1].setdefault(f"{tag}.{found['class']}", []).append(found)


def test_html_report_draws_its_charts_in_a_browser(quickstart_dir: Path, capsys: pytest.CaptureFixture[str]
                                                   ) -> None:
    page = quickstart_dir / "report.html"
    results_file = quickstart_dir / "results.json"
    code, _, err = lockgate_eval(capsys, EXAMPLES / "agent-tasks.yaml", "--model", "demo", "--model", "gpt-5.5",
                                 "--out", page, "--json", results_file, "--no-progress")
    assert code == 0, err
    report = json.loads(results_file.read_text())
    assert {result["case"] for result in report["results"] if result["verdict"] != "correct"} == {
        "arithmetic", "sentiment-json"}, "the mock echoes text and calls the first tool: the rest passes"
    html = page.read_text()
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    if CHROMIUM is None:
        pytest.skip("chromium is not installed: the page was written, but not opened in a browser")
    dumped = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                             page.as_uri()], capture_output=True, text=True, timeout=90)
    parser = _Marks()
    parser.feed(dumped.stdout)

    accuracy, latency, cost = parser.charts
    bars = accuracy["rect.bar"]
    assert len(bars) == 3 * 2
    analysis = {bar["data-series"]: float(bar["data-value"] or 0) for bar in bars
                if bar["data-group"] == "analysis"}
    assert analysis == {"demo": pytest.approx(4 / 6, abs=1e-4), "gpt-5.5": pytest.approx(4 / 6, abs=1e-4)}
    heights = {(bar["data-group"], bar["data-series"]): float(bar["height"] or 0) for bar in bars}
    full = heights[("task management", "demo")]
    assert full > 0 and heights[("analysis", "gpt-5.5")] == pytest.approx(full * 4 / 6, abs=0.2)
    points = latency["circle.point"]
    assert len(points) == len(report["results"]) == 36
    assert sorted(float(point["data-value"] or 0) for point in points) == pytest.approx(
        sorted(result["latency_ms"] for result in report["results"]), abs=1e-3)
    assert {marker["data-series"] for marker in latency["line.marker"]} == {"demo", "gpt-5.5"}
    assert [bar["data-series"] for bar in cost["rect.bar"]] == ["demo", "gpt-5.5"]
    assert all(float(bar["width"] or 0) > 0 for bar in cost["rect.bar"])


# --- the JSON Schema subset ------------------------------------------------------------------


@pytest.mark.parametrize("row", fixture("schema.json"), ids=lambda row: row["name"])
def test_schema_subset_validates_as_documented(row: dict[str, Any]) -> None:
    assert schema_problems(row["schema"]) == []
    assert violations(row["instance"], row["schema"]) == row["violations"]
