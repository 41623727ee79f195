"""The dashboard tests' gateway and traffic: a config with approval holds, prices and budgets,
real requests through the gateway with the OpenAI SDK, and a backdated ledger for the charts."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from gateway.store import LedgerRow
from tests.fakes.openai_server import Script, State
from tests.harness import ADMIN_KEY, OTHER_TENANT_KEY, TENANT_KEY, BackgroundLoop, Gateway, base_config, in_thread

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
HOSTILE = '<img src=x onerror="window.__pwned=1">'
POLICY = """\
policy: default
rules:
  - name: database-writes
    stage: tool_call
    when: 'tool_call.name == "database_write"'
    action: require_approval
    approval: {mode: hold, timeout_s: 120, on_timeout: deny}
  - name: sensitive-input
    when: 'user_input.contains("password")'
    action: require_approval
    approval: {mode: hold, timeout_s: 120, on_timeout: deny}
"""
HI = [{"role": "user", "content": "hi"}]
DATABASE_WRITE = {"type": "function", "function": {"name": "database_write", "parameters": {
    "type": "object", "properties": {"table": {"type": "string"}}}}}


def dashboard_config(upstream_url: str, directory: Path) -> dict[str, Any]:
    """Two tenants (acme with a budget and limits), two priced models, and POLICY for everyone."""
    (directory / "policies").mkdir(parents=True, exist_ok=True)
    (directory / "policies" / "default.yaml").write_text(POLICY)
    config = base_config(upstream_url, policies_dir=str(directory / "policies"),
                         pricing={"models": {"gpt-test-upstream": {"input": 2.5, "output": 10.0},
                                             "gpt-mini-upstream": {"input": 0.25, "output": 2.0}}})
    config["models"]["gpt-mini"] = {"targets": [{"provider": "upstream", "model": "gpt-mini-upstream"}]}
    config["tenants"]["acme"].update(budget={"usd_per_day": 5, "usd_per_month": 100},
                                     limits={"rpm": 600, "tpm": 200000, "max_concurrent": 20})
    return config


def admin_get(gateway: Gateway, path: str, **params: Any) -> Any:
    response = httpx.get(f"{gateway.url}{path}", params=params, headers=ADMIN)
    assert response.status_code == 200, response.text
    return response.json()


def wait_for_pending(gateway: Gateway, timeout_s: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if waiting := admin_get(gateway, "/admin/approvals", status="pending")["data"]:
            return waiting[0]
        time.sleep(0.05)
    raise AssertionError("no approval became pending")


def approved_through_the_api(gateway: Gateway) -> None:
    """A request held at the request stage, approved by an admin: its ledger row names the rule."""
    thread, box = in_thread(lambda: client(gateway, agent="ops").chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "rotate the password"}]))
    httpx.post(f"{gateway.url}/admin/approvals/{wait_for_pending(gateway)['id']}/approve", headers=ADMIN)
    thread.join(30)
    assert "result" in box, box


def held_tool_call(gateway: Gateway, upstream: State, agent: str, arguments: dict[str, Any]
                   ) -> tuple[threading.Thread, dict[str, Any]]:
    """A chat call whose answer is a `database_write` call: the gateway holds it for approval."""
    upstream.queue.append(Script(tool_calls=[{"name": "database_write", "arguments": arguments}]))
    return in_thread(lambda: client(gateway, agent=agent).chat.completions.create(
        model="gpt-test", tools=[DATABASE_WRITE], messages=[{"role": "user", "content": "write it"}]))


def client(gateway: Gateway, key: str = TENANT_KEY, agent: str | None = None) -> OpenAI:
    return OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0, timeout=30,
                  default_headers={"X-Lockgate-Agent": agent} if agent else None)


def usage(prompt: int, completion: int, cached: int = 0) -> dict[str, Any]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached}}


def make_traffic(gateway: Gateway, upstream: State) -> None:
    """Requests from two tenants, three agents (one named like markup), two models, a stream and an error."""
    for agent, model, tokens in (("planner", "gpt-test", (5200, 640)), ("planner", "gpt-mini", (12000, 900)),
                                 ("writer", "gpt-test", (830, 2100)), (HOSTILE, "gpt-mini", (40, 12))):
        upstream.queue.append(Script(content=f"hello {agent}", usage=usage(*tokens)))
        client(gateway, agent=agent).chat.completions.create(
            model=model, messages=[{"role": "user", "content": f"hello from {agent}"}])
    upstream.queue.append(Script(content="cached answer", usage=usage(9000, 400, cached=6000)))
    stream = client(gateway, agent="writer").chat.completions.create(
        model="gpt-test", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "a long prompt " * 40}])
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices) == "cached answer"
    upstream.queue.append(Script(status=400))  # a client error upstream: not retried, metered as failed
    with pytest.raises(openai.APIStatusError):
        client(gateway, agent="writer").chat.completions.create(model="gpt-test", messages=HI)
    for _ in range(2):
        client(gateway, OTHER_TENANT_KEY).chat.completions.create(model="gpt-test", messages=HI)


def seed_history(bg: BackgroundLoop, gateway: Gateway) -> None:
    """Rows over the last 29 days, written to the gateway's store as its ledger writer would, so the
    charts have many buckets: every hour of the last day, then a few requests each day, some failed."""
    now = time.time()
    moments = [now - 600 - hour * 3600 - minute * 60 for hour in range(24) for minute in range(hour * 5 % 7)]
    moments += [now - day * 86400 - minute * 600 for day in range(1, 29) for minute in range(2 + day * 3 % 5)]
    rows = []
    for number, ts in enumerate(moments):
        failed = number % 11 == 0
        tokens_in, tokens_out = (0, 0) if failed else (400 + number * 37 % 900, 60 + number * 13 % 300)
        rows.append(LedgerRow(ts=ts, request_id=f"req_seed_{number}", tenant=("acme", "acme", "globex")[number % 3],
                              agent=("planner", "writer")[number % 2], alias="gpt-test", provider="upstream",
                              model="gpt-test-upstream", api="chat", stream=False, status=502 if failed else 200,
                              error_type="upstream_error" if failed else None, input_tokens=tokens_in,
                              output_tokens=tokens_out, cost_usd=(tokens_in * 2.5 + tokens_out * 10) / 1e6,
                              latency_ms=200 + number * 53 % 700, attempts=1))
    bg.run(gateway.runtime.store.write_ledger(rows))
