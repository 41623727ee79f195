"""Tool history sent to Anthropic: declared tools for a request without any, and Gemini ids.

An Agents SDK handoff to an agent without tools sends the `transfer_to_...` call and its
result but no tools; Anthropic has refused that with a 400, so the translation declares
the tools the history used, with `tool_choice` none. Tool call ids that carry a Gemini
thought signature lose it on the way to Anthropic.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from typing import Any

import pydantic
import pytest
from agents import Agent, set_tracing_disabled
from anthropic.types import message_create_params

from providers.anthropic import chat_to_anthropic
from providers.anthropic.tools import PLACEHOLDER_TOOL, history_tools
from tests.agents_support import agents_model, run_agent
from tests.fakes.anthropic_server import STATE, Script, create_app
from tests.harness import BackgroundLoop, Gateway, Server, base_config, serving
from tests.providers_matrix import ANTHROPIC_KEY

set_tracing_disabled(True)  # the Agents SDK would try to export traces to OpenAI
MODEL = "claude-sonnet-4-5"
HEADERS = {"x-api-key": "test-anthropic-key", "anthropic-version": "2023-06-01"}
SDK_REQUEST = pydantic.TypeAdapter(message_create_params.MessageCreateParamsNonStreaming)
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}


def call(call_id: str, name: str, arguments: str = "{}") -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


HANDOFF_CHAT = [
    {"role": "system", "content": "You are the specialist."},
    {"role": "user", "content": "Help me."},
    {"role": "assistant", "content": None, "tool_calls": [call("call_1", "transfer_to_specialist")]},
    {"role": "tool", "tool_call_id": "call_1", "content": '{"assistant": "specialist"}'},
]


def use(tool_id: str, name: str) -> dict[str, Any]:
    return {"type": "tool_use", "id": tool_id, "name": name, "input": {}}


def result(tool_id: str) -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": tool_id, "content": "ok"}


# --- the pure function -------------------------------------------------------------------


def test_no_tool_blocks_declare_nothing() -> None:
    turns = [{"role": "user", "content": [{"type": "text", "text": "hi"}]},
             {"role": "assistant", "content": [{"type": "text", "text": "hello"}]}]
    assert history_tools(turns) == ([], None)


def test_each_tool_name_of_the_history_is_declared_once_and_not_callable() -> None:
    turns = [{"role": "assistant", "content": [use("a", "transfer_to_specialist"), use("b", "lookup")]},
             {"role": "user", "content": [result("a"), result("b")]},
             {"role": "assistant", "content": [use("c", "lookup")]},
             {"role": "user", "content": [result("c")]}]
    tools, choice = history_tools(turns)
    assert [tool["name"] for tool in tools] == ["transfer_to_specialist", "lookup"]
    assert all(tool["input_schema"] == {"type": "object"} for tool in tools)
    assert all("earlier turns" in tool["description"] for tool in tools)
    assert choice == {"type": "none"}


def test_results_without_a_known_call_get_a_placeholder_tool() -> None:
    tools, choice = history_tools([{"role": "user", "content": [result("gone")]}])
    assert [tool["name"] for tool in tools] == [PLACEHOLDER_TOOL]
    assert tools[0]["input_schema"] == {"type": "object"} and "Placeholder" in tools[0]["description"]
    assert choice == {"type": "none"}
    # With a name in sight, an orphan result adds nothing beyond it.
    turns = [{"role": "assistant", "content": [use("a", "lookup")]},
             {"role": "user", "content": [result("a"), result("gone")]}]
    assert [tool["name"] for tool in history_tools(turns)[0]] == ["lookup"]


def test_handoff_without_tools_declares_the_transfer_tool() -> None:
    request = chat_to_anthropic({"model": "gpt-5.5", "messages": HANDOFF_CHAT}, MODEL)
    assert [tool["name"] for tool in request["tools"]] == ["transfer_to_specialist"]
    assert request["tool_choice"] == {"type": "none"}
    SDK_REQUEST.validate_python(request)
    # Legacy `function_call` history counts the same.
    legacy = [{"role": "user", "content": "Hi"},
              {"role": "assistant", "content": None, "function_call": {"name": "lookup", "arguments": "{}"}},
              {"role": "function", "name": "lookup", "content": "ok"}]
    request = chat_to_anthropic({"model": "gpt-5.5", "messages": legacy}, MODEL)
    assert [tool["name"] for tool in request["tools"]] == ["lookup"]
    assert request["tool_choice"] == {"type": "none"}


def test_declared_tools_of_the_client_are_left_alone() -> None:
    request = chat_to_anthropic({"model": "gpt-5.5", "messages": HANDOFF_CHAT, "tools": [WEATHER]}, MODEL)
    assert [tool["name"] for tool in request["tools"]] == ["get_weather"]
    assert "tool_choice" not in request
    body = {"model": "gpt-5.5", "messages": HANDOFF_CHAT, "tools": [WEATHER], "tool_choice": "required"}
    assert chat_to_anthropic(body, MODEL)["tool_choice"] == {"type": "any"}


# --- the fake refuses what Anthropic refused ---------------------------------------------


@pytest.mark.parametrize("tools", [None, []], ids=["absent", "empty"])
async def test_fake_refuses_tool_blocks_without_tools(aiohttp_client: Any, tools: list[Any] | None) -> None:
    client = await aiohttp_client(create_app())
    body: dict[str, Any] = {"model": MODEL, "max_tokens": 64, "messages": [
        {"role": "user", "content": "Help me."},
        {"role": "assistant", "content": [use("toolu_1", "transfer_to_specialist")]},
        {"role": "user", "content": [result("toolu_1")]}]}
    if tools is not None:
        body["tools"] = tools
    response = await client.post("/v1/messages", json=body, headers=HEADERS)
    payload = await response.json()
    assert response.status == 400
    assert payload["type"] == "error" and payload["error"]["type"] == "invalid_request_error"
    assert payload["error"]["message"] == ("Requests which include `tool_use` or `tool_result` blocks must "
                                           "define tools.")
    assert payload["request_id"] == response.headers["request-id"]
    translated = chat_to_anthropic({"model": "gpt-5.5", "messages": HANDOFF_CHAT}, MODEL)
    response = await client.post("/v1/messages", json=translated, headers=HEADERS)
    assert response.status == 200, await response.text()


# --- Gemini thought signatures in tool call ids ------------------------------------------


async def test_gemini_signature_is_cut_from_tool_ids(aiohttp_client: Any) -> None:
    signature = base64.urlsafe_b64encode(bytes(range(256)) * 2).decode().rstrip("=")
    gemini_id = f"call_abc__gts_{signature}"
    body = {"model": "gpt-5.5", "tools": [WEATHER], "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None,
         "tool_calls": [call(gemini_id, "get_weather", '{"city": "Paris"}')]},
        {"role": "tool", "tool_call_id": gemini_id, "content": "sunny"}]}
    request = chat_to_anthropic(body, MODEL)
    assert request["messages"][1]["content"] == [
        {"type": "tool_use", "id": "call_abc", "name": "get_weather", "input": {"city": "Paris"}}]
    assert request["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "call_abc", "content": "sunny"}]
    client = await aiohttp_client(create_app())
    response = await client.post("/v1/messages", json=request, headers=HEADERS)
    assert response.status == 200, await response.text()


# --- the openai-agents SDK through the gateway -------------------------------------------


@pytest.fixture
def anthropic_fake(bg: BackgroundLoop) -> Iterator[Server]:
    yield from serving(bg, create_app(api_key=ANTHROPIC_KEY))


@pytest.fixture
def routed(anthropic_fake: Server, gateway_factory: Callable[..., Gateway]) -> Gateway:
    config = base_config("http://127.0.0.1:9")
    config["providers"] = {"claude": {"type": "anthropic", "base_url": anthropic_fake.url,
                                      "api_key": ANTHROPIC_KEY}}
    config["models"] = {"assistant": {"targets": [{"provider": "claude", "model": MODEL}]}}
    config["tenants"]["globex"]["models"] = ["assistant"]
    return gateway_factory(config)


@pytest.mark.parametrize("api", ["chat", "responses"])
@pytest.mark.parametrize("streamed", [False, True], ids=["run", "streamed"])
async def test_agents_handoff_to_agent_without_tools(routed: Gateway, anthropic_fake: Server, api: str,
                                                     streamed: bool) -> None:
    state = anthropic_fake.app[STATE]
    state.queue += [
        Script(message={"content": [use("toolu_handoff", "transfer_to_specialist")], "stop_reason": "tool_use"}),
        Script(message={"content": [{"type": "text", "text": "The specialist answers."}]}, text_chunks=3),
    ]
    model = agents_model(api, routed)
    specialist = Agent(name="specialist", instructions="Answer directly.", model=model)
    triage = Agent(name="triage", instructions="Hand everything to the specialist.", handoffs=[specialist],
                   model=model)
    result = await run_agent(triage, "Help me.", streamed=streamed)
    assert result.final_output == "The specialist answers."
    assert result.last_agent.name == "specialist"
    assert len(state.requests) == 2
    first, second = state.requests
    assert [tool["name"] for tool in first["tools"]] == ["transfer_to_specialist"]
    assert first.get("tool_choice", {}).get("type") != "none"
    # The specialist has no tools: the history's transfer call is declared, and cannot be called.
    assert [tool["name"] for tool in second["tools"]] == ["transfer_to_specialist"]
    assert second["tools"][0]["input_schema"] == {"type": "object"}
    assert second["tool_choice"] == {"type": "none"}
    blocks = [block["type"] for turn in second["messages"] if isinstance(turn["content"], list)
              for block in turn["content"]]
    assert "tool_use" in blocks and "tool_result" in blocks
    assert "toolu_handoff" in json.dumps(second["messages"])
