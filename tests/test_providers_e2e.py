"""Switching an alias between the OpenAI, Anthropic and Gemini fakes changes nothing the
client sees but the text and the model name: the openai SDK and the openai-agents SDK,
streamed and not, with tools and handoffs."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from agents import Agent, function_tool
from openai import OpenAI

from tests.agents_support import agents_model, run_agent
from tests.harness import TENANT_KEY, BackgroundLoop, Gateway, base_config, start_app
from tests.providers_matrix import PROVIDERS, FakeProvider, make_fake

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
CITIES: list[str] = []


@pytest.fixture(params=PROVIDERS)
def fake(request: pytest.FixtureRequest, bg: BackgroundLoop) -> Iterator[tuple[FakeProvider, str]]:
    provider = make_fake(request.param)
    server = bg.run(start_app(provider.app))
    yield provider, server.url
    bg.run(server.runner.cleanup())


@pytest.fixture
def routed(fake: tuple[FakeProvider, str], gateway_factory: Callable[..., Gateway]) -> tuple[FakeProvider, Gateway]:
    provider, url = fake
    config = base_config("http://127.0.0.1:9")
    config["providers"] = {"upstream": provider.provider_config(url)}
    config["models"] = {"assistant": {"targets": [{"provider": "upstream", "model": provider.model}]}}
    config["tenants"]["globex"]["models"] = ["assistant"]
    # The shipped policies (tool_call and response rules) so every answer passes the gates.
    config["policies_dir"] = str(Path(__file__).resolve().parent.parent / "policies")
    return provider, gateway_factory(config)


def client(gateway: Gateway) -> OpenAI:
    return OpenAI(base_url=gateway.base_url, api_key=TENANT_KEY, max_retries=0)


def test_text_non_stream(routed: tuple[FakeProvider, Gateway]) -> None:
    fake, gateway = routed
    fake.text("The answer is 42.")
    raw = client(gateway).chat.completions.with_raw_response.create(
        model="assistant", messages=[{"role": "system", "content": "Be brief."},
                                     {"role": "user", "content": "What is the answer?"}])
    completion = raw.parse()
    assert completion.choices[0].message.content == "The answer is 42."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.prompt_tokens > 0
    assert completion.usage.completion_tokens > 0
    assert raw.headers["x-lockgate-model"] == fake.model
    assert "Be brief." in json.dumps(fake.last_request())


@pytest.mark.parametrize("include_usage", [False, True])
def test_text_stream(routed: tuple[FakeProvider, Gateway], include_usage: bool) -> None:
    fake, gateway = routed
    fake.text("Streaming works across providers.")
    options = {"include_usage": True} if include_usage else None
    chunks = list(client(gateway).chat.completions.create(
        model="assistant", messages=[{"role": "user", "content": "hi"}], stream=True,
        **({"stream_options": options} if options else {})))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Streaming works across providers."
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    usage_chunks = [c for c in chunks if c.usage is not None]
    if include_usage:
        assert len(usage_chunks) == 1 and usage_chunks[0].choices == []
        assert usage_chunks[0].usage.total_tokens > 0  # type: ignore[union-attr]
    else:
        assert usage_chunks == []


@pytest.mark.parametrize("stream", [False, True])
def test_tool_call(routed: tuple[FakeProvider, Gateway], stream: bool) -> None:
    fake, gateway = routed
    fake.tool_call("get_weather", {"city": "Lisbon"})
    api = client(gateway)
    messages = [{"role": "user", "content": "Weather in Lisbon?"}]
    if stream:
        with api.chat.completions.stream(model="assistant", messages=messages, tools=[WEATHER_TOOL]) as events:
            completion = events.get_final_completion()
    else:
        completion = api.chat.completions.create(model="assistant", messages=messages, tools=[WEATHER_TOOL])
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Lisbon"}
    # The result goes back in the provider's own form, and the model answers.
    fake.text("Sunny in Lisbon.")
    answer = api.chat.completions.create(model="assistant", tools=[WEATHER_TOOL], messages=[
        *messages, choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"}])
    assert answer.choices[0].message.content == "Sunny in Lisbon."
    assert "sunny" in json.dumps(fake.last_request())


@pytest.mark.parametrize("stream", [False, True])
def test_legacy_functions_get_a_function_call(routed: tuple[FakeProvider, Gateway], stream: bool) -> None:
    """A client that declared `functions` reads `function_call`, never `tool_calls`."""
    fake, gateway = routed
    if fake.kind == "openai":
        pytest.skip("the request goes to OpenAI as sent; OpenAI answers legacy functions itself")
    fake.tool_call("get_weather", {"city": "Lisbon"})
    api = client(gateway)
    messages = [{"role": "user", "content": "Weather in Lisbon?"}]
    functions = [WEATHER_TOOL["function"]]
    if stream:
        chunks = [chunk for chunk in api.chat.completions.create(
            model="assistant", messages=messages, functions=functions, stream=True) if chunk.choices]
        assert not any(chunk.choices[0].delta.tool_calls for chunk in chunks)
        parts = [chunk.choices[0].delta.function_call for chunk in chunks if chunk.choices[0].delta.function_call]
        call = {"name": "".join(part.name or "" for part in parts),
                "arguments": "".join(part.arguments or "" for part in parts)}
        finish = [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices[0].finish_reason]
    else:
        choice = api.chat.completions.create(model="assistant", messages=messages, functions=functions).choices[0]
        assert choice.message.tool_calls is None and choice.message.function_call is not None
        call, finish = choice.message.function_call.model_dump(), [choice.finish_reason]
    assert finish == ["function_call"]
    assert call["name"] == "get_weather" and json.loads(call["arguments"]) == {"city": "Lisbon"}
    # The legacy way back: the call in the assistant turn, the result in a `function` message.
    fake.text("Sunny in Lisbon.")
    answer = api.chat.completions.create(model="assistant", functions=functions, messages=[
        *messages, {"role": "assistant", "content": None, "function_call": call},
        {"role": "function", "name": "get_weather", "content": "sunny"}])
    assert answer.choices[0].message.content == "Sunny in Lisbon."
    assert "sunny" in json.dumps(fake.last_request())


def test_responses_api(routed: tuple[FakeProvider, Gateway]) -> None:
    fake, gateway = routed
    api = client(gateway)
    fake.text("Responses on any provider.")
    assert api.responses.create(model="assistant", input="hi").output_text == "Responses on any provider."
    fake.text("Streamed responses too.")
    with api.responses.stream(model="assistant", input="hi", instructions="Be nice.") as events:
        final = events.get_final_response()
    assert final.output_text == "Streamed responses too."
    assert final.usage is not None and final.usage.input_tokens > 0


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    CITIES.append(city)
    return f"sunny in {city}"


@pytest.mark.parametrize("api", ["chat", "responses"])
@pytest.mark.parametrize("streamed", [False, True], ids=["run", "streamed"])
async def test_agents_handoff_and_tool(routed: tuple[FakeProvider, Gateway], api: str, streamed: bool) -> None:
    fake, gateway = routed
    CITIES.clear()
    fake.tool_call("transfer_to_weather_specialist", {})
    fake.tool_call("get_weather", {"city": "Paris"})
    fake.text("It is sunny in Paris.")
    model = agents_model(api, gateway)
    specialist = Agent(name="weather_specialist", instructions="Use get_weather.", tools=[get_weather], model=model)
    triage = Agent(name="triage", instructions="Hand off weather questions.", handoffs=[specialist], model=model)
    result = await run_agent(triage, "Weather in Paris?", streamed=streamed)
    assert result.final_output == "It is sunny in Paris."
    assert result.last_agent.name == "weather_specialist"
    assert CITIES == ["Paris"]
    assert fake.request_count() == 3
    assert "sunny in Paris" in json.dumps(fake.last_request())
