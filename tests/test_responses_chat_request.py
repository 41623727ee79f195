"""Responses request -> Chat Completions request.

Golden fixtures (tests/fixtures/responses_chat/request/*.json) cover each mapping and each
refusal; every translated request is also checked against the `openai` SDK's Chat
Completions request types. The last tests run real Agents SDK agents (a function tool and
a handoff) against a fake Responses server that answers through this package, and check
the chat requests their Responses requests translate to.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pydantic
import pytest
from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled
from aiohttp import web
from openai import AsyncOpenAI
from openai.types.chat.completion_create_params import CompletionCreateParamsBase

from providers.base import UnsupportedRequest
from providers.responses_chat import chat_to_responses_response, responses_to_chat_request
from tests.golden import golden_cases

FIXTURES = Path(__file__).parent / "fixtures" / "responses_chat" / "request"
CHAT_REQUEST = pydantic.TypeAdapter(CompletionCreateParamsBase)


def assert_valid_chat_request(chat: dict[str, Any]) -> None:
    """Validate against the SDK's request types, consuming the lazily validated iterables."""

    def consume(value: Any) -> None:
        if isinstance(value, dict):
            for item in value.values():
                consume(item)
        elif not isinstance(value, str | bytes) and hasattr(value, "__iter__"):
            for item in value:
                consume(item)

    consume(CHAT_REQUEST.validate_python(chat))


@pytest.mark.parametrize("case", golden_cases(FIXTURES))
def test_golden(case: dict[str, Any]) -> None:
    body = copy.deepcopy(case["input"])
    if "error" in case:
        with pytest.raises(UnsupportedRequest) as raised:
            responses_to_chat_request(body)
        assert raised.value.param == case["error"]["param"]
        for fragment in case["error"]["message_contains"]:
            assert fragment in raised.value.message
        return
    chat = responses_to_chat_request(body)
    assert chat == case["expected"]
    assert body == case["input"], "the translation must not change its input"
    assert_valid_chat_request(chat)


def test_translated_messages_are_fresh_objects() -> None:
    body = {"model": "m", "input": [
        {"role": "assistant", "content": "Checking."},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
    ]}
    first = responses_to_chat_request(body)
    second = responses_to_chat_request(body)
    first["messages"][0]["tool_calls"].append("changed")
    assert len(second["messages"][0]["tool_calls"]) == 1


# --- a real Agents SDK run ----------------------------------------------------------


def _completion(text: str | None = None, calls: list[tuple[str, str, str]] = ()) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if calls:
        message["tool_calls"] = [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
            for call_id, name, arguments in calls
        ]
    return {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1741476542, "model": "upstream-model",
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}],
        "usage": {"prompt_tokens": 40, "completion_tokens": 8, "total_tokens": 48},
    }


class FakeResponsesServer:
    """Answers `POST /v1/responses` with scripted chat completions, translated to Responses."""

    def __init__(self, script: list[dict[str, Any]]) -> None:
        self.script = list(script)
        self.chat_requests: list[dict[str, Any]] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.chat_requests.append(responses_to_chat_request(body))
        completion = self.script.pop(0)
        return web.json_response(chat_to_responses_response(completion, body))


@pytest.fixture
async def agents_client(aiohttp_server: Any) -> Any:
    set_tracing_disabled(True)

    async def start(script: list[dict[str, Any]]) -> tuple[FakeResponsesServer, OpenAIResponsesModel]:
        fake = FakeResponsesServer(script)
        app = web.Application()
        app.router.add_post("/v1/responses", fake.handle)
        server = await aiohttp_server(app)
        client = AsyncOpenAI(base_url=str(server.make_url("/v1")), api_key="x", max_retries=0)
        return fake, OpenAIResponsesModel(model="gpt-test", openai_client=client)

    return start


@function_tool
def get_weather(city: str) -> str:
    """Get the weather for a city."""
    return f"Sunny in {city}"


async def test_agents_sdk_tool_call_then_handoff(agents_client: Any) -> None:
    fake, model = await agents_client([
        _completion(calls=[("call_w", "get_weather", '{"city": "Paris"}')]),
        _completion("Handing over.", calls=[("call_h", "transfer_to_billing_agent", "{}")]),
        _completion("Billing here: Paris is sunny, no charge."),
    ])
    billing = Agent(name="Billing agent", instructions="You handle billing.", model=model)
    triage = Agent(name="Triage", instructions="You are the triage agent.", model=model,
                   tools=[get_weather], handoffs=[billing])

    result = await Runner.run(triage, "What's the weather in Paris?")

    assert result.final_output == "Billing here: Paris is sunny, no charge."
    assert result.last_agent is billing
    first, second, third = fake.chat_requests
    assert first["model"] == "gpt-test"
    assert first["messages"] == [
        {"role": "system", "content": "You are the triage agent."},
        {"role": "user", "content": "What's the weather in Paris?"},
    ]
    tool_names = [tool["function"]["name"] for tool in first["tools"]]
    assert tool_names == ["get_weather", "transfer_to_billing_agent"]
    assert first["tools"][0]["function"]["parameters"]["required"] == ["city"]

    weather_call = {"id": "call_w", "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    assert second["messages"][2:] == [
        {"role": "assistant", "content": None, "tool_calls": [weather_call]},
        {"role": "tool", "tool_call_id": "call_w", "content": "Sunny in Paris"},
    ]

    # The billing agent sees the whole conversation, the handoff included, and has no tools.
    assert third["messages"][0] == {"role": "system", "content": "You handle billing."}
    assert third["messages"][2] == second["messages"][2]
    handoff_turn, handoff_output = third["messages"][4:6]
    assert handoff_turn["role"] == "assistant"
    assert handoff_turn["content"] == "Handing over."
    assert handoff_turn["tool_calls"][0]["function"]["name"] == "transfer_to_billing_agent"
    assert handoff_output["role"] == "tool" and handoff_output["tool_call_id"] == "call_h"
    assert "Billing agent" in handoff_output["content"]
    assert "tools" not in third
    for chat in fake.chat_requests:
        assert_valid_chat_request(chat)


async def test_agents_sdk_parallel_calls_and_usage(agents_client: Any) -> None:
    fake, model = await agents_client([
        _completion(calls=[("call_p", "get_weather", '{"city": "Paris"}'),
                           ("call_r", "get_weather", '{"city": "Rome"}')]),
        _completion("Both sunny."),
    ])
    agent = Agent(name="Weather", instructions="Use tools.", model=model, tools=[get_weather])

    result = await Runner.run(agent, "Paris and Rome?")

    assert result.final_output == "Both sunny."
    assistant, paris, rome = fake.chat_requests[1]["messages"][2:]
    assert [call["id"] for call in assistant["tool_calls"]] == ["call_p", "call_r"]
    assert (paris["tool_call_id"], paris["content"]) == ("call_p", "Sunny in Paris")
    assert (rome["tool_call_id"], rome["content"]) == ("call_r", "Sunny in Rome")
    usage = result.context_wrapper.usage
    assert (usage.requests, usage.input_tokens, usage.output_tokens) == (2, 80, 16)
