"""Config validation: every problem with file, line and a fix hint; `lockgate check` exits 1."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gateway.config import load_config, quickstart_config

VALID = """\
server: {host: 127.0.0.1, port: 9000}
admin_keys: ["env:TEST_ADMIN_KEY"]
providers:
  openai: {type: openai, api_key: "env:TEST_OPENAI_KEY"}
  local: {type: openai, base_url: "http://127.0.0.1:8000/v1"}
models:
  gpt-5.5:
    targets:
      - {provider: openai, model: gpt-5.5}
      - {provider: local, model: llama}
    retry: {attempts: 3, backoff_ms: 100}
    timeout_s: 60
tenants:
  acme:
    keys: ["sha256:a86326fdec801e45a4d58ba3fc03a8070fb25c26579bb14bc2f8870794ba1e7e"]
    budget: {usd_per_month: 500}
    limits: {rpm: 600, tpm: 200000, max_concurrent: 20}
    models: [gpt-5.5]
pricing:
  models:
    gpt-5.5: {input: 1.25, cached_input: 0.125, output: 10.0}
"""
ENV = {"TEST_ADMIN_KEY": "admin-secret", "TEST_OPENAI_KEY": "sk-test"}
ACME_KEY = "sha256:a86326fdec801e45a4d58ba3fc03a8070fb25c26579bb14bc2f8870794ba1e7e"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_valid_config_loads(tmp_path: Path) -> None:
    config, problems = load_config(write(tmp_path, VALID), environ=ENV)
    assert problems == [] and config is not None
    route = config.models["gpt-5.5"]
    assert [t.provider for t in route.targets] == ["openai", "local"]
    assert route.retry.attempts == 3 and route.timeout_s == 60
    assert config.providers["openai"].api_key == "sk-test"
    assert "sk-test" not in repr(config.providers["openai"])  # secrets never print
    assert config.tenants["acme"].budget.usd_per_month == 500
    assert config.tenants["acme"].may_use("gpt-5.5") and not config.tenants["acme"].may_use("other")
    assert config.pricing.models["gpt-5.5"]["cached_input"] == 0.125


def test_bare_off_turns_the_request_log_off(tmp_path: Path) -> None:
    # The docs write `format: off`; YAML 1.1 reads that bare word as false.
    config, problems = load_config(write(tmp_path, VALID + "telemetry:\n  logs: {format: off}\n"), environ=ENV)
    assert problems == [] and config is not None
    assert config.telemetry.logs.format == "off"


# (what is wrong, replacement (old, new), expected line, words in the message)
BROKEN = [
    ("unknown top key", ("tenants:", "tenents:"), 13, "did you mean 'tenants'"),
    ("missing env var", ('"env:TEST_OPENAI_KEY"', '"env:NOT_SET_ANYWHERE"'), 4, "NOT_SET_ANYWHERE is not set"),
    ("unknown provider in target", ("{provider: local, model: llama}", "{provider: lcoal, model: llama}"), 10,
     "unknown provider 'lcoal'"),
    ("wrong type", ("timeout_s: 60", "timeout_s: soon"), 12, "must be a number"),
    ("plain tenant key", ('"sha256:a86326fdec801e45a4d58ba3fc03a8070fb25c26579bb14bc2f8870794ba1e7e"', '"lg-plain"'),
     15, "stored hashed"),
    ("bad provider type", ("type: openai, api_key", "type: opnai, api_key"), 4, "not one of"),
    ("unknown alias for tenant", ("models: [gpt-5.5]", "models: [gpt-9]"), 18, "unknown model alias 'gpt-9'"),
    ("bad storage url", ("server: {host", "storage: {url: 'mysql://x'}\nserver: {host"), 1, "sqlite:///"),
    ("yaml syntax", ("retry: {attempts: 3, backoff_ms: 100}", "retry: {attempts: 3, backoff_ms: 100"), 12,
     "invalid YAML"),
    ("key of two tenants", ("pricing:", f'  globex: {{keys: ["{ACME_KEY}"]}}\npricing:'), 19,
     "already a key of tenant 'acme' (tenants.acme.keys[0])"),
    ("admin key as tenant key", ('["env:TEST_ADMIN_KEY"]', f'["{ACME_KEY}"]'), 15,
     "already an admin key (admin_keys[0])"),
    ("sqlite url without a file", ("server: {host", "storage: {url: 'sqlite:///'}\nserver: {host"), 1,
     "needs a database file after sqlite:///, e.g. sqlite:///lockgate.db"),
    ("postgresql url without a server", ("server: {host", "storage: {url: 'postgresql://'}\nserver: {host"), 1,
     "names no server; write postgresql://USER:PASSWORD@HOST:5432/DATABASE"),
]


@pytest.mark.parametrize(("name", "change", "line", "words"), BROKEN, ids=[case[0] for case in BROKEN])
def test_each_problem_names_file_line_and_fix(tmp_path: Path, name: str, change: tuple[str, str], line: int,
                                              words: str) -> None:
    path = write(tmp_path, VALID.replace(*change))
    config, problems = load_config(path, environ=ENV)
    assert config is None
    matching = [problem for problem in problems if words in problem.message]
    assert matching, problems
    assert matching[0].line == line
    assert str(path) in str(matching[0])


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    text = VALID.replace("timeout_s: 60", "timeout_s: soon").replace("tenants:", "tenents:")
    _, problems = load_config(write(tmp_path, text), environ=ENV)
    assert len(problems) >= 2


def test_quickstart_config_is_valid() -> None:
    config = quickstart_config()
    assert config.quickstart and config.providers["mock"].type == "mock"
    assert config.storage.url == "sqlite:///lockgate.db"


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=60, env={"PATH": "/usr/bin:/bin", **ENV})


def test_check_command(tmp_path: Path) -> None:
    good = run_cli("check", "--config", str(write(tmp_path, VALID)))
    assert good.returncode == 0, good.stderr
    assert "ok" in good.stdout
    bad = run_cli("check", "--config", str(write(tmp_path, VALID.replace("timeout_s: 60", "timeout_s: soon"))))
    assert bad.returncode == 1
    assert "gateway.yaml:12" in bad.stderr and "must be a number" in bad.stderr
    missing = run_cli("check", "--config", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 1 and "file not found" in missing.stderr


def test_check_refuses_a_key_that_would_authenticate_as_two_identities(tmp_path: Path) -> None:
    shared = VALID.replace('["env:TEST_ADMIN_KEY"]', f'["{ACME_KEY}"]')
    done = run_cli("check", "--config", str(write(tmp_path, shared)))
    assert done.returncode == 1 and "gateway.yaml:15" in done.stderr and "already an admin key" in done.stderr
