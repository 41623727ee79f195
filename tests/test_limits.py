"""Budgets and rate limits that hold under concurrency, in memory and in a real Redis
shared by two gateways."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import AsyncOpenAI, OpenAI

from tests.fakes import anthropic_server
from tests.fakes.openai_server import Script, State
from tests.harness import TENANT_KEY, BackgroundLoop, Gateway, Server, base_config, serving
from tests.providers_matrix import ANTHROPIC_KEY

PRICE = {"gpt-test-upstream": {"input": 1.0, "output": 1.0}}  # $1 per million tokens
OUTPUT = 10_000
# Each call reserves (estimated prompt + 10,000) tokens and costs (10 + 10,000): about $0.01.
BUDGET = 0.1005


def budget_config(upstream: Server, **tenant: Any) -> dict[str, Any]:
    config = base_config(upstream.url, pricing={"models": PRICE})
    config["tenants"]["acme"].update(tenant)
    return config


def spend(gateway: Gateway) -> float:
    return httpx.get(f"{gateway.base_url}/usage", headers={"Authorization": f"Bearer {TENANT_KEY}"},
                     params={"since": "1d"}).json()["totals"]["cost_usd"]


async def burst(gateway: Gateway, count: int) -> list[Any]:
    api = AsyncOpenAI(base_url=gateway.base_url, api_key=TENANT_KEY, max_retries=0, timeout=60)

    async def one() -> Any:
        try:
            return await api.chat.completions.create(model="gpt-test", max_tokens=OUTPUT,
                                                     messages=[{"role": "user", "content": "go"}])
        except openai.APIStatusError as exc:
            return exc

    try:
        return await asyncio.gather(*(one() for _ in range(count)))
    finally:
        await api.close()


def queue_calls(state: State, count: int, delay_s: float = 0.3) -> None:
    usage = {"prompt_tokens": 10, "completion_tokens": OUTPUT, "total_tokens": OUTPUT + 10}
    state.queue += [Script(content="ok", usage=usage, delay_s=delay_s) for _ in range(count)]


async def test_budget_holds_under_50_concurrent_requests(gateway_factory: Callable[..., Gateway],
                                                         openai_upstream: Server, upstream_state: State) -> None:
    gateway = gateway_factory(budget_config(openai_upstream, budget={"usd_per_day": BUDGET}))
    queue_calls(upstream_state, 50)
    results = await burst(gateway, 50)
    served = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, openai.RateLimitError)]
    assert len(served) == 10 and len(refused) == 40
    assert len(upstream_state.requests) == 10  # refused requests never reached the upstream
    error = refused[0]
    assert error.body["code"] == "budget_exceeded"  # type: ignore[index]
    assert "daily budget" in error.message and "resets at" in error.message
    assert 0 < int(error.response.headers["retry-after"]) <= 86400
    assert spend(gateway) == pytest.approx(10 * 0.01001)
    assert spend(gateway) <= BUDGET
    ratio = [line for line in httpx.get(f"{gateway.url}/metrics").text.splitlines()
             if line.startswith('lockgate_budget_used_ratio{period="day",tenant="acme"}')]
    assert float(ratio[0].split()[-1]) == pytest.approx(0.1001 / BUDGET)


def test_budget_survives_a_restart(gateway_factory: Callable[..., Gateway], openai_upstream: Server,
                                   upstream_state: State, bg: BackgroundLoop) -> None:
    config = budget_config(openai_upstream, budget={"usd_per_month": 0.025})
    first = gateway_factory(config, name="same")
    queue_calls(upstream_state, 2, delay_s=0)
    api = OpenAI(base_url=first.base_url, api_key=TENANT_KEY, max_retries=0)
    for _ in range(2):
        api.chat.completions.create(model="gpt-test", max_tokens=OUTPUT, messages=[{"role": "user", "content": "x"}])
    bg.run(first.server.runner.cleanup())  # a graceful stop flushes the ledger
    second = gateway_factory(config, name="same")
    with pytest.raises(openai.RateLimitError) as raised:
        OpenAI(base_url=second.base_url, api_key=TENANT_KEY, max_retries=0).chat.completions.create(
            model="gpt-test", max_tokens=OUTPUT, messages=[{"role": "user", "content": "x"}])
    assert raised.value.body["code"] == "budget_exceeded"  # type: ignore[index]
    assert "monthly budget" in raised.value.message


def test_budget_refused_by_day_and_month_waits_for_the_later_reset(
        gateway_factory: Callable[..., Gateway], openai_upstream: Server, upstream_state: State) -> None:
    gateway = gateway_factory(budget_config(openai_upstream, budget={"usd_per_day": 0.015, "usd_per_month": 0.015}))
    queue_calls(upstream_state, 1, delay_s=0)
    api = OpenAI(base_url=gateway.base_url, api_key=TENANT_KEY, max_retries=0)
    api.chat.completions.create(model="gpt-test", max_tokens=OUTPUT, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.RateLimitError) as raised:  # both budgets refuse the second call
        api.chat.completions.create(model="gpt-test", max_tokens=OUTPUT, messages=[{"role": "user", "content": "x"}])
    now = datetime.now(UTC)
    next_month = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)
    assert int(raised.value.response.headers["retry-after"]) == pytest.approx((next_month - now).total_seconds(),
                                                                              abs=3)
    assert "monthly budget" in raised.value.message


def test_requests_per_minute(gateway_factory: Callable[..., Gateway], openai_upstream: Server) -> None:
    gateway = gateway_factory(budget_config(openai_upstream, limits={"rpm": 3}))
    api = OpenAI(base_url=gateway.base_url, api_key=TENANT_KEY, max_retries=0)
    for _ in range(3):
        api.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.RateLimitError) as raised:
        api.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "x"}])
    assert raised.value.body["code"] == "rate_limit_exceeded"  # type: ignore[index]
    assert 15 <= int(raised.value.response.headers["retry-after"]) <= 21  # one request frees every 20 s


def test_tokens_per_minute_settles_with_actual_usage(gateway_factory: Callable[..., Gateway],
                                                     openai_upstream: Server, upstream_state: State) -> None:
    gateway = gateway_factory(budget_config(openai_upstream, limits={"tpm": 25_000}))
    queue_calls(upstream_state, 3, delay_s=0)
    api = OpenAI(base_url=gateway.base_url, api_key=TENANT_KEY, max_retries=0)
    api.chat.completions.create(model="gpt-test", max_tokens=OUTPUT, messages=[{"role": "user", "content": "x"}])
    api.chat.completions.create(model="gpt-test", max_tokens=OUTPUT, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.RateLimitError) as raised:  # 20,020 used, 10,000 more asked for
        api.chat.completions.create(model="gpt-test", max_tokens=OUTPUT, messages=[{"role": "user", "content": "x"}])
    assert "tokens per minute" in raised.value.message


def test_per_model_limit(gateway_factory: Callable[..., Gateway], openai_upstream: Server) -> None:
    gateway = gateway_factory(budget_config(openai_upstream, limits={"models": {"gpt-test": {"rpm": 1}}}))
    api = OpenAI(base_url=gateway.base_url, api_key=TENANT_KEY, max_retries=0)
    api.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.RateLimitError):
        api.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "x"}])
    assert api.embeddings.create(model="embed-test", input="x").data  # other aliases are not limited


def test_a_refused_request_does_not_use_up_the_tenant_rpm(gateway_factory: Callable[..., Gateway],
                                                           openai_upstream: Server) -> None:
    gateway = gateway_factory(budget_config(openai_upstream, limits={"rpm": 5, "models": {"gpt-test": {"rpm": 1}}}))
    api = OpenAI(base_url=gateway.base_url, api_key=TENANT_KEY, max_retries=0)
    api.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "x"}])
    for _ in range(5):  # refused by the model's limit, after the tenant's was counted
        with pytest.raises(openai.RateLimitError) as raised:
            api.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "x"}])
        assert "on 'gpt-test'" in raised.value.message
    assert api.embeddings.create(model="embed-test", input="x").data  # 1 of the tenant's 5 used


def test_budget_reservation_prices_the_dearest_target(gateway_factory: Callable[..., Gateway],
                                                      openai_upstream: Server, upstream_state: State) -> None:
    config = budget_config(openai_upstream, budget={"usd_per_day": 0.005})
    # A free local model first, a priced one as its backup: failover can make the call cost
    # the backup's price, so the reservation must count it.
    config["models"]["gpt-test"]["targets"].insert(0, {"provider": "upstream", "model": "local-free"})
    gateway = gateway_factory(config)
    with pytest.raises(openai.RateLimitError) as raised:
        OpenAI(base_url=gateway.base_url, api_key=TENANT_KEY, max_retries=0).chat.completions.create(
            model="gpt-test", max_tokens=OUTPUT, messages=[{"role": "user", "content": "x"}])
    assert raised.value.body["code"] == "budget_exceeded"  # type: ignore[index]
    assert upstream_state.requests == []


@pytest.fixture
def anthropic_fake(bg: BackgroundLoop) -> Iterator[Server]:
    yield from serving(bg, anthropic_server.create_app(api_key=ANTHROPIC_KEY))


async def test_budget_reserves_the_thinking_budget_an_adapter_adds(gateway_factory: Callable[..., Gateway],
                                                                  openai_upstream: Server,
                                                                  anthropic_fake: Server) -> None:
    # `reasoning_effort: high` on a Claude model with manual thinking budgets: the adapter
    # sends max_tokens 100 + 16,384, so each call may bill ~16,500 output tokens, not 100.
    config = budget_config(openai_upstream, budget={"usd_per_day": 0.30})
    config["providers"]["claude"] = {"type": "anthropic", "base_url": anthropic_fake.url, "api_key": ANTHROPIC_KEY}
    config["models"]["claude"] = {"targets": [{"provider": "claude", "model": "claude-sonnet-4-5"}]}
    config["pricing"] = {"models": {"claude-sonnet-4-5": {"input": 3.0, "output": 15.0}}}
    gateway = gateway_factory(config)
    state = anthropic_fake.runner.app[anthropic_server.STATE]
    state.queue += [anthropic_server.Script(
        message={"content": [{"type": "text", "text": "thought hard"}], "stop_reason": "end_turn",
                 "usage": {"input_tokens": 20, "output_tokens": 16_000}}, delay_s=0.3) for _ in range(5)]
    api = AsyncOpenAI(base_url=gateway.base_url, api_key=TENANT_KEY, max_retries=0, timeout=60)

    async def one() -> Any:
        try:
            return await api.chat.completions.create(model="claude", max_tokens=100, reasoning_effort="high",
                                                     messages=[{"role": "user", "content": "think"}])
        except openai.APIStatusError as exc:
            return exc

    try:
        results = await asyncio.gather(*(one() for _ in range(5)))
    finally:
        await api.close()
    assert [request["max_tokens"] for request in state.requests] == [100 + 16_384]
    # Each call reserves ~$0.25 of the $0.30: one is served, the other four are refused
    # before they can spend (a reservation of 100 output tokens let all five through: $1.20).
    assert sum(isinstance(result, openai.RateLimitError) for result in results) == 4
    assert spend(gateway) == pytest.approx(20 * 3e-6 + 16_000 * 15e-6)


def two_gateways(gateway_factory: Callable[..., Gateway], upstream: Server, redis_url: str, shared: Path,
                 **tenant: Any) -> tuple[Gateway, Gateway]:
    """Two replicas sharing Redis and, as replicas do, one ledger (a budget re-seeds from it)."""
    def config() -> dict[str, Any]:
        result = budget_config(upstream, **tenant)
        result["storage"] = {"redis_url": redis_url, "url": f"sqlite:///{shared / 'ledger.db'}"}
        return result
    return gateway_factory(config(), name="one"), gateway_factory(config(), name="two")


def test_redis_rate_limit_is_shared_by_two_gateways(gateway_factory: Callable[..., Gateway],
                                                    openai_upstream: Server, redis_db: str, tmp_path: Path) -> None:
    one, two = two_gateways(gateway_factory, openai_upstream, redis_db, tmp_path, limits={"rpm": 4})
    outcomes = []
    for gateway in (one, two, one, two, one, two):
        response = httpx.post(f"{gateway.base_url}/chat/completions",
                              headers={"Authorization": f"Bearer {TENANT_KEY}"},
                              json={"model": "gpt-test", "messages": [{"role": "user", "content": "x"}]})
        outcomes.append(response.status_code)
    assert outcomes == [200, 200, 200, 200, 429, 429]


async def test_redis_budget_holds_across_two_gateways(gateway_factory: Callable[..., Gateway],
                                                      openai_upstream: Server, upstream_state: State,
                                                      redis_db: str, tmp_path: Path) -> None:
    one, two = two_gateways(gateway_factory, openai_upstream, redis_db, tmp_path,
                            budget={"usd_per_day": BUDGET})
    queue_calls(upstream_state, 40)
    results = await asyncio.gather(burst(one, 20), burst(two, 20))
    served = [r for half in results for r in half if not isinstance(r, Exception)]
    assert len(served) == 10
    assert len(upstream_state.requests) == 10


def test_limits_store_down_is_a_503_never_a_500(gateway_factory: Callable[..., Gateway],
                                                openai_upstream: Server) -> None:
    config = budget_config(openai_upstream, limits={"rpm": 100})
    config["storage"] = {"redis_url": "redis://127.0.0.1:9/0"}  # nothing listens there
    gateway = gateway_factory(config)
    with pytest.raises(openai.APIStatusError) as raised:
        OpenAI(base_url=gateway.base_url, api_key=TENANT_KEY, max_retries=0).chat.completions.create(
            model="gpt-test", messages=[{"role": "user", "content": "x"}])
    assert raised.value.status_code == 503 and raised.value.body["code"] == "limits_unavailable"  # type: ignore
    assert "retry-after" in raised.value.response.headers
    errors_line = [line for line in httpx.get(f"{gateway.url}/metrics").text.splitlines()
                   if line.startswith("lockgate_requests_total{") and 'tenant="acme"' in line]
    assert errors_line and all('status="503"' in line for line in errors_line)  # metered as what it was


def test_key_store_down_is_a_503_for_an_unknown_key(gateway_factory: Callable[..., Gateway],
                                                    openai_upstream: Server, bg: BackgroundLoop) -> None:
    gateway = gateway_factory(budget_config(openai_upstream))
    bg.run(gateway.runtime.store.close())  # the store goes away (a database outage)
    response = httpx.get(f"{gateway.base_url}/models", headers={"Authorization": "Bearer lg-minted-elsewhere"})
    assert response.status_code == 503 and response.json()["error"]["code"] == "store_unavailable"
    known = httpx.get(f"{gateway.base_url}/models", headers={"Authorization": f"Bearer {TENANT_KEY}"})
    assert known.status_code == 200  # keys already known still work


async def test_redis_budget_survives_a_redis_restart(gateway_factory: Callable[..., Gateway], openai_upstream: Server,
                                                     upstream_state: State, redis_db: str, tmp_path: Path,
                                                     bg: BackgroundLoop) -> None:
    import redis

    one, two = two_gateways(gateway_factory, openai_upstream, redis_db, tmp_path,
                            budget={"usd_per_day": BUDGET})
    queue_calls(upstream_state, 40)
    assert len([r for r in await burst(one, 5) if not isinstance(r, Exception)]) == 5
    # The spend is in the shared ledger by the time Redis goes away (rows a replica has not
    # flushed yet, a second's worth, are the window a restart can miss).
    bg.run(one.runtime.ledger_settled())
    client = redis.Redis.from_url(redis_db)
    client.flushdb()  # Redis restarted without persistence: every counter is gone
    client.close()
    results = await asyncio.gather(burst(one, 10), burst(two, 10))
    served = [r for half in results for r in half if not isinstance(r, Exception)]
    assert len(served) == 5  # the ledger's $0.05 still counts: 10 in all, as before the restart
    assert len(upstream_state.requests) == 10


def test_budget_reserves_every_choice_a_request_asks_for(gateway_factory: Callable[..., Gateway],
                                                         openai_upstream: Server, upstream_state: State) -> None:
    # n: 8 with max_tokens 10,000 may bill 80,000 output tokens ($0.08 here), not 10,000.
    gateway = gateway_factory(budget_config(openai_upstream, budget={"usd_per_day": 0.05}))
    with pytest.raises(openai.RateLimitError) as raised:
        OpenAI(base_url=gateway.base_url, api_key=TENANT_KEY, max_retries=0).chat.completions.create(
            model="gpt-test", max_tokens=OUTPUT, n=8, messages=[{"role": "user", "content": "x"}])
    assert raised.value.body["code"] == "budget_exceeded"  # type: ignore[index]
    assert upstream_state.requests == []
