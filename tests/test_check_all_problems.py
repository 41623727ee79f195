"""`lockgate check` reports every problem in one run: config, pricing, each policy file, and
the policies tenants list, instead of each layer's mistakes showing only once the one
before it is fixed (DESIGN: "every problem with file, line and a fix hint")."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from gateway.bundle import load_bundle

BAD_CONFIG = """\
providers:
  mock: {type: openaix}
models:
  demo:
    targets: [{provider: nowhere, model: m}]
    retry: {attempts: 0}
tenants:
  acme:
    keys: ["plain-text-key"]
    limits: {rpm: "lots"}
    policies: [default, broken, missing-policy]
pricing:
  models:
    demo-model:
      input: -1
      cache_read: 0.1
      output: "x"
"""

BAD_POLICY = """\
policy: default
rules:
  - name: bad-cel
    when: 'tenant == '
    action: deny
  - name: typo
    stagee: request
    action: deny
  - name: boom
    action: explode
  - name: tools
    tools: {allowed: [a, b]}
"""

GOOD_CONFIG = """\
providers:
  mock: {type: mock}
models:
  demo:
    targets: [{provider: mock, model: mock-1}]
tenants:
  acme:
    policies: [acme]
"""


def lockgate(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=60)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_one_check_run_reports_config_pricing_policy_and_unknown_policy_problems(tmp_path: Path) -> None:
    config = write(tmp_path / "gateway.yaml", BAD_CONFIG)
    write(tmp_path / "policies" / "default.yaml", BAD_POLICY)
    write(tmp_path / "policies" / "broken.yaml", "policy: broken\nrules: [\n  - name: x\n")

    result = lockgate("check", "--config", str(config), cwd=tmp_path)

    assert result.returncode == 1
    errors = result.stderr
    expected = [
        # the config
        ("gateway.yaml:2", "'openaix' is not one of"),
        ("gateway.yaml:5", "unknown provider 'nowhere'"),
        ("gateway.yaml:6", "must be at least 1, got 0"),
        ("gateway.yaml:9", "tenant keys are stored hashed"),
        ("gateway.yaml:10", "must be an integer, got a string 'lots'"),
        # its pricing overrides
        ("gateway.yaml:15", "not -1"),
        ("gateway.yaml:16", "did you mean 'cached_input'"),
        ("gateway.yaml:17", "not 'x'"),
        # every policy file
        ("broken.yaml:3", "invalid YAML"),
        ("default.yaml:4", "the condition does not compile"),
        ("default.yaml:7", "unknown key 'stagee'"),
        ("default.yaml:10", "'action' is 'explode'"),
        ("default.yaml:12", "unknown key 'allowed' in 'tools'"),
        # and the tenant's policy that no file defines
        ("gateway.yaml:11", "unknown policy 'missing-policy'"),
    ]
    for where, what in expected:
        assert any(where in line and what in line for line in errors.splitlines()), (where, what, errors)
    # The broken files are reported as broken, not also as unknown policies.
    assert "unknown policy 'default'" not in errors and "unknown policy 'broken'" not in errors
    assert "15 problem(s) found." in errors


def test_policies_dir_is_read_from_a_config_that_does_not_validate(tmp_path: Path) -> None:
    config = write(tmp_path / "gateway.yaml", GOOD_CONFIG.replace("mock-1}", "mock-1, weight: heavy}")
                   + "policies_dir: rules\n")
    write(tmp_path / "rules" / "acme.yaml", "policy: acme\nrules:\n  - name: r\n    action: explode\n")

    bundle, problems = load_bundle(config)

    assert bundle is None
    assert [(Path(p.file).name, p.line) for p in problems] == [("gateway.yaml", 5), ("acme.yaml", 4)]


def test_no_policies_directory_is_named_plainly(tmp_path: Path) -> None:
    config = write(tmp_path / "gateway.yaml", GOOD_CONFIG)

    result = lockgate("check", "--config", str(config), cwd=tmp_path)

    assert result.returncode == 1
    assert "gateway.yaml:8" in result.stderr and "unknown policy 'acme'" in result.stderr
    assert "no policies directory was found" in result.stderr
    assert str(tmp_path / "policies") in result.stderr and "'policies_dir'" in result.stderr
    assert "None" not in result.stderr


def test_a_missing_policies_dir_is_one_problem_not_also_unknown_policies(tmp_path: Path) -> None:
    config = write(tmp_path / "gateway.yaml", GOOD_CONFIG + "policies_dir: nope\n")

    bundle, problems = load_bundle(config)

    assert bundle is None
    assert [p.key for p in problems] == ["policies_dir"]


def test_a_valid_bundle_still_loads(tmp_path: Path) -> None:
    config = write(tmp_path / "gateway.yaml", GOOD_CONFIG)
    write(tmp_path / "policies" / "acme.yaml", "policy: acme\nrules:\n  - name: r\n    action: deny\n")

    bundle, problems = load_bundle(config)

    assert problems == [] and bundle is not None
    assert bundle.policies.names() == ["acme"]
