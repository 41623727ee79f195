"""The dashboard at /ui, driven in a real headless Chromium by Playwright.

A real gateway (with a fake OpenAI upstream) serves the page and the admin API; traffic goes
through the gateway with the official OpenAI SDK; the test then reads the page as a person
would and checks every figure against the admin API's own answer. Chromium is Debian's
(`apt-get install chromium`); Playwright is the Python package only (no browser download).

Set LOCKGATE_UI_SCREENSHOTS=docs/ui to refresh the README's screenshots.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.fakes.openai_server import State
from tests.harness import ADMIN_KEY, TENANT_KEY, BackgroundLoop, Gateway, Server
from tests.ui_traffic import (
    ADMIN,
    HOSTILE,
    admin_get,
    approved_through_the_api,
    client,
    dashboard_config,
    held_tool_call,
    in_thread,
    make_traffic,
    seed_history,
    wait_for_pending,
)

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is missing: `pip install playwright` (the "
                               "test extra has it); the browser is Debian's chromium, never `playwright install`")
CHROMIUM = os.environ.get("LOCKGATE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip("Chromium is missing: `apt-get install -y chromium` (or set LOCKGATE_CHROMIUM)",
                allow_module_level=True)

Page = sync_api.Page
expect = sync_api.expect
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]


# --- servers, browser, page ---------------------------------------------------------------------


@pytest.fixture
def gateway(gateway_factory: Callable[..., Gateway], openai_upstream: Server, tmp_path: Path) -> Gateway:
    return gateway_factory(dashboard_config(openai_upstream.url, tmp_path), name="ui")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Page]:
    """A fresh tab (own sessionStorage); fails the test on any script error or CSP violation."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    tab = context.new_page()
    problems: list[str] = []
    tab.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    # A refused key is a 401 the page handles; Chromium logs every failed fetch as an error.
    tab.on("console", lambda message: problems.append(message.text) if message.type == "error"
           and not message.text.startswith("Failed to load resource") else None)
    yield tab
    assert context.cookies() == []  # the key travels in a header, never in a cookie
    context.close()
    assert problems == []


def sign_in(page: Page, gateway: Gateway, view: str = "usage") -> None:
    page.goto(f"{gateway.url}/ui#{view}")
    page.fill("#admin-key", ADMIN_KEY)
    page.click("#login-form button[type=submit]")
    expect(page.locator("#nav")).to_be_visible()
    expect(page.locator(f"#view-{view}")).to_be_visible()


# --- reading figures off the page ----------------------------------------------------------------


def cell_texts(page: Page, container: str) -> dict[str, dict[str, str]]:
    """{row key: {column: text}} of the table in `container`, from the rendered DOM."""
    return page.eval_on_selector(container, """(root) => Object.fromEntries(
        [...root.querySelectorAll("tbody tr[data-key]")].map((row) => [row.dataset.key, Object.fromEntries(
            [...row.querySelectorAll("td[data-col]")].map((cell) => [cell.dataset.col, cell.textContent]))]))""")


def dollars(cost: float) -> str:
    # Four places can never tie for a binary float (1/20000 has a factor 5), so JS and Python round alike.
    return "<$0.0001" if 0 < cost < 0.0001 else f"${cost:,.4f}"


def number(text: str) -> float:
    return float(re.sub(r"[$,%?]|\s*ms$", "", text))


def assert_figures(texts: dict[str, str], summary: dict[str, Any]) -> None:
    """The page shows the API's figures: counts exactly as `lockgate usage` prints them, the rest to the digit shown."""
    for column in ("requests", "input_tokens", "output_tokens", "cached_tokens"):
        assert texts[column] == f"{summary[column]:,}", column
    assert texts["cost_usd"] == dollars(summary["cost_usd"]) + ("?" if summary["unpriced_requests"] else "")
    assert number(texts["error_rate"]) == pytest.approx(summary["error_rate"] * 100, abs=0.05)
    for column in ("p50", "p99"):
        assert number(texts[column]) == pytest.approx(summary["latency_ms"][column], abs=0.05), column


def bars(page: Page, chart: str) -> dict[str, float]:
    """{bucket key: value} of every bar the chart drew, zeros included."""
    return page.eval_on_selector(f"#{chart} svg", """(svg) => Object.fromEntries(
        [...svg.querySelectorAll("rect.bar")].map((bar) => [bar.dataset.key, Number(bar.dataset.value)]))""")


