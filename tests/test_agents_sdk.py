"""The openai-agents SDK through the gateway: a triage agent hands off to a specialist
that calls a function tool; Chat Completions and Responses, streamed and not."""

from __future__ import annotations

import json

import pytest
from agents import (
    Agent,
    ModelSettings,
    OpenAIChatCompletionsModel,
    OpenAIResponsesModel,
    Runner,
    function_tool,
    set_tracing_disabled,
)
from openai import AsyncOpenAI

from tests.fakes.openai_server import Script, State
from tests.harness import TENANT_KEY, Gateway

set_tracing_disabled(True)
CALLS: list[str] = []


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    CALLS.append(city)
    return f"sunny in {city}"


def build_agents(model: object) -> Agent:
    specialist = Agent(name="weather_specialist", instructions="Answer weather questions with get_weather.",
                       tools=[get_weather], model=model, model_settings=ModelSettings(temperature=0))
    return Agent(name="triage", instructions="Hand weather questions to the specialist.", handoffs=[specialist],
                 model=model)


def script_conversation(state: State) -> None:
    state.queue += [
        Script(tool_calls=[{"name": "transfer_to_weather_specialist", "arguments": {}}]),
        Script(tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}], argument_pieces=4),
        Script(content="It is sunny in Paris."),
    ]


def make_model(api: str, gateway: Gateway) -> object:
    client = AsyncOpenAI(base_url=gateway.base_url, api_key=TENANT_KEY, max_retries=0)
    if api == "chat":
        return OpenAIChatCompletionsModel(model="gpt-test", openai_client=client)
    return OpenAIResponsesModel(model="gpt-test", openai_client=client)


@pytest.mark.parametrize("api", ["chat", "responses"])
@pytest.mark.parametrize("streamed", [False, True], ids=["run", "streamed"])
async def test_handoff_then_function_tool(gateway: Gateway, upstream_state: State, api: str, streamed: bool
                                          ) -> None:
    CALLS.clear()
    script_conversation(upstream_state)
    triage = build_agents(make_model(api, gateway))
    if streamed:
        result = Runner.run_streamed(triage, "What's the weather in Paris?")
        kinds = [event.type async for event in result.stream_events()]
        assert "raw_response_event" in kinds
    else:
        result = await Runner.run(triage, "What's the weather in Paris?")
    assert result.final_output == "It is sunny in Paris."
    assert result.last_agent.name == "weather_specialist"
    assert CALLS == ["Paris"]
    # Three model calls went upstream; the last carried the tool's output back.
    assert len(upstream_state.requests) == 3
    last = json.dumps(upstream_state.requests[-1])
    assert "sunny in Paris" in last
    assert all(request["model"] == "gpt-test-upstream" for request in upstream_state.requests)


async def test_agents_sdk_with_environment_variables_only(gateway: Gateway, upstream_state: State,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Only OPENAI_BASE_URL and OPENAI_API_KEY change; the SDK's defaults do the rest."""
    monkeypatch.setenv("OPENAI_BASE_URL", gateway.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", TENANT_KEY)
    CALLS.clear()
    script_conversation(upstream_state)
    triage = build_agents("gpt-test")
    result = await Runner.run(triage, "What's the weather in Paris?")
    assert result.final_output == "It is sunny in Paris."
    assert CALLS == ["Paris"]
