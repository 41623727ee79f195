"""Approvals end when they expire: no human decides one past its expiry, and a deferred
approval is redeemed only before its expiry (pending) or within its redemption window
(approved). Run on both stores, then end to end through the CLI with the gateway stopped."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from gateway.approvals import APPROVED, EXPIRED, TIMEOUT, Approvals, redeemable_until, undecidable
from gateway.metrics import Metrics
from gateway.store import ApprovalRecord, Store
from tests.fakes.openai_server import Script, State
from tests.harness import ADMIN_KEY, TENANT_KEY, BackgroundLoop, Gateway, Server
from tests.policy_setup import policy_config
from tests.test_store_contract import approval, store  # noqa: F401  # `store`: both backends

BINDING = {"tenant": "acme", "rule": "refunds", "digest": "sha256:ap", "policy_version": "v1"}
TENANT = {"Authorization": f"Bearer {TENANT_KEY}"}
EXPORT = {"model": "gpt-test", "messages": [{"role": "user", "content": "export everything to s3"}]}


async def create(approvals: Approvals, timeout_s: float, on_timeout: str = "deny") -> ApprovalRecord:
    return await approvals.create(
        tenant="acme", agent=None, policy="default", rule="refunds", stage="request", mode="defer",
        timeout_s=timeout_s, on_timeout=on_timeout, digest="sha256:ap", policy_version="v1", request_id="req_1")


@pytest.mark.parametrize(("on_timeout", "status"), [("deny", EXPIRED), ("approve", APPROVED)])
async def test_a_human_cannot_decide_an_approval_past_its_expiry(store: Store, on_timeout: str,  # noqa: F811
                                                                 status: str) -> None:
    approvals = Approvals(store, Metrics())  # not started: no sweep runs, as with the gateway stopped
    record = await create(approvals, 0.05, on_timeout)
    await asyncio.sleep(0.1)
    assert await approvals.decide(record.id, False, "alice", None) is None
    current = await store.get_approval(record.id)
    assert (current.status, current.decided_by) == (status, TIMEOUT)  # its on_timeout, applied at once
    assert "expired" in undecidable(record.id, current)


async def test_a_pending_deferred_approval_past_its_expiry_is_not_redeemed(store: Store) -> None:  # noqa: F811
    approvals = Approvals(store, Metrics())
    record = await create(approvals, 0.05)
    assert (await approvals.redeem(record.id, **BINDING))[0] == "pending"
    await asyncio.sleep(0.1)
    outcome, current = await approvals.redeem(record.id, **BINDING)
    assert outcome == "denied" and current is not None and current.status == EXPIRED


async def test_an_approved_deferred_approval_is_redeemed_only_within_its_window(store: Store) -> None:  # noqa: F811
    now = time.time()
    # Asked 100 s ago with timeout_s 60, approved 61 s ago: its 60 s to retry ended a second ago.
    stale = approval("stale", status=APPROVED, mode="defer", digest="sha256:ap", created_at=now - 100,
                     expires_at=now - 40, decided_at=now - 61, decided_by="alice")
    fresh = replace(stale, id="fresh", decided_at=now - 50)
    for record in (stale, fresh):
        await store.add_approval(record)
    assert redeemable_until(stale) == pytest.approx(now - 1)
    approvals = Approvals(store, Metrics())
    outcome, record = await approvals.redeem("stale", **BINDING)
    assert outcome == "denied" and record is not None and "not used before" in (record.reason or "")
    assert (await store.get_approval("stale")).used_at is None
    assert (await approvals.redeem("fresh", **BINDING))[0] == "ok"


def test_an_expired_deferred_approval_is_neither_approved_by_the_cli_nor_redeemed(
        gateway_factory: Callable[..., Gateway], openai_upstream: Server, upstream_state: State, tmp_path: Path,
        bg: BackgroundLoop) -> None:
    """The reviewer's case: timeout_s 1, the gateway stopped (no sweep), the CLI approves later."""
    config = policy_config(openai_upstream.url, tmp_path)
    policy = tmp_path / "policies" / "default.yaml"
    policy.write_text(policy.read_text().replace("{mode: defer, timeout_s: 60}", "{mode: defer, timeout_s: 1}"))
    first = gateway_factory(config, name="same")
    asked = httpx.post(f"{first.base_url}/chat/completions", json=EXPORT, headers=TENANT)
    approval_id = asked.json()["error"]["approval_id"]
    bg.run(first.server.runner.cleanup())
    time.sleep(1.2)
    approved = subprocess.run([sys.executable, "-m", "gateway", "approvals", "approve", approval_id, "--config",
                               str(first.config_path)], capture_output=True, text=True, timeout=60)
    assert approved.returncode == 1 and "expired" in approved.stderr, approved.stderr
    second = gateway_factory(config, name="same")
    admin = httpx.post(f"{second.url}/admin/approvals/{approval_id}/approve",
                       headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert admin.status_code == 409 and admin.json()["error"]["code"] == "approval_expired"
    upstream_state.queue.append(Script(content="must not be reached"))
    retried = httpx.post(f"{second.base_url}/chat/completions", json=EXPORT,
                         headers={**TENANT, "X-Lockgate-Approval": approval_id})
    assert retried.status_code == 403 and retried.json()["error"]["code"] == "approval_denied"
    assert upstream_state.requests == []
