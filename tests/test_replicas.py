"""Two gateway processes sharing a real PostgreSQL and a real Redis: one budget, one rate
limit, one approvals queue, one ledger, whichever replica a request lands on."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import openai
from openai import AsyncOpenAI

from tests.fakes.openai_server import Script, State
from tests.harness import ADMIN_KEY, TENANT_KEY, Server
from tests.policy_setup import policy_config
from tests.processes import GatewayProcess

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
TENANT = {"Authorization": f"Bearer {TENANT_KEY}"}


def replicas(process_factory: Any, upstream: Server, postgres_url: str, redis_url: str, tmp_path: Path,
             **tenant: Any) -> tuple[GatewayProcess, GatewayProcess]:
    def config() -> dict[str, Any]:
        result = policy_config(upstream.url, tmp_path)
        result["storage"] = {"url": postgres_url, "redis_url": redis_url}
        result["pricing"] = {"models": {"gpt-test-upstream": {"input": 1.0, "output": 1.0}}}
        result["tenants"]["acme"].update(tenant)
        return result
    return process_factory(config(), name="a"), process_factory(config(), name="b")


def chat(replica: GatewayProcess, content: str = "hi", **extra: Any) -> httpx.Response:
    return httpx.post(f"{replica.url}/v1/chat/completions", headers=TENANT, timeout=30,
                      json={"model": "gpt-test", "messages": [{"role": "user", "content": content}], **extra})


def test_rate_limit_and_ledger_are_shared(process_factory: Any, openai_upstream: Server, postgres_url: str,
                                          redis_db: str, tmp_path: Path) -> None:
    a, b = replicas(process_factory, openai_upstream, postgres_url, redis_db, tmp_path, limits={"rpm": 4})
    statuses = [chat(replica).status_code for replica in (a, b, a, b, a, b)]
    assert statuses == [200, 200, 200, 200, 429, 429]
    # Either replica reports every request: the ledger is in PostgreSQL (each replica writes its
    # rows in batches, so another replica's newest rows show up within a fraction of a second).
    for replica in (a, b):
        deadline = time.monotonic() + 5
        while (requests := httpx.get(f"{replica.url}/v1/usage", headers=TENANT).json()["totals"]["requests"]) < 6 \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        assert requests == 6


def test_budget_holds_across_replicas(process_factory: Any, openai_upstream: Server, upstream_state: State,
                                      postgres_url: str, redis_db: str, tmp_path: Path) -> None:
    a, b = replicas(process_factory, openai_upstream, postgres_url, redis_db, tmp_path,
                    budget={"usd_per_day": 0.1005})
    usage = {"prompt_tokens": 10, "completion_tokens": 10_000, "total_tokens": 10_010}
    upstream_state.queue += [Script(content="ok", usage=usage, delay_s=0.3) for _ in range(40)]

    async def burst(replica: GatewayProcess) -> list[Any]:
        api = AsyncOpenAI(base_url=f"{replica.url}/v1", api_key=TENANT_KEY, max_retries=0, timeout=60)

        async def one() -> Any:
            try:
                return await api.chat.completions.create(model="gpt-test", max_tokens=10_000,
                                                         messages=[{"role": "user", "content": "go"}])
            except openai.APIStatusError as exc:
                return exc
        try:
            return await asyncio.gather(*(one() for _ in range(20)))
        finally:
            await api.close()

    async def both() -> list[Any]:
        halves = await asyncio.gather(burst(a), burst(b))
        return [result for half in halves for result in half]

    results = asyncio.run(both())
    assert sum(not isinstance(result, Exception) for result in results) == 10
    assert len(upstream_state.requests) == 10


def test_approval_created_on_one_replica_is_decided_on_the_other(process_factory: Any, openai_upstream: Server,
                                                                 upstream_state: State, postgres_url: str,
                                                                 redis_db: str, tmp_path: Path) -> None:
    a, b = replicas(process_factory, openai_upstream, postgres_url, redis_db, tmp_path)
    upstream_state.queue.append(Script(content="released"))
    box: dict[str, httpx.Response] = {}
    thread = threading.Thread(target=lambda: box.update(response=chat(a, "reset my password")))
    thread.start()
    deadline = time.monotonic() + 10
    pending: list[dict[str, Any]] = []
    while not pending and time.monotonic() < deadline:
        pending = httpx.get(f"{b.url}/admin/approvals", params={"status": "pending"}, headers=ADMIN).json()["data"]
        time.sleep(0.1)
    assert pending, "the approval made on replica a is not visible on replica b"
    decided = httpx.post(f"{b.url}/admin/approvals/{pending[0]['id']}/approve", headers=ADMIN)
    assert decided.status_code == 200
    thread.join(30)
    assert box["response"].status_code == 200
    assert box["response"].json()["choices"][0]["message"]["content"] == "released"


def test_deferred_approval_redeemed_on_the_other_replica(process_factory: Any, openai_upstream: Server,
                                                         upstream_state: State, postgres_url: str, redis_db: str,
                                                         tmp_path: Path) -> None:
    a, b = replicas(process_factory, openai_upstream, postgres_url, redis_db, tmp_path)
    refused = chat(a, "export everything please")
    approval_id = refused.json()["error"]["approval_id"]
    httpx.post(f"{b.url}/admin/approvals/{approval_id}/approve", headers=ADMIN)
    upstream_state.queue.append(Script(content="exported"))
    retry = {**TENANT, "X-Lockgate-Approval": approval_id}
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": "export everything please"}]}
    assert httpx.post(f"{b.url}/v1/chat/completions", headers=retry, json=body, timeout=30).status_code == 200
    again = httpx.post(f"{a.url}/v1/chat/completions", headers=retry, json=body, timeout=30)
    assert again.status_code == 403  # used once, on any replica


def test_a_decision_is_announced_to_the_waiting_replica(gateway_factory: Any, openai_upstream: Server,
                                                        upstream_state: State, redis_db: str, tmp_path: Path,
                                                        monkeypatch: Any) -> None:
    """With Redis, a hold is released by the announcement, not by re-reading the store."""
    from gateway import approvals

    monkeypatch.setattr(approvals, "POLL_S", 60.0)  # polling alone would keep the hold for a minute

    def config() -> dict[str, Any]:
        result = policy_config(openai_upstream.url, tmp_path)
        result["storage"] = {"url": f"sqlite:///{tmp_path / 'shared.db'}", "redis_url": redis_db}
        return result

    configs = config(), config()
    policy = tmp_path / "policies" / "default.yaml"  # hold the sensitive input for a minute, not 3 s
    policy.write_text(policy.read_text().replace("timeout_s: 3", "timeout_s: 60"))
    waiting, deciding = gateway_factory(configs[0], name="waiting"), gateway_factory(configs[1], name="deciding")
    upstream_state.queue.append(Script(content="released"))
    box: dict[str, httpx.Response] = {}
    thread = threading.Thread(target=lambda: box.update(response=httpx.post(
        f"{waiting.base_url}/chat/completions", headers=TENANT, timeout=30,
        json={"model": "gpt-test", "messages": [{"role": "user", "content": "my password"}]})))
    thread.start()
    deadline = time.monotonic() + 10
    pending: list[dict[str, Any]] = []
    while not pending and time.monotonic() < deadline:
        pending = httpx.get(f"{deciding.url}/admin/approvals", params={"status": "pending"},
                            headers=ADMIN).json()["data"]
        time.sleep(0.05)
    httpx.post(f"{deciding.url}/admin/approvals/{pending[0]['id']}/approve", headers=ADMIN)
    thread.join(15)
    assert not thread.is_alive(), "the hold was not released by the announcement"
    assert box["response"].status_code == 200
