"""Operational paths: Azure OpenAI, approval webhooks, estimated usage for cut streams,
and SIGHUP reloads on a real process."""

from __future__ import annotations

import signal
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web
from openai import OpenAI

from tests.fakes import openai_server
from tests.fakes.openai_server import Script, State
from tests.harness import TENANT_KEY, BackgroundLoop, Gateway, Server, base_config, start_app
from tests.policy_setup import policy_config


def test_azure_openai_deployment_path_key_and_version(gateway_factory: Callable[..., Gateway],
                                                      openai_upstream: Server, upstream_state: State) -> None:
    config = base_config(openai_upstream.url)
    config["providers"]["azure"] = {"type": "azure", "base_url": f"{openai_upstream.url}/openai",
                                    "api_key": openai_server.API_KEY, "api_version": "2024-10-21"}
    config["models"]["gpt-test"] = {"targets": [{"provider": "azure", "model": "my-deployment"}]}
    gateway = gateway_factory(config)
    upstream_state.queue.append(Script(content="from azure"))
    completion = OpenAI(base_url=gateway.base_url, api_key=TENANT_KEY).chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "x"}])
    assert completion.choices[0].message.content == "from azure"
    assert upstream_state.paths[-1] == "/openai/deployments/my-deployment/chat/completions?api-version=2024-10-21"
    assert upstream_state.headers[-1]["api-key"] == openai_server.API_KEY
    assert "Authorization" not in upstream_state.headers[-1]


def test_pending_approval_is_posted_to_the_webhook(gateway_factory: Callable[..., Gateway],
                                                   openai_upstream: Server, bg: BackgroundLoop,
                                                   tmp_path: Path) -> None:
    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    receiver = bg.run(start_app(app))
    config = policy_config(openai_upstream.url, tmp_path)
    policy = tmp_path / "policies" / "default.yaml"
    policy.write_text(policy.read_text().replace(
        "approval: {mode: defer, timeout_s: 60}",
        f"approval: {{mode: defer, timeout_s: 60, notify: {{webhook: '{receiver.url}/hook'}}}}"))
    gateway = gateway_factory(config)
    refused = httpx.post(f"{gateway.base_url}/chat/completions", headers={"Authorization": f"Bearer {TENANT_KEY}"},
                         json={"model": "gpt-test", "messages": [{"role": "user", "content": "export everything"}]})
    approval_id = refused.json()["error"]["approval_id"]
    deadline = time.monotonic() + 5
    while not received and time.monotonic() < deadline:
        time.sleep(0.05)
    assert received and approval_id in received[0]["text"]  # Slack-compatible: a `text` field
    assert received[0]["approval"]["rule"] == "deferred-export"
    bg.run(receiver.runner.cleanup())


def test_a_cut_stream_is_metered_with_estimated_usage(gateway_factory: Callable[..., Gateway],
                                                      openai_upstream: Server, upstream_state: State,
                                                      tmp_path: Path) -> None:
    gateway = gateway_factory(base_config(openai_upstream.url))
    upstream_state.queue.append(Script(content="alpha beta gamma delta epsilon zeta eta theta", text_pieces=8,
                                       cut_after=6))
    body = {"model": "gpt-test", "stream": True, "messages": [{"role": "user", "content": "hello " * 40}]}
    with httpx.stream("POST", f"{gateway.base_url}/chat/completions", json=body, timeout=30,
                      headers={"Authorization": f"Bearer {TENANT_KEY}"}) as response:
        response.read()
    usage = httpx.get(f"{gateway.base_url}/usage", headers={"Authorization": f"Bearer {TENANT_KEY}"}).json()
    totals = usage["totals"]
    assert totals["estimated_requests"] == 1
    assert totals["input_tokens"] >= 40 and totals["output_tokens"] >= 3
    assert totals["errors"]["upstream_error"] == 1


def test_sighup_reloads_a_running_process(process_factory: Any, openai_upstream: Server, tmp_path: Path) -> None:
    config = policy_config(openai_upstream.url, tmp_path)
    gateway = process_factory(config)
    headers = {"Authorization": "Bearer lg-test-initech-key"}
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "function", "function": {"name": "get_weather"}}]}
    assert httpx.post(f"{gateway.url}/v1/chat/completions", headers=headers, json=body).status_code == 200
    (tmp_path / "policies" / "default.yaml").write_text(
        "policy: default\nrules:\n  - name: no-weather\n    tools: {deny: [get_weather]}\n")
    gateway.popen.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while httpx.post(f"{gateway.url}/v1/chat/completions", headers=headers, json=body).status_code != 403:
        assert time.monotonic() < deadline, "SIGHUP did not reload the policies"
        time.sleep(0.1)
    assert gateway.stop() == 0
    with sqlite3.connect(gateway.db) as db:
        assert db.execute("SELECT COUNT(*) FROM ledger").fetchone()[0] >= 2




def test_oversized_upstream_answers_are_cut_off(gateway_factory: Callable[..., Gateway], openai_upstream: Server,
                                                upstream_state: State, monkeypatch: Any) -> None:
    """Upstream output is untrusted: a JSON body or a stream event past its limit ends the attempt."""
    from providers import http, sse

    monkeypatch.setattr(http, "MAX_RESPONSE_BODY", 2000)
    monkeypatch.setattr(sse, "MAX_EVENT_BYTES", 2000)
    gateway = gateway_factory(base_config(openai_upstream.url))
    headers = {"Authorization": f"Bearer {TENANT_KEY}"}
    upstream_state.queue.append(Script(content="x" * 5000))  # not retried: it would be as large again
    response = httpx.post(f"{gateway.base_url}/chat/completions", headers=headers,
                          json={"model": "gpt-test", "messages": [{"role": "user", "content": "x"}]})
    assert response.status_code == 502 and "larger than 2000 bytes" in response.json()["error"]["message"]
    upstream_state.queue += [Script(content="y" * 5000, text_pieces=1), Script(content="y" * 5000, text_pieces=1)]
    streamed = httpx.post(f"{gateway.base_url}/chat/completions", headers=headers,
                          json={"model": "gpt-test", "stream": True, "messages": [{"role": "user", "content": "x"}]})
    assert streamed.status_code == 502, streamed.text[:3000]
    assert "exceeds 2000 bytes" in streamed.json()["error"]["message"]


def test_the_served_process_times_upstream_calls_finer_than_a_millisecond(process_factory: Any,
                                                                          openai_upstream: Server,
                                                                          upstream_state: State) -> None:
    # `lockgate serve` runs on uvloop, whose loop clock moves in whole milliseconds: timed by
    # it, every upstream call came out as a whole number of milliseconds, the overhead as
    # whatever was left of the latency.
    gateway = process_factory(base_config(openai_upstream.url))
    upstream_state.queue += [Script(content="x", delay_s=0.0105) for _ in range(4)]
    for _ in range(4):
        response = httpx.post(f"{gateway.url}/v1/chat/completions", headers={"Authorization": f"Bearer {TENANT_KEY}"},
                              json={"model": "gpt-test", "messages": [{"role": "user", "content": "x"}]}, timeout=30)
        assert response.status_code == 200
    assert gateway.stop() == 0
    with sqlite3.connect(gateway.db) as db:
        upstream = [row[0] for row in db.execute("SELECT upstream_ms FROM ledger")]
    assert len(upstream) == 4 and all(10 <= ms < 30 for ms in upstream), upstream
    assert any(abs(ms - round(ms)) > 0.01 for ms in upstream), upstream  # not all on the millisecond grid
