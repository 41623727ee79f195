"""Policies and a gateway config for the end-to-end policy and approval tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.harness import base_config, sha

THIRD_TENANT_KEY = "lg-test-initech-key"

DEFAULT = """\
policy: default
rules:
  - name: no-delete
    tools: {deny: [delete_file]}
  - name: sensitive-input
    when: 'user_input.contains("password")'
    action: require_approval
    approval: {mode: hold, timeout_s: 3, on_timeout: deny}
  - name: deferred-export
    when: 'user_input.contains("export everything")'
    action: require_approval
    approval: {mode: defer, timeout_s: 60}
  - name: database-writes
    stage: tool_call
    when: 'tool_call.name == "database_write"'
    action: require_approval
    approval: {mode: hold, timeout_s: 3, on_timeout: deny}
  - name: shadow-big-prompts
    when: 'user_input.contains("shadowed")'
    action: deny
    shadow: true
  - name: no-keys-out
    stage: response
    action: redact
    detectors: [openai_key]
"""

WHITELIST = """\
policy: whitelist
rules:
  - name: tool-whitelist
    tools: {allow: [get_weather, database_write, transfer_to_weather_specialist]}
"""

STRIP = """\
policy: strip
rules:
  - name: only-weather
    tools: {allow: [get_weather]}
    on_violation: strip
"""

STRICT_CALLS = """\
policy: strict-calls
rules:
  - name: calls-must-be-weather
    stage: tool_call
    tools: {allow: [get_weather]}
    on_violation: error
"""


def policy_config(upstream_url: str, directory: Path) -> dict[str, Any]:
    policies = directory / "policies"
    policies.mkdir(parents=True, exist_ok=True)
    for name, text in (("default", DEFAULT), ("whitelist", WHITELIST), ("strip", STRIP),
                       ("strict-calls", STRICT_CALLS)):
        (policies / f"{name}.yaml").write_text(text)
    config = base_config(upstream_url, policies_dir=str(policies))
    config["tenants"]["acme"]["policies"] = ["whitelist"]
    config["tenants"]["globex"]["policies"] = ["strip"]
    config["tenants"]["initech"] = {"keys": [sha(THIRD_TENANT_KEY)]}
    config["tenants"]["umbrella"] = {"keys": [sha("lg-test-umbrella-key")], "policies": ["strict-calls"]}
    return config