def drawn_values(buckets: dict[str, float]) -> dict[str, float]:
    return {key: value for key, value in buckets.items() if value}


# --- signing in ----------------------------------------------------------------------------------


def test_sign_in_refuses_wrong_keys_with_the_gateways_message_and_keeps_the_key_per_tab(
        page: Page, gateway: Gateway) -> None:
    page.goto(f"{gateway.url}/ui")
    expect(page.locator("#login")).to_be_visible()
    for key in ("lg-not-a-key", TENANT_KEY):
        expected = httpx.get(f"{gateway.url}/admin/tenants", headers={"Authorization": f"Bearer {key}"})
        assert expected.status_code in (401, 403)
        page.fill("#admin-key", key)
        page.click("#login-form button[type=submit]")
        expect(page.locator("#login-error")).to_have_text(expected.json()["error"]["message"])
        expect(page.locator("#nav")).to_be_hidden()
        assert page.evaluate("sessionStorage.getItem('lockgate.adminKey')") is None

    sign_in(page, gateway)
    assert page.evaluate("sessionStorage.getItem('lockgate.adminKey')") == ADMIN_KEY
    page.reload()
    expect(page.locator("#view-usage")).to_be_visible()  # same tab: still signed in

    # The key stops working (rotated, say): the next refresh sends the operator back to the form.
    page.evaluate("sessionStorage.setItem('lockgate.adminKey', 'lg-rotated-away')")
    expect(page.locator("#login")).to_be_visible(timeout=5000)
    expect(page.locator("#login-error")).to_contain_text("admin key")
    sign_in(page, gateway)
    page.click("#sign-out")
    expect(page.locator("#login")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('lockgate.adminKey')") is None


# --- usage ---------------------------------------------------------------------------------------


def test_usage_figures_and_charts_match_the_usage_api(page: Page, gateway: Gateway, upstream_state: State,
                                                     bg: BackgroundLoop) -> None:
    seed_history(bg, gateway)
    make_traffic(gateway, upstream_state)
    sign_in(page, gateway)
    by_tenant = admin_get(gateway, "/admin/usage", by="tenant", since="24h")
    assert {group["key"] for group in by_tenant["groups"]} == {"acme", "globex"}
    expect(page.locator("#usage-tenants tfoot")).to_contain_text(f"{by_tenant['totals']['requests']:,}")
    shown = cell_texts(page, "#usage-tenants")
    for group in by_tenant["groups"]:
        assert_figures(shown[group["key"]], group)
    expect(page.locator("[data-stat=Requests] .stat-value")).to_have_text(f"{by_tenant['totals']['requests']:,}")

    hourly = admin_get(gateway, "/admin/usage", by="hour", since="24h")
    daily = admin_get(gateway, "/admin/usage", by="day", since="30d")
    hour_bars, day_bars = bars(page, "chart-hourly"), bars(page, "chart-daily")
    assert len(hour_bars) in (24, 25) and len(day_bars) in (30, 31)
    assert drawn_values(hour_bars) == {group["key"]: group["requests"] for group in hourly["groups"]}
    assert drawn_values(day_bars) == {group["key"]: group["requests"] for group in daily["groups"]}
    drawn = page.eval_on_selector_all("#chart-hourly rect.bar:not(.zero)",
                                      "(rects) => rects.map((rect) => rect.getBoundingClientRect().height)")
    assert drawn and all(height > 1 for height in drawn)

    page.select_option("#usage-metric", "cost")
    expect(page.locator("#chart-daily svg")).to_have_attribute("data-metric", "cost")
    assert drawn_values(bars(page, "chart-daily")) == pytest.approx({g["key"]: g["cost_usd"] for g in daily["groups"]})

    # One tenant: its agents and models, and the charts narrowed to it.
    page.select_option("#usage-tenant", "acme")
    expect(page.locator("#usage-breakdown")).to_be_visible()
    by_agent = admin_get(gateway, "/admin/usage", tenant="acme", by="agent", since="24h")
    by_model = admin_get(gateway, "/admin/usage", tenant="acme", by="model", since="24h")
    agents, models = cell_texts(page, "#usage-agents"), cell_texts(page, "#usage-models")
    assert set(agents) == {group["key"] or "" for group in by_agent["groups"]} >= {"planner", "writer", HOSTILE}
    assert set(models) == {"gpt-test-upstream", "gpt-mini-upstream"} | ({""} if len(by_model["groups"]) == 3 else set())
    for group in by_agent["groups"]:
        assert_figures(agents[group["key"] or ""], group)
    for group in by_model["groups"]:
        assert_figures(models[group["key"] or ""], group)
    assert agents[HOSTILE]["key"] == HOSTILE  # shown as text, never run as markup
    assert page.evaluate("window.__pwned") is None and page.locator("#usage-agents img").count() == 0
    acme_daily = admin_get(gateway, "/admin/usage", tenant="acme", by="day", since="30d")
    expect(page.locator("[data-stat=Cost] .stat-value")).to_have_text(re.compile(r"^\$"))
    assert sum(bars(page, "chart-daily").values()) == pytest.approx(acme_daily["totals"]["cost_usd"])


# --- approvals -----------------------------------------------------------------------------------


def pending_card(page: Page, title: str) -> Any:
    card = page.locator("article.approval", has=page.locator("h3", has_text=title))
    expect(card).to_be_visible(timeout=5000)
    return card


def test_a_held_tool_call_is_approved_from_the_queue_and_completes(page: Page, gateway: Gateway,
                                                                    upstream_state: State) -> None:
    arguments = {"table": "users", "note": HOSTILE}
    sign_in(page, gateway, "approvals")
    expect(page.locator(".empty-queue")).to_be_visible()
    thread, box = held_tool_call(gateway, upstream_state, "dba", arguments)

    card = pending_card(page, "database_write")
    (record,) = admin_get(gateway, "/admin/approvals", status="pending")["data"]
    assert card.get_attribute("data-id") == record["id"]
    expect(card.locator("pre.arguments")).to_have_text(json.dumps(json.loads(record["arguments"]), indent=2))
    for text in ("acme", "dba", "default / database-writes", "tool_call", "hold", record["request_id"]):
        expect(card).to_contain_text(text)
    expect(card.locator(".countdown")).to_contain_text(re.compile(r"denies itself in 1m \d\ds"))
    expect(page.locator("#pending-count")).to_have_text("1")
    assert page.evaluate("window.__pwned") is None and card.locator("img").count() == 0

    page.wait_for_timeout(2500)  # a queue refresh passes while the reason is typed: the card stays put
    card.locator("input[name=reason]").fill("checked by the on-call")
    page.wait_for_timeout(2200)
    expect(card.locator("input[name=reason]")).to_have_value("checked by the on-call")
    assert not box, "the call must wait for the decision"
    card.locator("button.approve").click()

    thread.join(30)
    assert "error" not in box, box
    (call,) = box["result"].choices[0].message.tool_calls
    assert (call.function.name, json.loads(call.function.arguments)) == ("database_write", arguments)
    decided = admin_get(gateway, f"/admin/approvals/{record['id']}")
    assert (decided["status"], decided["reason"], decided["decided_by"]) == ("approved", "checked by the on-call",
                                                                              "admin")
    expect(page.locator("article.approval")).to_have_count(0)
    expect(page.locator("#decision-note")).to_contain_text("approved")
    expect(page.locator("#pending-count")).to_be_hidden()

    page.click("[data-tab=history]")
    row = page.locator(f"#approvals-history tr[data-key='{record['id']}']")
    expect(row.locator("[data-col=status]")).to_have_text("approved")
    expect(row.locator("[data-col=reason]")).to_have_text("checked by the on-call")


def test_a_held_request_is_denied_from_the_queue_with_its_reason(page: Page, gateway: Gateway,
                                                                  upstream_state: State) -> None:
    sign_in(page, gateway, "approvals")
    thread, box = in_thread(lambda: client(gateway).chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "reset the admin password"}]))
    card = pending_card(page, "Request")
    expect(card.locator("pre.summary")).to_contain_text("reset the admin password")
    card.locator("input[name=reason]").fill("not over chat")
    card.locator("button.deny").click()
    thread.join(30)
    error = box["error"]
    assert isinstance(error, openai.PermissionDeniedError) and "not over chat" in error.message
    assert upstream_state.requests == []
    expect(page.locator("#decision-note")).to_contain_text("denied (not over chat)")
    page.click("[data-tab=history]")
    page.select_option("#history-status", "denied")
    expect(page.locator("#approvals-history tbody tr[data-key]")).to_have_count(1)
    expect(page.locator("#approvals-history [data-col=status]")).to_have_text("denied")


