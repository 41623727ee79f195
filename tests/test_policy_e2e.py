"""Tool whitelists and guardrails enforced over real HTTP: on the tools a request declares
and on the tool calls the model returns, streamed or not, with no way around them."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from tests.fakes.openai_server import Script, State
from tests.harness import ADMIN_KEY, OTHER_TENANT_KEY, TENANT_KEY, BackgroundLoop, Gateway, Server
from tests.policy_setup import THIRD_TENANT_KEY, policy_config
from tests.test_approvals_e2e import decide, pending


def tool(name: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}


USER = [{"role": "user", "content": "help"}]


@pytest.fixture
def gateway(gateway_factory: Callable[..., Gateway], openai_upstream: Server, tmp_path: Path) -> Gateway:
    return gateway_factory(policy_config(openai_upstream.url, tmp_path))


def client(gateway: Gateway, key: str = TENANT_KEY) -> OpenAI:
    return OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0)


def post(gateway: Gateway, path: str, body: dict[str, Any], key: str = TENANT_KEY) -> httpx.Response:
    return httpx.post(f"{gateway.base_url}/{path}", json=body, headers={"Authorization": f"Bearer {key}"},
                      timeout=30)


# -- request stage: declared tools ------------------------------------------------------

ALLOW_LIST_VARIANTS = ["run_shell", "Get_weather", "GET_WEATHER", " get_weather", "get_weather ",
                       "ｇｅｔ＿ｗｅａｔｈｅｒ", "get\u200b_weather", "get_w\u0435ather", "get_weather\u2060"]


@pytest.mark.parametrize("name", ALLOW_LIST_VARIANTS)
def test_allow_list_refuses_every_variant(gateway: Gateway, upstream_state: State, name: str) -> None:
    with pytest.raises(openai.PermissionDeniedError) as raised:
        client(gateway).chat.completions.create(model="gpt-test", messages=USER, tools=[tool(name)])
    error = raised.value.body
    assert error["type"] == "policy_violation" and error["code"] == "tool_not_allowed"  # type: ignore[index]
    assert "tool-whitelist" in raised.value.message
    assert upstream_state.requests == []


DENY_LIST_VARIANTS = ["delete_file", "DELETE_FILE", " delete_file ", "ｄｅｌｅｔｅ＿ｆｉｌｅ", "delete\u200b_file",
                      "d\u0435l\u0435te_file", "de1ete_fi1e", "Delete-File"]


@pytest.mark.parametrize("name", DENY_LIST_VARIANTS)
def test_deny_list_catches_every_variant(gateway: Gateway, upstream_state: State, name: str) -> None:
    response = post(gateway, "chat/completions", {"model": "gpt-test", "messages": USER, "tools": [tool(name)]},
                    THIRD_TENANT_KEY)
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "tool_not_allowed"
    assert "no-delete" in response.json()["error"]["message"]


@pytest.mark.parametrize(("path", "body"), [
    ("chat/completions", {"messages": USER, "functions": [{"name": "delete_file"}]}),
    ("chat/completions", {"messages": USER, "tools": [tool("get_weather")],
                          "tool_choice": {"type": "function", "function": {"name": "delete_file"}}}),
    ("responses", {"input": "hi", "tools": [{"type": "function", "name": "delete_file",
                                             "parameters": {"type": "object"}}]}),
    ("responses", {"input": "hi", "tools": [{"type": "web_search"}]}),
], ids=["legacy functions", "tool_choice forcing", "responses function tool", "responses built-in tool"])
def test_other_request_shapes_cannot_bypass(gateway: Gateway, upstream_state: State, path: str,
                                            body: dict[str, Any]) -> None:
    response = post(gateway, path, {"model": "gpt-test", **body})
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "tool_not_allowed"
    assert upstream_state.requests == []


def test_strip_removes_the_tool_and_goes_on(gateway: Gateway, upstream_state: State) -> None:
    upstream_state.queue.append(Script(content="ok"))
    client(gateway, OTHER_TENANT_KEY).chat.completions.create(
        model="gpt-test", messages=USER, tools=[tool("get_weather"), tool("run_shell")])
    sent = [t["function"]["name"] for t in upstream_state.requests[-1]["tools"]]
    assert sent == ["get_weather"]


# -- tool_call stage: what the model returns ------------------------------------------------

def test_blocked_returned_call_is_replaced_by_text(gateway: Gateway, upstream_state: State) -> None:
    upstream_state.queue.append(Script(tool_calls=[{"name": "run_shell", "arguments": {"path": "/"}}]))
    raw = client(gateway).chat.completions.with_raw_response.create(model="gpt-test", messages=USER,
                                                                    tools=[tool("get_weather")])
    choice = raw.parse().choices[0]
    assert choice.message.tool_calls is None
    assert choice.finish_reason == "stop"
    assert "run_shell" in choice.message.content and "tool-whitelist" in choice.message.content
    assert "whitelist/tool-whitelist=deny" in raw.headers["x-lockgate-policies"]


@pytest.mark.parametrize("pieces", [1, 3, 17])
def test_blocked_call_split_across_chunks_never_reaches_the_client(gateway: Gateway, upstream_state: State,
                                                                   pieces: int) -> None:
    upstream_state.queue.append(Script(content="Let me do that.", text_pieces=4, argument_pieces=pieces,
                                       tool_calls=[{"name": "run_shell", "arguments": {"path": "/etc/passwd"}}]))
    with httpx.stream("POST", f"{gateway.base_url}/chat/completions", timeout=30,
                      headers={"Authorization": f"Bearer {TENANT_KEY}"},
                      json={"model": "gpt-test", "messages": USER, "tools": [tool("get_weather")], "stream": True}
                      ) as response:
        body = response.read().decode()
    assert "run_shell\"" not in body.replace("'run_shell'", "")  # only named inside the replacement text
    assert "/etc/passwd" not in body
    chunks = [json.loads(line[5:]) for line in body.splitlines() if line.startswith("data: {")]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text.startswith("Let me do that.") and "blocked by policy rule 'tool-whitelist'" in text
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]] \
        == ["stop"]


def test_parallel_calls_only_the_disallowed_one_is_removed(gateway: Gateway, upstream_state: State) -> None:
    upstream_state.queue.append(Script(argument_pieces=4, tool_calls=[
        {"name": "get_weather", "arguments": {"city": "Oslo"}, "id": "call_ok"},
        {"name": "run_shell", "arguments": {"path": "/"}, "id": "call_bad"}]))
    api = client(gateway)
    with api.chat.completions.stream(model="gpt-test", messages=USER, tools=[tool("get_weather")]) as stream:
        final = stream.get_final_completion()
    calls = final.choices[0].message.tool_calls
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("call_ok", "get_weather", {"city": "Oslo"})]
    assert final.choices[0].finish_reason == "tool_calls"


def test_text_streams_while_a_tool_rule_is_active(gateway: Gateway, upstream_state: State,
                                                  bg: BackgroundLoop) -> None:
    release = bg.run(_event())
    upstream_state.queue.append(Script(content="one two three four", text_pieces=4, hold_after=3,
                                       release=release, tool_calls=[{"name": "get_weather", "arguments": {}}]))
    stream = client(gateway).chat.completions.create(model="gpt-test", messages=USER, tools=[tool("get_weather")],
                                                     stream=True)
    seen = []
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            seen.append(chunk.choices[0].delta.content)
            if len(seen) == 2:
                assert not release.is_set()  # text got here while the upstream was still holding
                bg.call(release.set)
    assert "".join(seen) == "one two three four"


async def _event() -> asyncio.Event:
    return asyncio.Event()


def test_unnamed_tool_call_fails_closed(gateway: Gateway, upstream_state: State) -> None:
    upstream_state.queue.append(Script(tool_calls=[{"name": "", "arguments": {"x": 1}}]))
    completion = client(gateway).chat.completions.create(model="gpt-test", messages=USER,
                                                         tools=[tool("get_weather")], stream=False)
    assert completion.choices[0].message.tool_calls is None


def test_on_violation_error_ends_the_stream_with_an_error_event(gateway: Gateway, upstream_state: State) -> None:
    upstream_state.queue.append(Script(tool_calls=[{"name": "lookup", "arguments": {}}]))
    stream = client(gateway, "lg-test-umbrella-key").chat.completions.create(
        model="gpt-test", messages=USER, tools=[tool("lookup")], stream=True)
    with pytest.raises(openai.APIError) as raised:
        list(stream)
    assert "calls-must-be-weather" in str(raised.value)
    upstream_state.queue.append(Script(tool_calls=[{"name": "lookup", "arguments": {}}]))
    with pytest.raises(openai.PermissionDeniedError):
        client(gateway, "lg-test-umbrella-key").chat.completions.create(model="gpt-test", messages=USER,
                                                                        tools=[tool("lookup")])


def test_calls_sharing_an_id_each_wait_for_their_own_approval(gateway: Gateway, upstream_state: State) -> None:
    upstream_state.queue.append(Script(tool_calls=[
        {"name": "database_write", "arguments": {"table": "users"}, "id": "call_same"},
        {"name": "database_write", "arguments": {"table": "payroll"}, "id": "call_same"}]))
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(client(gateway).chat.completions.create, model="gpt-test", messages=USER,
                             tools=[tool("database_write")])
        first = pending(gateway)
        assert json.loads(first["arguments"]) == {"table": "users"}
        decide(gateway, first["id"], "approve")
        second = pending(gateway)  # an approval of its own, showing its own arguments
        assert second["id"] != first["id"] and json.loads(second["arguments"]) == {"table": "payroll"}
        decide(gateway, second["id"], "deny", "not payroll")
        message = answer.result(timeout=30).choices[0].message
    assert [(c.id, json.loads(c.function.arguments)) for c in message.tool_calls or []] == [
        ("call_same", {"table": "users"})]
    assert message.content == "Tool call 'database_write' was not approved (policy rule 'database-writes'): not payroll"


def test_responses_function_call_is_gated(gateway: Gateway, upstream_state: State) -> None:
    upstream_state.queue.append(Script(tool_calls=[{"name": "run_shell", "arguments": {}}]))
    response = client(gateway).responses.create(model="gpt-test", input="hi", tools=[{
        "type": "function", "name": "get_weather", "parameters": {"type": "object"}}])
    assert not [item for item in response.output if item.type == "function_call"]
    assert "blocked by policy rule 'tool-whitelist'" in response.output_text
    upstream_state.queue.append(Script(tool_calls=[{"name": "run_shell", "arguments": {}}], argument_pieces=5))
    with client(gateway).responses.stream(model="gpt-test", input="hi", tools=[{
            "type": "function", "name": "get_weather", "parameters": {"type": "object"}}]) as stream:
        final = stream.get_final_response()
    assert not [item for item in final.output if item.type == "function_call"]


# -- response stage: guardrails ----------------------------------------------------------

SECRET = "sk-proj-ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcd"


@pytest.mark.parametrize("stream", [False, True])
def test_api_keys_are_redacted_from_answers(gateway: Gateway, upstream_state: State, stream: bool) -> None:
    upstream_state.queue.append(Script(content=f"Your key is {SECRET} keep it safe", text_pieces=9))
    api = client(gateway, THIRD_TENANT_KEY)
    if stream:
        text = "".join(c.choices[0].delta.content or "" for c in api.chat.completions.create(
            model="gpt-test", messages=USER, stream=True) if c.choices)
    else:
        text = api.chat.completions.create(model="gpt-test", messages=USER).choices[0].message.content
    assert SECRET not in text and "[REDACTED]" in text and text.endswith("keep it safe")


# -- bookkeeping ---------------------------------------------------------------------------

def test_decisions_are_counted_and_audited(gateway: Gateway, upstream_state: State) -> None:
    upstream_state.queue.append(Script(content="fine"))
    raw = client(gateway, THIRD_TENANT_KEY).chat.completions.with_raw_response.create(
        model="gpt-test", messages=[{"role": "user", "content": "this is shadowed"}])
    assert raw.parse().choices[0].message.content == "fine"  # a shadow rule never blocks
    assert "default/shadow-big-prompts=deny~shadow" in raw.headers["x-lockgate-policies"]
    metrics = httpx.get(f"{gateway.url}/metrics").text
    assert 'lockgate_policy_decisions_total{action="shadow_deny",policy="default",rule="shadow-big-prompts"} 1.0' \
        in metrics
    audit = httpx.get(f"{gateway.url}/admin/audit", headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                      params={"request_id": raw.headers["x-request-id"]}).json()["data"]
    assert [(e["rule"], e["shadow"]) for e in audit] == [("shadow-big-prompts", True)]


def test_policy_test_command_and_check(gateway: Gateway, tmp_path: Path) -> None:
    cases = tmp_path / "cases.yaml"
    cases.write_text("""\
- name: acme cannot declare run_shell
  tenant: acme
  policies: [whitelist]
  request:
    model: gpt-test
    messages: [{role: user, content: hi}]
    tools: [{type: function, function: {name: run_shell}}]
  expect: {action: deny, rule: tool-whitelist}
- name: a wrong expectation fails
  tenant: initech
  request: {model: gpt-test, messages: [{role: user, content: hi}]}
  expect: {action: deny}
""")
    run = subprocess.run([sys.executable, "-m", "gateway", "policy", "test", str(cases), "--config",
                          str(gateway.config_path)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert "PASS acme cannot declare run_shell" in run.stdout and "FAIL a wrong expectation fails" in run.stdout
    check = subprocess.run([sys.executable, "-m", "gateway", "check", "--config", str(gateway.config_path)],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0 and "4 policies" in check.stdout
