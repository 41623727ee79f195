"""Gating complete (non-streamed) answers: golden chat completions and Responses
objects, validated with the OpenAI SDK's own types."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

from gateway.policy import gate_chat_completion, gate_responses_response
from tests.test_policy_support import FIXTURES, facts, tenant

GOLDEN = sorted((FIXTURES / "completion").glob("*.json"))


def _gate(case: dict, tmp_path: Path, response: dict):
    policies = tenant(tmp_path, case["policy"])
    if case["api"] == "chat":
        return gate_chat_completion(policies, facts(), response)
    return gate_responses_response(policies, facts({"model": "m", "input": "x"}), response)


@pytest.mark.parametrize("path", GOLDEN, ids=[path.stem for path in GOLDEN])
def test_golden_answers(tmp_path: Path, path: Path) -> None:
    case = json.loads(path.read_text())
    response = copy.deepcopy(case["response"])
    result = _gate(case, tmp_path, response)
    expect = case["expect"]
    assert [[p.call_id, p.name, p.arguments, p.decision.rule] for p in result.pending] == expect["pending"]
    for call_id, (approved, reason) in case["resolve"].items():
        result.resolve(call_id, approved, reason)
    body, error, decisions = result.finish()
    assert body == expect["body"]
    assert (list(error) if error else None) == expect["error"]
    assert [d.label for d in decisions] == expect["decisions"]
    assert response == case["response"]  # the caller's object is never modified
    if body is not None:
        (ChatCompletion if case["api"] == "chat" else Response).model_validate(body)


def test_a_call_left_unresolved_counts_as_denied(tmp_path: Path) -> None:
    case = json.loads((FIXTURES / "completion" / "chat_approval_granted.json").read_text())
    result = _gate(case, tmp_path, copy.deepcopy(case["response"]))
    body, error, _ = result.finish()
    assert error is None and body is not None
    message = body["choices"][0]["message"]
    assert "tool_calls" not in message and "no decision was made" in message["content"]
    assert body["choices"][0]["finish_reason"] == "stop"


def test_resolving_an_unknown_call_is_an_error(tmp_path: Path) -> None:
    case = json.loads((FIXTURES / "completion" / "chat_approval_granted.json").read_text())
    result = _gate(case, tmp_path, copy.deepcopy(case["response"]))
    with pytest.raises(ValueError, match="call_9"):
        result.resolve("call_9", True)


def test_a_denied_approval_with_error_mode_is_an_error(tmp_path: Path) -> None:
    case = json.loads((FIXTURES / "completion" / "chat_approval_denied.json").read_text())
    case["policy"] = case["policy"].replace("action: require_approval", "action: require_approval\n"
                                            "    on_violation: error")
    result = _gate(case, tmp_path, copy.deepcopy(case["response"]))
    result.resolve("call_1", False, "no")
    body, error, _ = result.finish()
    assert body is None and error is not None and error[0] == "approval_denied" and "no" in error[1]
