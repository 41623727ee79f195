"""Exact accounting: what the providers report is what the ledger, the usage API, the
metrics and the CLI say, priced right (cached reads, cache writes, reasoning)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
from aiohttp import web
from openai import OpenAI

from tests.fakes import anthropic_server, gemini_server
from tests.fakes.openai_server import Script, State
from tests.harness import (
    ADMIN_KEY,
    OTHER_TENANT_KEY,
    TENANT_KEY,
    BackgroundLoop,
    Gateway,
    Server,
    base_config,
    start_app,
)
from tests.providers_matrix import make_fake

PRICES = {
    "gpt-test-upstream": {"input": 1.0, "cached_input": 0.1, "output": 2.0},
    "claude-sonnet-4-5": {"input": 3.0, "cached_input": 0.3, "cache_write": 3.75, "output": 15.0},
    "gemini-2.5-flash": {"input": 0.3, "cached_input": 0.03, "output": 2.5},
}
OPENAI_USAGE = {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500,
                "prompt_tokens_details": {"cached_tokens": 400},
                "completion_tokens_details": {"reasoning_tokens": 100}}
# (600 * 1.0 + 400 * 0.1 + 500 * 2.0) / 1e6
OPENAI_COST = 0.00164


def usage_of(gateway: Gateway, key: str = TENANT_KEY, **query: str) -> dict[str, Any]:
    response = httpx.get(f"{gateway.base_url}/usage", params=query, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def priced(gateway_factory: Callable[..., Gateway], openai_upstream: Server) -> Gateway:
    return gateway_factory(base_config(openai_upstream.url, pricing={"models": PRICES}))


@pytest.mark.parametrize("stream", [False, True])
def test_openai_usage_is_metered_exactly(priced: Gateway, upstream_state: State, stream: bool) -> None:
    upstream_state.queue.append(Script(content="hello", usage=OPENAI_USAGE))
    api = OpenAI(base_url=priced.base_url, api_key=TENANT_KEY, max_retries=0)
    if stream:
        list(api.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "x"}],
                                         stream=True))
    else:
        api.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "x"}])
    totals = usage_of(priced)["totals"]
    assert (totals["requests"], totals["input_tokens"], totals["output_tokens"], totals["cached_tokens"],
            totals["reasoning_tokens"]) == (1, 1000, 500, 400, 100)
    assert totals["cost_usd"] == pytest.approx(OPENAI_COST, abs=1e-12)
    metrics = httpx.get(f"{priced.url}/metrics").text
    assert 'lockgate_tokens_total{kind="cached",model="gpt-test-upstream",tenant="acme"} 400.0' in metrics
    assert 'lockgate_cost_usd_total{model="gpt-test-upstream",tenant="acme"} 0.00164' in metrics


def test_agents_style_stream_without_include_usage_is_still_metered(priced: Gateway, upstream_state: State
                                                                    ) -> None:
    upstream_state.queue.append(Script(content="hello", usage=OPENAI_USAGE))
    httpx.post(f"{priced.base_url}/chat/completions", headers={"Authorization": f"Bearer {TENANT_KEY}"},
               json={"model": "gpt-test", "messages": [{"role": "user", "content": "x"}], "stream": True})
    assert usage_of(priced)["totals"]["input_tokens"] == 1000


def test_unknown_model_has_null_cost_never_zero(gateway_factory: Callable[..., Gateway],
                                                openai_upstream: Server, upstream_state: State) -> None:
    gateway = gateway_factory(base_config(openai_upstream.url))  # gpt-test-upstream has no price
    upstream_state.queue.append(Script(content="hello", usage=OPENAI_USAGE))
    OpenAI(base_url=gateway.base_url, api_key=TENANT_KEY).chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "x"}])
    totals = usage_of(gateway)["totals"]
    assert totals["unpriced_requests"] == 1 and totals["input_tokens"] == 1000
    assert 'lockgate_unpriced_requests_total{model="gpt-test-upstream"} 1.0' in httpx.get(
        f"{gateway.url}/metrics").text


# Anthropic: input 100 + cache read 300 + cache write 200; output 50.
ANTHROPIC_USAGE = {"input_tokens": 100, "cache_read_input_tokens": 300, "cache_creation_input_tokens": 200,
                   "output_tokens": 50}
ANTHROPIC_COST = (100 * 3.0 + 300 * 0.3 + 200 * 3.75 + 50 * 15.0) / 1e6
# Gemini: prompt 1000 of which 600 cached; 100 candidates + 50 thoughts.
GEMINI_USAGE = {"promptTokenCount": 1000, "cachedContentTokenCount": 600, "candidatesTokenCount": 100,
                "thoughtsTokenCount": 50, "totalTokenCount": 1150}
GEMINI_COST = (400 * 0.3 + 600 * 0.03 + 150 * 2.5) / 1e6


def script(kind: str, app: Any) -> None:
    if kind == "anthropic":
        app[anthropic_server.STATE].queue.append(anthropic_server.Script(message={
            "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn", "usage": ANTHROPIC_USAGE}))
    else:
        app[gemini_server.STATE].queue.append(gemini_server.Script.reply({"text": "hi"}, usage=GEMINI_USAGE))


@pytest.fixture(params=["anthropic", "gemini"])
def translated(request: pytest.FixtureRequest, bg: BackgroundLoop,
               gateway_factory: Callable[..., Gateway]) -> Iterator[tuple[str, Any, Gateway]]:
    fake = make_fake(request.param)
    server = bg.run(start_app(fake.app))
    config = base_config("http://127.0.0.1:9", pricing={"models": PRICES})
    config["providers"] = {"upstream": fake.provider_config(server.url)}
    config["models"] = {"gpt-test": {"targets": [{"provider": "upstream", "model": fake.model}]}}
    yield request.param, fake.app, gateway_factory(config)
    bg.run(server.runner.cleanup())


@pytest.mark.parametrize("stream", [False, True])
def test_translated_provider_usage_is_metered_exactly(translated: tuple[str, Any, Gateway], stream: bool) -> None:
    kind, app, gateway = translated
    script(kind, app)
    api = OpenAI(base_url=gateway.base_url, api_key=TENANT_KEY, max_retries=0)
    if stream:
        chunks = list(api.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "x"}],
                                                  stream=True, stream_options={"include_usage": True}))
        usage = chunks[-1].usage
    else:
        usage = api.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "x"}]).usage
    totals = usage_of(gateway)["totals"]
    if kind == "anthropic":
        assert usage.prompt_tokens == 600 and usage.prompt_tokens_details.cached_tokens == 300
        assert (totals["input_tokens"], totals["cached_tokens"], totals["cache_write_tokens"],
                totals["output_tokens"]) == (600, 300, 200, 50)
        assert totals["cost_usd"] == pytest.approx(ANTHROPIC_COST, abs=1e-12)
    else:
        assert usage.prompt_tokens == 1000 and usage.completion_tokens == 150
        assert (totals["input_tokens"], totals["cached_tokens"], totals["output_tokens"],
                totals["reasoning_tokens"]) == (1000, 600, 150, 50)
        assert totals["cost_usd"] == pytest.approx(GEMINI_COST, abs=1e-12)


def test_usage_groups_by_agent_and_model(priced: Gateway, upstream_state: State) -> None:
    api = OpenAI(base_url=priced.base_url, api_key=TENANT_KEY)
    for agent in ("triage", "specialist", "specialist"):
        upstream_state.queue.append(Script(content="hello", usage=OPENAI_USAGE))
        api.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "x"}],
                                    extra_headers={"X-Lockgate-Agent": agent})
    groups = {group["key"]: group for group in usage_of(priced, by="agent")["groups"]}
    assert groups["specialist"]["requests"] == 2 and groups["triage"]["requests"] == 1
    assert groups["specialist"]["cost_usd"] == pytest.approx(2 * OPENAI_COST)
    by_model = usage_of(priced, by="model")["groups"]
    assert [group["key"] for group in by_model] == ["gpt-test-upstream"]
    assert by_model[0]["latency_ms"]["p50"] is not None


def test_usage_endpoints_are_isolated_by_tenant(priced: Gateway, upstream_state: State) -> None:
    OpenAI(base_url=priced.base_url, api_key=TENANT_KEY).chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "x"}])
    mine = usage_of(priced)
    theirs = usage_of(priced, OTHER_TENANT_KEY)
    assert mine["tenant"] == "acme" and mine["totals"]["requests"] == 1
    assert mine["by"] == "model" and [group["key"] for group in mine["groups"]] == ["gpt-test-upstream"]
    assert theirs["tenant"] == "globex" and theirs["totals"]["requests"] == 0
    # A tenant cannot ask for another tenant's usage: the query parameter is ignored on /v1/usage.
    assert usage_of(priced, OTHER_TENANT_KEY, tenant="acme")["totals"]["requests"] == 0
    admin = f"{priced.url}/admin/usage"
    assert httpx.get(admin, headers={"Authorization": f"Bearer {TENANT_KEY}"}).status_code == 403
    assert httpx.get(admin).status_code == 401
    everyone = httpx.get(admin, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, params={"by": "tenant"}).json()
    assert everyone["tenant"] is None and everyone["totals"]["requests"] == 1
    acme = httpx.get(admin, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, params={"tenant": "acme"}).json()
    assert acme["totals"]["requests"] == 1 and acme["by"] == "model"
    ungrouped = httpx.get(admin, headers={"Authorization": f"Bearer {ADMIN_KEY}"}).json()
    assert ungrouped["by"] == "tenant" and [group["key"] for group in ungrouped["groups"]] == ["acme"]
    bad = httpx.get(f"{priced.base_url}/usage", params={"since": "yesterday"},
                    headers={"Authorization": f"Bearer {TENANT_KEY}"})
    assert bad.status_code == 400 and "since" in bad.json()["error"]["message"]


def test_usage_cli_prints_the_same_figures(priced: Gateway, upstream_state: State) -> None:
    upstream_state.queue.append(Script(content="hello", usage=OPENAI_USAGE))
    OpenAI(base_url=priced.base_url, api_key=TENANT_KEY).chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "x"}])
    api_totals = usage_of(priced)["totals"]
    result = subprocess.run([sys.executable, "-m", "gateway", "usage", "--config", str(priced.config_path),
                             "--tenant", "acme", "--by", "model", "--json"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["totals"] == api_totals
    table = subprocess.run([sys.executable, "-m", "gateway", "usage", "--config", str(priced.config_path)],
                           capture_output=True, text=True, timeout=60)
    assert "acme" in table.stdout  # one row per tenant by default
    assert "0.0016" in table.stdout


def _failing_responses_stream() -> web.Application:
    """An upstream whose Responses stream starts, then ends with `response.failed` carrying usage."""
    usage = {"input_tokens": 50_000, "output_tokens": 20_000, "total_tokens": 70_000,
             "output_tokens_details": {"reasoning_tokens": 19_990}}
    base = {"id": "resp_1", "object": "response", "created_at": 1, "model": "gpt-test-upstream", "output": []}
    events = [
        {"type": "response.created", "sequence_number": 0, "response": {**base, "status": "in_progress"}},
        {"type": "response.output_text.delta", "sequence_number": 1, "item_id": "msg_1", "output_index": 0,
         "content_index": 0, "delta": "Hel"},
        {"type": "response.failed", "sequence_number": 2, "response": {
            **base, "status": "failed", "usage": usage,
            "error": {"code": "server_error", "message": "The model failed midway."}}},
    ]

    async def responses(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for event in events:
            await response.write(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode())
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/v1/responses", responses)
    return app


def test_usage_of_a_failed_responses_stream_is_metered(gateway_factory: Callable[..., Gateway],
                                                       bg: BackgroundLoop) -> None:
    upstream = bg.run(start_app(_failing_responses_stream()))
    try:
        gateway = gateway_factory(base_config(upstream.url, pricing={"models": PRICES}))
        with pytest.raises(openai.APIError):
            for _ in OpenAI(base_url=gateway.base_url, api_key=TENANT_KEY, max_retries=0).responses.create(
                    model="gpt-test", input="think hard", stream=True):
                pass
        totals = usage_of(gateway)["totals"]
    finally:
        bg.run(upstream.runner.cleanup())
    assert totals["input_tokens"] == 50_000 and totals["output_tokens"] == 20_000
    assert totals["cost_usd"] == pytest.approx((50_000 * 1.0 + 20_000 * 2.0) / 1e6)


def _latest_row(gateway: Gateway) -> dict[str, Any] | None:
    rows = httpx.get(f"{gateway.url}/admin/requests", headers={"Authorization": f"Bearer {ADMIN_KEY}"}).json()["data"]
    return rows[0] if rows else None


def test_a_client_that_leaves_before_the_answer_is_metered_as_499(priced: Gateway, upstream_state: State) -> None:
    upstream_state.queue.append(Script(content="late", usage=OPENAI_USAGE, delay_s=3))
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{priced.base_url}/chat/completions", timeout=0.5,
                   json={"model": "gpt-test", "messages": [{"role": "user", "content": "count me " * 200}]},
                   headers={"Authorization": f"Bearer {TENANT_KEY}"})
    deadline = time.monotonic() + 5
    while not (row := _latest_row(priced)) and time.monotonic() < deadline:
        time.sleep(0.05)
    # The prompt reached the upstream, which may bill it: an estimated row, not a free 200.
    assert row is not None and row["status"] == 499
    assert row["estimated"] and row["input_tokens"] > 400 and row["output_tokens"] == 0
    assert row["cost_usd"] > 0
    # The half second went on waiting for the upstream, not on the gateway's own work.
    assert row["upstream_ms"] >= 400 and row["overhead_ms"] < 200
