"""What the admin API shows of the running config, and what a reload refuses to run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import yaml

from tests.harness import ADMIN_KEY, OTHER_TENANT_KEY, TENANT_KEY, Gateway, Server, sha
from tests.policy_setup import policy_config

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture
def gateway(gateway_factory: Callable[..., Gateway], openai_upstream: Server, tmp_path: Path) -> Gateway:
    config = policy_config(openai_upstream.url, tmp_path)
    config["tenants"]["acme"]["policies"] = ["default", "whitelist", "default"]  # `default` runs anyway
    return gateway_factory(config)


def tenant_of(gateway: Gateway, key: str) -> str:
    usage = httpx.get(f"{gateway.base_url}/usage", headers={"Authorization": f"Bearer {key}"})
    assert usage.status_code == 200, usage.text
    return str(usage.json()["tenant"])


def test_tenants_lists_each_policy_once_in_the_order_it_runs(gateway: Gateway) -> None:
    listed = httpx.get(f"{gateway.url}/admin/tenants", headers=ADMIN).json()["data"]
    tenants = {tenant["name"]: tenant for tenant in listed}
    assert tenants["acme"]["policies"] == ["default", "whitelist"]
    assert tenants["globex"]["policies"] == ["default", "strip"]


@pytest.mark.parametrize("where", ["tenant", "admin"])
def test_a_reload_that_gives_one_key_two_identities_keeps_the_running_config(gateway: Gateway, where: str) -> None:
    config = yaml.safe_load(gateway.config_path.read_text())
    if where == "tenant":
        config["tenants"]["globex"]["keys"].append(sha(TENANT_KEY))  # listed after acme: it would win
    else:
        config["admin_keys"].append(sha(TENANT_KEY))
    gateway.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    answer = httpx.post(f"{gateway.url}/admin/reload", headers=ADMIN)
    assert answer.status_code == 422
    assert any("the same key is already" in error["message"] for error in answer.json()["errors"])
    assert (tenant_of(gateway, TENANT_KEY), tenant_of(gateway, OTHER_TENANT_KEY)) == ("acme", "globex")
