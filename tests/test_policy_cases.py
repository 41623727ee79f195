"""Policy test cases (`lockgate policy test`): the shipped cases pass, and a failing or
broken case says why."""

from __future__ import annotations

import textwrap
from pathlib import Path

from gateway.policy import load_policies, run_cases
from tests.test_policy_support import policy_set

REPO = Path(__file__).parent.parent


def test_the_shipped_policies_pass_their_cases() -> None:
    policies, problems = load_policies(REPO / "policies")
    assert policies is not None and not problems
    for cases in sorted((REPO / "policies" / "tests").glob("*.yaml")):
        report = run_cases(policies, cases)
        assert report.passed, report.summary()
        assert len(report.results) >= 10


POLICY = """
policy: default
rules:
  - name: no-deletes
    stage: tool_call
    tools: {deny: [delete_file]}
  - name: keys-out
    stage: response
    action: redact
    detectors: [openai_key]
"""


def _report(tmp_path: Path, cases: str):
    path = tmp_path / "cases.yaml"
    path.write_text(textwrap.dedent(cases))
    return run_cases(policy_set(tmp_path, POLICY), path)


def test_a_failing_case_says_what_happened(tmp_path: Path) -> None:
    report = _report(tmp_path, """
        - name: right
          tool_call: {name: Delete_File}
          expect: {action: deny, rule: no-deletes}
        - name: wrong action
          tool_call: {name: read_file, arguments: '{"path": "/"}'}
          expect: {action: deny}
        - name: wrong output
          response: "key sk-abcdefghijklmnopqrstuvwxyz"
          expect: {action: redact, output: "key sk-..."}
        - name: unknown policy
          policies: [nope]
          request: {model: m, messages: []}
          expect: {action: allow}
    """)
    assert not report.passed
    results = {r.name: r for r in report.results}
    assert results["right"].passed
    assert results["wrong action"].why == "expected deny, got allow (matched: no rule)"
    assert "expected output 'key sk-...', got 'key [REDACTED]'" in results["wrong output"].why
    assert "unknown policy nope" in results["unknown policy"].why
    assert results["wrong action"].line == 5
    assert "FAIL wrong action" in report.summary() and "1/4 cases passed" in report.summary()


def test_a_broken_case_is_a_problem_with_its_line(tmp_path: Path) -> None:
    report = _report(tmp_path, """
        - name: fine
          tool_call: {name: x}
          expect: {action: allow}
        - name: no input
          expect: {action: allow}
        - name: bad expect
          tool_call: {name: x}
          expect: {verdict: allow}
    """)
    assert [(p.line, p.message.split(";")[0]) for p in report.problems] == [
        (5, "a case needs an input: request, tool_call or response"),
        (7, "'expect' is a mapping with 'action' and optionally decisions, error_code, output, rule"),
    ]
    assert not report.passed and [r.name for r in report.results] == ["fine"]


def test_a_cases_file_that_is_not_a_list(tmp_path: Path) -> None:
    report = _report(tmp_path, "name: x\n")
    assert not report.passed and "a cases file is a list" in report.problems[0].message
