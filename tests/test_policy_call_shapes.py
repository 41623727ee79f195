"""Tool calls whose shape could slip past a rule, through the real gateway.

1. A non-streamed chat tool call that clients could read two ways (a `function` and a
   `custom` object that differ, a `type` naming an object the call lacks) was judged by
   one reading and passed a rule meant for the other. It now fails closed, with the
   error the chat stream gate gives the same call.
2. A client-run built-in call (local shell, shell, computer, apply_patch) reached the
   approvers with empty arguments: they could not see the command they approved, and a
   stream could change the command after the approval. Its action is now its arguments.

The fake OpenAI upstream only scripts well-formed calls, so these answers come from
`tests.fakes.scripted_server`, inside `openai_wire`'s envelopes. The client is the official OpenAI SDK.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from tests.fakes import openai_wire
from tests.fakes.scripted_server import QUEUE
from tests.harness import ADMIN_KEY, TENANT_KEY, Gateway, Server, base_config, in_thread

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
POLICY = """\
policy: default
rules:
  - name: database-writes
    stage: tool_call
    when: 'tool_call.name == "database_write"'
    action: require_approval
    approval: {mode: hold, timeout_s: 10, on_timeout: deny}
  - name: client-run-tools
    stage: tool_call
    when: 'tool_call.name in ["local_shell", "shell", "computer", "apply_patch"]'
    action: require_approval
    approval: {mode: hold, timeout_s: 10, on_timeout: deny}
"""
NO_RM = """\
policy: default
rules:
  - name: no-rm
    stage: tool_call
    pattern: 'rm -rf'
    action: deny