# --- requests, circuits, tenants -----------------------------------------------------------------


def test_recent_requests_circuits_and_tenants_render_what_the_api_says(page: Page, gateway: Gateway,
                                                                       upstream_state: State) -> None:
    make_traffic(gateway, upstream_state)
    approved_through_the_api(gateway)
    sign_in(page, gateway, "requests")
    ledger = admin_get(gateway, "/admin/requests", limit=100)["data"]
    rows = page.locator("#requests-table tbody tr[data-key]")
    expect(rows).to_have_count(len(ledger))
    assert rows.evaluate_all("(rows) => rows.map((row) => row.dataset.key)") == [row["request_id"] for row in ledger]
    shown = cell_texts(page, "#requests-table")
    for row in ledger:
        texts = shown[row["request_id"]]
        assert texts["status"].startswith(str(row["status"])) and texts["tenant"] == row["tenant"]
        assert texts["input_tokens"] == f"{row['input_tokens']:,}"
        assert texts["decisions"] == ("".join(row["decisions"]) or "–")
    assert any(row["status"] >= 400 for row in ledger)
    (decided,) = [row for row in ledger if row["decisions"]]  # the approved request names its rule
    assert any("sensitive-input" in label for label in decided["decisions"])
    chips = page.locator(f"#requests-table tr[data-key='{decided['request_id']}'] [data-col=decisions] .chip")
    assert chips.all_text_contents() == decided["decisions"]

    page.click("#nav a[data-view=circuits]")
    circuits = admin_get(gateway, "/admin/circuits")["data"]
    expect(page.locator("#circuits-table tbody tr[data-key]")).to_have_count(len(circuits))
    shown = cell_texts(page, "#circuits-table")
    for target in circuits:
        assert shown[f"{target['provider']}/{target['model']}"]["state"] == target["state"].replace("_", "-")

    page.click("#nav a[data-view=tenants]")
    expect(page.locator("#tenants-table tbody tr[data-key]")).to_have_count(2)
    acme = cell_texts(page, "#tenants-table")["acme"]
    utc_day = page.evaluate("new Date().toISOString().slice(0, 10)")
    today = admin_get(gateway, "/admin/usage", tenant="acme", since=utc_day)
    assert acme["budget_day"].startswith(f"{dollars(today['totals']['cost_usd'])} of $5")
    assert (acme["rpm"], acme["tpm"], acme["max_concurrent"]) == ("600", "200,000", "20")
    expect(page.locator("#tenants-table tr[data-key=globex] [data-col=models]")).to_have_text("gpt-test")


