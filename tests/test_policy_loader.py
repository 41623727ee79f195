"""Loading policy files: every kind of problem with its line, never an exception,
the shipped policies clean, and a version that follows the content."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.policy import load_policies
from tests.test_policy_support import FIXTURES

REPO = Path(__file__).parent.parent
PROBLEM_CASES = json.loads((FIXTURES / "loader_problems.json").read_text())


def _load_text(tmp_path: Path, text: str) -> tuple[object, list]:
    (tmp_path / "policy.yaml").write_text(text)
    return load_policies(tmp_path)


@pytest.mark.parametrize("case", PROBLEM_CASES, ids=[case["name"] for case in PROBLEM_CASES])
def test_each_problem_is_reported_with_its_line(tmp_path: Path, case: dict) -> None:
    policies, problems = _load_text(tmp_path, case["yaml"])
    assert policies is None
    found = [(p.line, p.key, p.rule, p.message) for p in problems]
    for expected in case["problems"]:
        assert any(
            line == expected["line"] and key == expected["key"] and rule == expected.get("rule")
            and expected["contains"] in message
            for line, key, rule, message in found
        ), f"missing {expected} in {found}"
    assert len(problems) == len(case["problems"]), found
    assert all(p.file.endswith("policy.yaml") for p in problems)


def test_problems_across_files_are_all_collected(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("policy: a\nrules:\n  - name: r\n    action: nope\n")
    (tmp_path / "b.yaml").write_text("policy: b\nrules:\n  - name: r\n    action: deny\n    when: '1 +'\n")
    (tmp_path / "c.yaml").write_text("policy: a\nrules: []\n")
    policies, problems = load_policies(tmp_path)
    assert policies is None
    messages = {(Path(p.file).name, p.line): p.message for p in problems}
    assert "use one of" in messages[("a.yaml", 4)]
    assert "does not compile" in messages[("b.yaml", 5)]
    assert "also defined in" in messages[("c.yaml", 1)]


def test_a_missing_directory_is_a_problem(tmp_path: Path) -> None:
    policies, problems = load_policies(tmp_path / "nowhere")
    assert policies is None and "does not exist" in problems[0].message


def test_subdirectories_and_other_files_are_not_policies(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "cases.yaml").write_text("- name: not a policy\n")
    (tmp_path / "README.md").write_text("# notes")
    (tmp_path / ".#p.yaml").write_text("not: [a policy")
    (tmp_path / "p.yml").write_text("policy: p\nrules: []\n")
    policies, problems = load_policies(tmp_path)
    assert not problems and policies is not None and policies.names() == ["p"]


@pytest.mark.parametrize(("when", "stage"), [
    ('metadata.team == "support"', "request"),          # a key the request may not have
    ('has(metadata.tier) && metadata.tier > 2', "request"),
    ('messages[3].content == "x"', "request"),           # an index the request may not have
    ('headers["x-team"] == "blue"', "request"),
    ("int(user_input) > 3", "request"),                  # text that may not be a number
    ('agent.startsWith("ops-")', "request"),            # null without the header
    ("estimated_cost_usd > 1.0", "request"),             # null when unknown
    ('user_input == "hi" ? "text" : true', "request"),  # not a boolean only for some input
    ("tool_call.arguments.amount > 100", "tool_call"),
    ('response_text.size() > 10 && metadata.flag', "response"),
])
def test_conditions_that_fail_only_on_some_data_load(tmp_path: Path, when: str, stage: str) -> None:
    text = f"policy: p\nrules:\n  - name: r\n    action: deny\n    stage: {stage}\n    when: '{when}'\n"
    policies, problems = _load_text(tmp_path, text)
    assert policies is not None and not problems, [str(p) for p in problems]


@pytest.mark.parametrize("directory", ["policies", "policies/examples", "bench/policies"])
def test_shipped_policies_load_clean(directory: str) -> None:
    policies, problems = load_policies(REPO / directory)
    assert not problems, [str(p) for p in problems]
    assert policies is not None and policies.names()


def test_version_follows_content(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("policy: p\nrules:\n  - name: r\n    action: deny\n")
    first, _ = load_policies(tmp_path)
    again, _ = load_policies(tmp_path)
    (tmp_path / "p.yaml").write_text("policy: p\nrules:\n  - name: r\n    action: allow\n")
    changed, _ = load_policies(tmp_path)
    assert first is not None and again is not None and changed is not None
    assert first.version == again.version != changed.version


def test_tenant_view_puts_default_first_and_is_cached(tmp_path: Path) -> None:
    (tmp_path / "default.yaml").write_text("policy: default\nrules:\n  - name: d\n    action: deny\n")
    (tmp_path / "team.yaml").write_text("policy: team\nrules:\n  - name: t\n    action: allow\n")
    policies, _ = load_policies(tmp_path)
    assert policies is not None
    view = policies.for_tenant(["team"])
    assert [p.name for p in view.policies] == ["default", "team"]
    assert policies.for_tenant(["team"]) is view
    assert [p.name for p in policies.for_tenant([]).policies] == ["default"]
    assert [p.name for p in policies.for_tenant(["team", "default"]).policies] == ["default", "team"]
    with pytest.raises(KeyError, match="unknown policy gone"):
        policies.for_tenant(["gone"])


_yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12)
    | st.sampled_from(["deny", "allow", "redact", "tool_call", "response", "tenant == 'a'", "(", "[a-"]),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.sampled_from(["name", "action", "stage", "when", "tools", "allow", "deny",
                                       "pattern", "detectors", "approval", "mode", "tags", "sample",
                                       "on_violation", "x"]), children, max_size=5),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rules=st.lists(_yaml_values, max_size=4))
def test_any_broken_file_gives_problems_not_exceptions(tmp_path: Path, rules: list) -> None:
    text = yaml.safe_dump({"policy": "fuzz", "rules": rules})
    policies, problems = _load_text(tmp_path, text)
    assert (policies is None) == bool(problems)
    for problem in problems:
        assert problem.message and problem.file