"""
MESSAGES = [{"role": "user", "content": "go"}]
TOOLS = [{"type": "function", "function": {"name": name, "parameters": {"type": "object", "properties": {}}}}
         for name in ("get_weather", "database_write")]
USAGE = {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}
Frame = tuple[str | None, dict[str, Any]]


@pytest.fixture
def scripted(scripted_upstream: Server) -> Server:
    return scripted_upstream


@pytest.fixture
def make_gateway(gateway_factory: Callable[..., Gateway], scripted: Server,
                 tmp_path: Path) -> Callable[[str], Gateway]:
    def make(policy: str) -> Gateway:
        policies = tmp_path / "policies"
        policies.mkdir(exist_ok=True)
        (policies / "default.yaml").write_text(policy)
        return gateway_factory(base_config(scripted.url, policies_dir=str(policies)))
    return make


def _script(server: Server, *replies: Any) -> None:
    server.app[QUEUE].extend(replies)


def _client(gateway: Gateway) -> OpenAI:
    return OpenAI(base_url=gateway.base_url, api_key=TENANT_KEY, max_retries=0, timeout=30)


def _pending(gateway: Gateway) -> list[dict[str, Any]]:
    return httpx.get(f"{gateway.url}/admin/approvals", params={"status": "pending"}, headers=ADMIN).json()["data"]


def _wait_pending(gateway: Gateway, timeout_s: float = 8.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if data := _pending(gateway):
            return data[0]
        time.sleep(0.05)
    raise AssertionError("no pending approval appeared")


def _decide(gateway: Gateway, approval_id: str, verb: str) -> None:
    httpx.post(f"{gateway.url}/admin/approvals/{approval_id}/{verb}", headers=ADMIN,
               json={"reason": "checked by a human"}).raise_for_status()


# -- 1. a chat call read two ways, non-streamed ----------------------------------------

TWO_WAY_CALLS = {
    "custom-type-with-both-objects": {"id": "c", "type": "custom", "custom": {"name": "x", "input": ""},
                                      "function": {"name": "database_write", "arguments": "{}"}},
    "custom-type-with-function-only": {"id": "c", "type": "custom",
                                       "function": {"name": "database_write", "arguments": "{}"}},
    "function-type-with-other-custom": {"id": "c", "type": "function",
                                        "custom": {"name": "database_write", "input": ""},
                                        "function": {"name": "get_weather", "arguments": "{}"}},
}


@pytest.mark.parametrize("call", list(TWO_WAY_CALLS.values()), ids=list(TWO_WAY_CALLS))
def test_a_chat_call_read_two_ways_fails_closed(make_gateway: Callable[[str], Gateway], scripted: Server,
                                                call: dict[str, Any]) -> None:
    gateway = make_gateway(POLICY)
    _script(scripted, openai_wire.chat_completion("m", None, [call], "tool_calls", USAGE))
    with pytest.raises(openai.PermissionDeniedError) as raised:
        _client(gateway).chat.completions.create(model="gpt-test", messages=MESSAGES, tools=TOOLS)
    error: Any = raised.value.body
    assert error["code"] == "blocked_by_policy", error
    assert "database-writes" in error["message"] and "differ" in error["message"], error
    assert _pending(gateway) == []  # nobody is asked to approve an answer refused anyway


def test_the_json_and_stream_gates_give_the_same_error(make_gateway: Callable[[str], Gateway],
                                                       scripted: Server) -> None:
    gateway = make_gateway(POLICY)
    call = TWO_WAY_CALLS["custom-type-with-both-objects"]
    completion = openai_wire.chat_completion("m", None, [call], "tool_calls", USAGE)
    envelope = {key: completion[key] for key in ("id", "created", "model")} | {"object": "chat.completion.chunk"}
    chunks: list[Frame] = [
        (None, {**envelope, "choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": [
            {"index": 0, **call}]}, "finish_reason": None}]}),
        (None, {**envelope, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
    ]
    _script(scripted, completion, chunks)
    with pytest.raises(openai.PermissionDeniedError) as as_json:
        _client(gateway).chat.completions.create(model="gpt-test", messages=MESSAGES, tools=TOOLS)
    with pytest.raises(openai.APIError) as as_stream:
        list(_client(gateway).chat.completions.create(model="gpt-test", messages=MESSAGES, tools=TOOLS,
                                                      stream=True))
    json_error: Any = as_json.value.body
    stream_error: Any = as_stream.value.body
    assert json_error["code"] == stream_error["code"] == "blocked_by_policy"
    same = "a 'function' and a 'custom' object that differ (custom call)"
    assert same in json_error["message"] and same in stream_error["message"]


# -- 2. client-run built-in calls: what the approvers see ----------------------------------

BUILTIN_CALLS = {
    "local_shell": {"type": "local_shell_call", "id": "ls_1", "call_id": "c1", "status": "completed",
                    "action": {"type": "exec", "command": ["rm", "-rf", "/"], "env": {}}},
    "shell": {"type": "shell_call", "id": "sh_1", "call_id": "c1", "status": "completed",
              "action": {"commands": ["rm -rf /"], "timeout_ms": 1000}},
    "computer": {"type": "computer_call", "id": "cu_1", "call_id": "c1", "status": "completed",
                 "pending_safety_checks": [], "action": {"type": "type", "text": "rm -rf /"}},
    "apply_patch": {"type": "apply_patch_call", "id": "ap_1", "call_id": "c1", "status": "completed",
                    "operation": {"type": "delete_file", "path": "rm -rf /etc/passwd"}},
}
PAYLOAD_FIELD = {"local_shell": "action", "shell": "action", "computer": "action", "apply_patch": "operation"}


def _response(output: list[dict[str, Any]], status: str = "completed") -> dict[str, Any]:
    response = openai_wire.response_object("m", {"input": "go"}, None, [],
                                           openai_wire.responses_usage(USAGE), status)
    return {**response, "output": output}


@pytest.mark.parametrize("tool", list(BUILTIN_CALLS))
def test_an_approver_sees_what_a_builtin_call_would_do(make_gateway: Callable[[str], Gateway],
                                                       scripted: Server, tool: str) -> None:
    gateway = make_gateway(POLICY)
    item = BUILTIN_CALLS[tool]
    _script(scripted, _response([item]))
    thread, box = in_thread(lambda: _client(gateway).responses.create(model="gpt-test", input="go"))
    approval = _wait_pending(gateway)
    field = PAYLOAD_FIELD[tool]
    assert approval["tool_name"] == tool
    assert json.loads(approval["arguments"]) == {field: item[field]}
    _decide(gateway, approval["id"], "deny")
    thread.join(15)
    answer = box["result"]
    assert [output.type for output in answer.output] == ["message"]
    assert "rm -rf" not in answer.model_dump_json()


def test_a_rule_scanning_arguments_reads_a_builtin_calls_command(make_gateway: Callable[[str], Gateway],
                                                                 scripted: Server) -> None:
    gateway = make_gateway(NO_RM)
    shell = BUILTIN_CALLS["shell"]
    _script(scripted, _response([shell]), _response([{**shell, "action": {"commands": ["ls /tmp"]}}]))
    denied = _client(gateway).responses.create(model="gpt-test", input="go")
    assert [output.type for output in denied.output] == ["message"] and "no-rm" in denied.output_text
    allowed = _client(gateway).responses.create(model="gpt-test", input="go")
    assert [output.type for output in allowed.output] == ["shell_call"]


def _shell_stream(added: dict[str, Any], done: dict[str, Any], completed: dict[str, Any]) -> list[Frame]:
    """A Responses stream of one shell call: its item added, done, then the whole response."""
    response = _response([completed])  # one id: the SDK checks the stream is one response
    events = [
        {"type": "response.created", "response": {**response, "status": "in_progress", "output": []}},
        {"type": "response.output_item.added", "output_index": 0, "item": added},
        {"type": "response.output_item.done", "output_index": 0, "item": done},
        {"type": "response.completed", "response": response},
    ]
    return [(event["type"], {**event, "sequence_number": number}) for number, event in enumerate(events)]


def test_a_streamed_command_is_approved_as_it_was_stated_whole(make_gateway: Callable[[str], Gateway],
                                                               scripted: Server) -> None:
    """The added item is still in progress (its commands stream on): the gate judges the
    done item, and the approver sees its command."""
    gateway = make_gateway(POLICY)
    shell = BUILTIN_CALLS["shell"]
    added = {**shell, "status": "in_progress", "action": {"commands": [], "timeout_ms": 1000}}
    _script(scripted, _shell_stream(added, shell, shell))

    def run() -> list[Any]:
        with _client(gateway).responses.stream(model="gpt-test", input="go") as stream:
            list(stream)
            return stream.get_final_response().output

    thread, box = in_thread(run)
    approval = _wait_pending(gateway)
    assert json.loads(approval["arguments"]) == {"action": shell["action"]}
    _decide(gateway, approval["id"], "approve")
    thread.join(15)
    assert "error" not in box, box
    assert [(output.type, output.action.commands) for output in box["result"]] == [("shell_call", ["rm -rf /"])]


def test_a_done_item_still_marked_in_progress_is_judged_by_its_command(make_gateway: Callable[[str], Gateway],
                                                                       scripted: Server) -> None:
    """A done item states the call the client runs, whatever its `status` says."""
    gateway = make_gateway(POLICY)
    shell = {**BUILTIN_CALLS["shell"], "status": "in_progress"}
    _script(scripted, _shell_stream(shell, shell, {**shell, "status": "completed"}))
    thread, _ = in_thread(lambda: list(_client(gateway).responses.create(model="gpt-test", input="go", stream=True)))
    approval = _wait_pending(gateway)
    assert json.loads(approval["arguments"]) == {"action": shell["action"]}
    _decide(gateway, approval["id"], "deny")
    thread.join(15)


def test_a_command_changed_after_its_approval_fails_closed(make_gateway: Callable[[str], Gateway],
                                                           scripted: Server) -> None:
    """`response.completed` restates the call, and clients (the OpenAI and Agents SDKs)
    take it from there: a command other than the one approved must not reach them."""
    gateway = make_gateway(POLICY)
    approved = {**BUILTIN_CALLS["local_shell"], "action": {"type": "exec", "command": ["ls"], "env": {}}}
    _script(scripted, _shell_stream({**approved, "status": "in_progress"}, approved, BUILTIN_CALLS["local_shell"]))
    received: list[str] = []

    def run() -> None:
        for event in _client(gateway).responses.create(model="gpt-test", input="go", stream=True):
            received.append(event.model_dump_json())

    thread, box = in_thread(run)
    approval = _wait_pending(gateway)
    assert json.loads(approval["arguments"]) == {"action": approved["action"]}
    _decide(gateway, approval["id"], "approve")
    thread.join(15)
    assert isinstance(box.get("error"), openai.APIError), box
    assert "changed its arguments" in str(box["error"])
    assert not any('"rm"' in event for event in received), received


@pytest.mark.parametrize("status", ["completed", "in_progress"])
def test_a_call_stated_only_in_the_final_event_is_judged_by_its_command(make_gateway: Callable[[str], Gateway],
                                                                        scripted: Server, status: str) -> None:
    """The SDKs take calls from `response.completed`: a `status` there changes nothing."""
    gateway = make_gateway(NO_RM)
    response = _response([{**BUILTIN_CALLS["shell"], "status": status}])
    events = [{"type": "response.created", "response": {**response, "status": "in_progress", "output": []}},
              {"type": "response.completed", "response": response}]
    _script(scripted, [(event["type"], {**event, "sequence_number": n}) for n, event in enumerate(events)])
    received = list(_client(gateway).responses.create(model="gpt-test", input="go", stream=True))
    assert "rm -rf" not in received[-1].model_dump_json()