# --- screenshots ---------------------------------------------------------------------------------


def snapshot(page: Page, path: Path) -> Path:
    """The page down to the end of its content, at most one screen high."""
    height = min(1160, page.evaluate("document.querySelector('main').getBoundingClientRect().bottom"))
    page.screenshot(path=str(path), clip={"x": 0, "y": 0, "width": 1440, "height": height})
    return path


def test_every_view_renders_into_a_screenshot(page: Page, gateway: Gateway, upstream_state: State,
                                              bg: BackgroundLoop, tmp_path: Path) -> None:
    folder = Path(os.environ.get("LOCKGATE_UI_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    seed_history(bg, gateway)
    make_traffic(gateway, upstream_state)
    approved_through_the_api(gateway)
    thread, _ = held_tool_call(gateway, upstream_state, "billing-agent", {"table": "invoices", "rows": 1200})
    page.set_viewport_size({"width": 1440, "height": 1160})
    page.goto(f"{gateway.url}/ui")
    shots = [snapshot(page, folder / "login.png")]
    sign_in(page, gateway)
    page.select_option("#usage-tenant", "acme")
    expect(page.locator("#usage-agents tbody tr[data-key]")).not_to_have_count(0)
    for view in ("usage", "approvals", "requests", "circuits", "tenants"):
        page.click(f"#nav a[data-view={view}]")
        expect(page.locator(f"#view-{view} table, #view-{view} article").first).to_be_visible()
        shots.append(snapshot(page, folder / f"{view}.png"))
    for shot in shots:
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000, shot
    httpx.post(f"{gateway.url}/admin/approvals/{wait_for_pending(gateway)['id']}/approve", headers=ADMIN)
    thread.join(30)
