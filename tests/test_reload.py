"""Hot reload: a valid change is picked up (admin call, file watcher, SIGHUP path), a
broken file keeps the running version and says why."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import yaml
from openai import OpenAI

from tests.fakes.openai_server import Script, State
from tests.harness import ADMIN_KEY, TENANT_KEY, BackgroundLoop, Gateway, Server
from tests.policy_setup import THIRD_TENANT_KEY, policy_config

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
BLOCK_WEATHER = """\
policy: default
rules:
  - name: no-weather
    tools: {deny: [get_weather]}
"""


@pytest.fixture
def gateway(gateway_factory: Callable[..., Gateway], openai_upstream: Server, tmp_path: Path) -> Gateway:
    return gateway_factory(policy_config(openai_upstream.url, tmp_path))


def declare_weather(gateway: Gateway) -> int:
    return httpx.post(f"{gateway.base_url}/chat/completions", headers={"Authorization": f"Bearer {THIRD_TENANT_KEY}"},
                      json={"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}],
                            "tools": [{"type": "function", "function": {"name": "get_weather"}}]}).status_code


def reload(gateway: Gateway) -> httpx.Response:
    return httpx.post(f"{gateway.url}/admin/reload", headers=ADMIN)


def test_reload_applies_a_valid_change(gateway: Gateway, tmp_path: Path, upstream_state: State) -> None:
    assert declare_weather(gateway) == 200
    before = reload(gateway).json()["version"]
    (tmp_path / "policies" / "default.yaml").write_text(BLOCK_WEATHER)
    answer = reload(gateway)
    assert answer.status_code == 200 and answer.json()["status"] == "ok"
    assert answer.json()["version"] != before
    assert declare_weather(gateway) == 403


def test_broken_policy_keeps_the_running_version(gateway: Gateway, tmp_path: Path) -> None:
    version = reload(gateway).json()["version"]
    broken = BLOCK_WEATHER + "  - name: bad\n    action: deny\n    when: 'tool_call.('\n"
    (tmp_path / "policies" / "default.yaml").write_text(broken)
    answer = reload(gateway)
    assert answer.status_code == 422
    body = answer.json()
    assert body["status"] == "error" and body["version"] == version
    error = body["errors"][0]
    assert error["file"].endswith("default.yaml") and error["line"] == 7 and error["rule"] == "bad"
    assert declare_weather(gateway) == 200  # still the old policy
    assert "lockgate_config_reload_failures_total 1.0" in httpx.get(f"{gateway.url}/metrics").text


def test_broken_config_keeps_the_running_version(gateway: Gateway) -> None:
    text = gateway.config_path.read_text()
    gateway.config_path.write_text(text.replace("models:", "modles:", 1))
    answer = reload(gateway)
    assert answer.status_code == 422
    assert any("modles" in error["message"] for error in answer.json()["errors"])
    OpenAI(base_url=gateway.base_url, api_key=TENANT_KEY).models.list()  # still serving


def test_file_watcher_reloads_on_change(gateway: Gateway, tmp_path: Path) -> None:
    assert declare_weather(gateway) == 200
    (tmp_path / "policies" / "default.yaml").write_text(BLOCK_WEATHER)
    deadline = time.monotonic() + 10
    while declare_weather(gateway) != 403 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert declare_weather(gateway) == 403


def test_new_alias_after_reload(gateway: Gateway, upstream_state: State) -> None:
    before = reload(gateway).json()["version"]
    text = gateway.config_path.read_text()
    gateway.config_path.write_text(text.replace("models:\n", "models:\n  fresh:\n    targets:\n"
                                                "    - {provider: upstream, model: fresh-upstream}\n", 1))
    answer = reload(gateway).json()
    # A change to gateway.yaml alone is a new version, as a change to a policy is.
    assert answer["status"] == "ok" and answer["version"] != before
    upstream_state.queue.append(Script(content="new alias"))
    completion = OpenAI(base_url=gateway.base_url, api_key=TENANT_KEY).chat.completions.create(
        model="fresh", messages=[{"role": "user", "content": "x"}])
    assert completion.choices[0].message.content == "new alias"
    assert upstream_state.requests[-1]["model"] == "fresh-upstream"


def test_a_replaced_provider_is_closed_once_nothing_can_use_it(gateway: Gateway, bg: BackgroundLoop) -> None:
    api = OpenAI(base_url=gateway.base_url, api_key=TENANT_KEY, max_retries=0)
    api.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "x"}])
    old = gateway.runtime.snapshot.routes["gpt-test"].targets[0].provider
    assert old._session is not None and not old._session.closed  # type: ignore[attr-defined]
    config = yaml.safe_load(gateway.config_path.read_text())
    config["providers"]["upstream"]["headers"] = {"X-Rotated": "1"}  # e.g. a rotated credential
    gateway.config_path.write_text(yaml.safe_dump(config))
    assert reload(gateway).json()["status"] == "ok"
    assert gateway.runtime.snapshot.routes["gpt-test"].targets[0].provider is not old
    api.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "x"}])  # the new one
    assert not old._session.closed  # type: ignore[attr-defined]  # requests may still be using it ...
    bg.run(gateway.runtime.stop())
    assert old._session is None or old._session.closed  # type: ignore[attr-defined]  # ... never past the end


def test_reload_applies_a_targets_cap_and_circuit_settings(gateway: Gateway, upstream_state: State) -> None:
    def set_route(**settings: object) -> None:
        config = yaml.safe_load(gateway.config_path.read_text())
        route = config["models"]["gpt-test"]
        route["targets"][0]["max_concurrent"] = settings.pop("max_concurrent")
        route.update(settings)
        config["server"]["queue_timeout_s"] = 0.2
        gateway.config_path.write_text(yaml.safe_dump(config))
        assert reload(gateway).json()["status"] == "ok"

    def burst() -> list[int]:
        upstream_state.queue += [Script(content="ok", delay_s=0.6) for _ in range(2)]
        with ThreadPoolExecutor(2) as pool:
            return sorted(pool.map(lambda _: httpx.post(
                f"{gateway.base_url}/chat/completions", headers={"Authorization": f"Bearer {TENANT_KEY}"},
                json={"model": "gpt-test", "messages": [{"role": "user", "content": "x"}]}, timeout=30
            ).status_code, range(2)))

    set_route(max_concurrent=1)
    assert burst() == [200, 429]
    set_route(max_concurrent=10, circuit={"failures": 1, "cooldown_s": 60}, retry={"attempts": 1})
    assert burst() == [200, 200]  # the new cap holds, not the one the target was built with
    upstream_state.queue[:] = [Script(status=500)]  # the refused request's answer was never taken
    httpx.post(f"{gateway.base_url}/chat/completions", headers={"Authorization": f"Bearer {TENANT_KEY}"},
               json={"model": "gpt-test", "messages": [{"role": "user", "content": "x"}]})
    circuits = httpx.get(f"{gateway.url}/readyz").json()["circuits"]
    assert "open" in circuits.values()  # one failure opens it now


def test_a_reload_that_loses_the_default_policy_says_so(gateway: Gateway, tmp_path: Path) -> None:
    default = tmp_path / "policies" / "default.yaml"
    default.write_text(default.read_text().replace("policy: default", "policy: defualt", 1))  # a typo
    answer = reload(gateway).json()
    assert answer["status"] == "ok" and answer["errors"] == []
    assert any("'default' is gone" in warning for warning in answer["warnings"])


def test_a_removed_provider_leaves_metrics_and_is_retired(gateway: Gateway) -> None:
    config = yaml.safe_load(gateway.config_path.read_text())
    config["providers"]["spare"] = dict(config["providers"]["upstream"])
    config["models"]["spare"] = {"targets": [{"provider": "spare", "model": "spare-upstream"}]}
    gateway.config_path.write_text(yaml.safe_dump(config))
    assert reload(gateway).json()["status"] == "ok"
    gauge = 'lockgate_circuit_open{model="spare-upstream",provider="spare"}'
    assert gauge in httpx.get(f"{gateway.url}/metrics").text
    spare = gateway.runtime.snapshot.routes["spare"].targets[0].provider
    del config["providers"]["spare"], config["models"]["spare"]
    gateway.config_path.write_text(yaml.safe_dump(config))
    assert reload(gateway).json()["status"] == "ok"
    assert gauge not in httpx.get(f"{gateway.url}/metrics").text
    assert spare in gateway.runtime._retired  # closed once no request can still be using it
