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
    keys = {p.call_id: p.key for p in result.pending}  # the fixtures' ids are unique
    for call_id, (approved, reason) in case["resolve"].items():
        result.resolve(keys[call_id], approved, reason)
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
    with pytest.raises(ValueError, match="call_1"):
        result.resolve("call_1", True)  # a call is resolved by its place, not by the upstream's id
    [pending] = result.pending
    result.resolve(pending.key, True)
    with pytest.raises(ValueError, match=pending.key):
        result.resolve(pending.key, False)  # decided already


def test_a_denied_approval_with_error_mode_is_an_error(tmp_path: Path) -> None:
    case = json.loads((FIXTURES / "completion" / "chat_approval_denied.json").read_text())
    case["policy"] = case["policy"].replace("action: require_approval", "action: require_approval\n"
                                            "    on_violation: error")
    result = _gate(case, tmp_path, copy.deepcopy(case["response"]))
    [pending] = result.pending
    result.resolve(pending.key, False, "no")
    body, error, _ = result.finish()
    assert body is None and error is not None and error[0] == "approval_denied" and "no" in error[1]


# -- two calls sharing an id -------------------------------------------------------

NEEDS_APPROVAL = ("policy: team\nrules:\n  - name: transfers\n    stage: tool_call\n"
                  "    when: 'tool_call.name == \"transfer_to_agent\"'\n    action: require_approval\n")
SAME_ID = [("transfer_to_agent", "{}"), ("transfer_to_agent", '{"to": "root"}')]


def _chat_calls(calls: list[tuple[str, str]]) -> list[dict]:
    return [{"id": "call_1", "type": "function", "function": {"name": name, "arguments": arguments}}
            for name, arguments in calls]


def _chat_answer(*messages_calls: list[tuple[str, str]]) -> dict:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m", "choices": [
        {"index": number, "finish_reason": "tool_calls", "logprobs": None,
         "message": {"role": "assistant", "content": None, "tool_calls": _chat_calls(calls)}}
        for number, calls in enumerate(messages_calls)]}


@pytest.mark.parametrize("approved", [(True, False), (False, True)], ids=["first", "second"])
def test_calls_sharing_an_id_are_each_decided_on_their_own(tmp_path: Path, approved: tuple[bool, bool]) -> None:
    answer = _chat_answer(SAME_ID)
    result = _gate({"policy": NEEDS_APPROVAL, "api": "chat"}, tmp_path, copy.deepcopy(answer))
    assert [(p.key, p.call_id, p.name, p.arguments) for p in result.pending] == [
        ("0:0", "call_1", *SAME_ID[0]), ("0:1", "call_1", *SAME_ID[1])]
    for pending, decision in zip(result.pending, approved, strict=True):
        result.resolve(pending.key, decision, None if decision else "no")
    body, error, decisions = result.finish()
    assert error is None and body is not None
    [choice] = ChatCompletion.model_validate(body).choices
    [kept] = choice.message.tool_calls or []
    assert (kept.id, kept.function.name, kept.function.arguments) == ("call_1", *SAME_ID[approved.index(True)])
    assert choice.message.content == "Tool call 'transfer_to_agent' was not approved (policy rule 'transfers'): no"
    assert choice.finish_reason == "tool_calls"
    assert [d.label for d in decisions] == ["team/transfers=require_approval"] * 2


def test_calls_sharing_an_id_across_choices(tmp_path: Path) -> None:
    answer = _chat_answer(SAME_ID[:1], SAME_ID[1:])
    result = _gate({"policy": NEEDS_APPROVAL, "api": "chat"}, tmp_path, copy.deepcopy(answer))
    assert [p.key for p in result.pending] == ["0:0", "1:0"]
    result.resolve("1:0", True)
    body, error, _ = result.finish()  # the first one stays undecided: denied
    assert error is None and body is not None
    first, second = ChatCompletion.model_validate(body).choices
    assert not first.message.tool_calls and "no decision was made" in (first.message.content or "")
    assert first.finish_reason == "stop"
    assert [c.function.arguments for c in second.message.tool_calls or []] == [SAME_ID[1][1]]


def test_responses_items_sharing_a_call_id_are_each_decided_on_their_own(tmp_path: Path) -> None:
    items = [{"id": f"fc_{number}", "type": "function_call", "status": "completed", "call_id": "call_1",
              "name": name, "arguments": arguments} for number, (name, arguments) in enumerate(SAME_ID)]
    response = {"id": "resp_1", "object": "response", "created_at": 1, "status": "completed", "model": "m",
                "output": items, "parallel_tool_calls": True, "tool_choice": "auto", "tools": []}
    result = _gate({"policy": NEEDS_APPROVAL, "api": "responses"}, tmp_path, copy.deepcopy(response))
    assert [(p.key, p.call_id, p.arguments) for p in result.pending] == [
        ("0", "call_1", SAME_ID[0][1]), ("1", "call_1", SAME_ID[1][1])]
    result.resolve("0", False, "no")
    result.resolve("1", True)
    body, error, _ = result.finish()
    assert error is None and body is not None
    output = Response.model_validate(body).output
    assert [item.type for item in output] == ["message", "function_call"]
    assert output[1].arguments == SAME_ID[1][1]  # type: ignore[union-attr]


# -- chat content given as a list of parts -------------------------------------------

REDACT_KEYS = "policy: team\nrules:\n  - name: no-keys-out\n    stage: response\n    action: redact\n" \
              "    detectors: [openai_key]\n"
KEY = "sk-proj-ABCDEFGHIJKLMNOPQRSTUVWX"


def _list_answer(content: list, calls: list[tuple[str, str]] | None = None) -> dict:
    answer = _chat_answer(calls or [])
    message = answer["choices"][0]["message"]
    message["content"] = content
    if not calls:
        message.pop("tool_calls")
        answer["choices"][0]["finish_reason"] = "stop"
    return answer


def test_chat_content_parts_are_redacted(tmp_path: Path) -> None:
    # Some OpenAI-compatible servers send `content` as parts, as requests may.
    answer = _list_answer([{"type": "text", "text": f"Your key is {KEY}."}, {"type": "text", "text": "Bye."}])
    body, error, decisions = _gate({"policy": REDACT_KEYS, "api": "chat"}, tmp_path,
                                   copy.deepcopy(answer)).finish()
    assert error is None and body is not None
    assert body["choices"][0]["message"]["content"] == [{"type": "text", "text": "Your key is [REDACTED]."},
                                                        {"type": "text", "text": "Bye."}]
    assert KEY not in json.dumps(body)
    assert [d.label for d in decisions] == ["team/no-keys-out=redact"]


def test_a_blocked_call_beside_content_parts_adds_a_part(tmp_path: Path) -> None:
    policy = REDACT_KEYS + "  - name: no-delete\n    tools: {deny: [delete_file]}\n"
    answer = _list_answer([{"type": "text", "text": f"Deleting with {KEY}"}], [("delete_file", "{}")])
    body, error, _ = _gate({"policy": policy, "api": "chat"}, tmp_path, copy.deepcopy(answer)).finish()
    assert error is None and body is not None
    message = body["choices"][0]["message"]
    assert "tool_calls" not in message and body["choices"][0]["finish_reason"] == "stop"
    assert message["content"] == [{"type": "text", "text": "Deleting with [REDACTED]"},
                                  {"type": "text", "text": "Tool call 'delete_file' was blocked by policy rule "
                                                           "'no-delete'."}]
