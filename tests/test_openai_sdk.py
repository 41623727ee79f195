"""The official openai SDK, sync and async, through the gateway to a real fake upstream."""

from __future__ import annotations

import asyncio
import json

import httpx
import openai
import pytest
from openai import AsyncOpenAI, OpenAI

from tests.fakes.openai_server import Script, State
from tests.harness import OTHER_TENANT_KEY, TENANT_KEY, BackgroundLoop, Gateway

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def client(gateway: Gateway, key: str = TENANT_KEY) -> OpenAI:
    return OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0)


def async_client(gateway: Gateway, key: str = TENANT_KEY) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=gateway.base_url, api_key=key, max_retries=0)


def test_chat_non_stream_sync(gateway: Gateway, upstream_state: State) -> None:
    upstream_state.queue.append(Script(content="Paris is sunny."))
    raw = client(gateway).chat.completions.with_raw_response.create(
        model="gpt-test", messages=[{"role": "user", "content": "Weather in Paris?"}])
    completion = raw.parse()
    assert completion.choices[0].message.content == "Paris is sunny."
    assert completion.usage is not None and completion.usage.total_tokens > 0
    # The alias became the target's model upstream, and the upstream saw our provider key.
    assert upstream_state.requests[-1]["model"] == "gpt-test-upstream"
    assert upstream_state.headers[-1]["Authorization"].startswith("Bearer sk-upstream-test")
    assert raw.headers["x-lockgate-provider"] == "upstream"
    assert raw.headers["x-lockgate-model"] == "gpt-test-upstream"
    assert raw.headers["x-lockgate-attempts"] == "1"
    assert raw.headers["x-request-id"].startswith("req_")


async def test_chat_non_stream_async(gateway: Gateway, upstream_state: State) -> None:
    upstream_state.queue.append(Script(content="Async hello."))
    async with async_client(gateway) as api:
        completion = await api.chat.completions.create(
            model="gpt-test", messages=[{"role": "user", "content": "hi"}], temperature=0.2)
    assert completion.choices[0].message.content == "Async hello."
    assert upstream_state.requests[-1]["temperature"] == 0.2


def test_chat_stream_is_relayed_incrementally(gateway: Gateway, upstream_state: State, bg: BackgroundLoop
                                              ) -> None:
    release = bg.run(_new_event())
    upstream_state.queue.append(Script(content="one two three four five six", text_pieces=6, hold_after=3,
                                       release=release))
    stream = client(gateway).chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "count"}], stream=True)
    received = []
    for chunk in stream:
        received.append(chunk)
        if len(received) == 3:
            # The upstream is holding the rest of its stream: what we have arrived on its own.
            assert not release.is_set()
            bg.call(release.set)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in received if chunk.choices)
    assert text == "one two three four five six"
    assert received[-1].choices[0].finish_reason == "stop"


async def _new_event() -> asyncio.Event:
    return asyncio.Event()


async def test_stream_usage_is_delivered_when_asked(gateway: Gateway, upstream_state: State) -> None:
    async with async_client(gateway) as api:
        stream = await api.chat.completions.create(
            model="gpt-test", messages=[{"role": "user", "content": "hi"}], stream=True,
            stream_options={"include_usage": True})
        chunks = [chunk async for chunk in stream]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens > 0


async def test_stream_usage_is_metered_but_not_sent_when_not_asked(gateway: Gateway, upstream_state: State
                                                                   ) -> None:
    async with async_client(gateway) as api:
        stream = await api.chat.completions.create(
            model="gpt-test", messages=[{"role": "user", "content": "hi"}], stream=True)
        chunks = [chunk async for chunk in stream]
    # The gateway asked the upstream for usage, and kept it from a client that did not.
    assert upstream_state.requests[-1]["stream_options"] == {"include_usage": True}
    assert all(chunk.choices for chunk in chunks)
    assert all(chunk.usage is None for chunk in chunks)


def test_tool_call_round_trip(gateway: Gateway, upstream_state: State) -> None:
    api = client(gateway)
    messages: list[dict] = [{"role": "user", "content": "Weather in Paris?"}]
    upstream_state.queue.append(Script(tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"},
                                                    "id": "call_abc"}]))
    first = api.chat.completions.create(model="gpt-test", messages=messages, tools=[WEATHER_TOOL])
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls"
    assert (call.id, call.function.name, json.loads(call.function.arguments)) == (
        "call_abc", "get_weather", {"city": "Paris"})
    messages += [first.choices[0].message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"}]
    upstream_state.queue.append(Script(content="It is sunny and 21C in Paris."))
    second = api.chat.completions.create(model="gpt-test", messages=messages, tools=[WEATHER_TOOL])
    assert second.choices[0].message.content == "It is sunny and 21C in Paris."
    sent = upstream_state.requests[-1]["messages"]
    assert sent[-1] == {"role": "tool", "tool_call_id": "call_abc", "content": "sunny, 21C"}
    assert sent[-2]["tool_calls"][0]["id"] == "call_abc"


async def test_streamed_tool_call_assembles(gateway: Gateway, upstream_state: State) -> None:
    upstream_state.queue.append(Script(tool_calls=[{"name": "get_weather", "arguments": {"city": "Oslo"}}],
                                       argument_pieces=5))
    api = async_client(gateway)
    async with api.chat.completions.stream(model="gpt-test", messages=[{"role": "user", "content": "x"}],
                                           tools=[WEATHER_TOOL]) as stream:
        final = await stream.get_final_completion()
    await api.close()
    call = final.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Oslo"}
    assert final.choices[0].finish_reason == "tool_calls"


def test_responses_non_stream_and_stream(gateway: Gateway, upstream_state: State) -> None:
    api = client(gateway)
    upstream_state.queue.append(Script(content="A response."))
    response = api.responses.create(model="gpt-test", input="hello")
    assert response.output_text == "A response."
    assert upstream_state.paths[-1] == "/v1/responses"
    upstream_state.queue.append(Script(content="A streamed response."))
    with api.responses.stream(model="gpt-test", input="hello") as stream:
        deltas = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == "A streamed response."
    assert final.usage is not None and final.usage.output_tokens > 0


def test_models_lists_the_tenants_aliases(gateway: Gateway) -> None:
    assert {model.id for model in client(gateway).models.list()} == {"gpt-test", "embed-test"}
    assert [model.id for model in client(gateway, OTHER_TENANT_KEY).models.list()] == ["gpt-test"]
    assert client(gateway).models.retrieve("gpt-test").id == "gpt-test"
    with pytest.raises(openai.NotFoundError):
        client(gateway, OTHER_TENANT_KEY).models.retrieve("embed-test")


def test_embeddings_float_and_base64(gateway: Gateway, upstream_state: State) -> None:
    api = client(gateway)
    result = api.embeddings.create(model="embed-test", input=["a", "b"])  # the SDK asks for base64
    assert len(result.data) == 2 and len(result.data[0].embedding) == 8
    assert upstream_state.requests[-1]["model"] == "text-embedding-test"
    floats = api.embeddings.create(model="embed-test", input="a", encoding_format="float", dimensions=4)
    assert len(floats.data[0].embedding) == 4


def test_unknown_key_is_401(gateway: Gateway) -> None:
    with pytest.raises(openai.AuthenticationError) as raised:
        client(gateway, "lg-wrong").chat.completions.create(model="gpt-test", messages=[{"role": "user",
                                                                                        "content": "x"}])
    assert raised.value.code == "invalid_api_key"


def test_missing_key_is_401(gateway: Gateway) -> None:
    response = httpx.post(f"{gateway.base_url}/chat/completions", json={"model": "gpt-test", "messages": []})
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
    assert response.headers["x-request-id"]


def test_x_api_key_header_is_accepted(gateway: Gateway) -> None:
    response = httpx.get(f"{gateway.base_url}/models", headers={"x-api-key": TENANT_KEY})
    assert response.status_code == 200


def test_alias_not_allowed_for_tenant_is_404(gateway: Gateway) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        client(gateway, OTHER_TENANT_KEY).embeddings.create(model="embed-test", input="x")
    assert raised.value.code == "model_not_found"


def test_upstream_client_error_is_passed_through(gateway: Gateway, upstream_state: State) -> None:
    upstream_state.queue.append(Script(status=400, error_body={"error": {
        "message": "Invalid 'tools[0].function.name'", "type": "invalid_request_error", "param": "tools",
        "code": "invalid_value"}}))
    with pytest.raises(openai.BadRequestError) as raised:
        client(gateway).chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "x"}])
    assert "Invalid 'tools[0].function.name'" in raised.value.message
    assert len(upstream_state.requests) == 1  # a 400 is never retried


def test_upstream_failure_is_502_envelope(gateway: Gateway, upstream_state: State) -> None:
    upstream_state.queue += [Script(status=500), Script(status=500)]
    with pytest.raises(openai.InternalServerError) as raised:
        client(gateway).chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "x"}])
    assert raised.value.status_code == 502
    assert raised.value.body["type"] == "upstream_error"  # type: ignore[index]
    assert len(upstream_state.requests) == 2  # retry.attempts defaults to 2


def test_gemini_signed_tool_call_ids_are_shortened_for_openai(gateway: Gateway, upstream_state: State) -> None:
    """A conversation begun on Gemini carries thought signatures in its tool call ids; OpenAI
    refuses ids over 64 characters, and only Gemini needs them."""
    signed = "call_0123456789abcdef01234567__gts_" + "Q2lNQkFkZ3Y" * 40
    upstream_state.queue += [Script(content="It is sunny."), Script(content="Still sunny.")]
    client(gateway).chat.completions.create(model="gpt-test", tools=[WEATHER_TOOL], messages=[
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": signed, "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
        {"role": "tool", "tool_call_id": signed, "content": "sunny"}])
    sent = upstream_state.requests[-1]["messages"]
    assert sent[1]["tool_calls"][0]["id"] == sent[2]["tool_call_id"] == "call_0123456789abcdef01234567"
    client(gateway).responses.create(model="gpt-test", input=[
        {"type": "message", "role": "user", "content": "Weather in Paris?"},
        {"type": "function_call", "call_id": signed, "name": "get_weather", "arguments": '{"city":"Paris"}'},
        {"type": "function_call_output", "call_id": signed, "output": "sunny"}])
    items = upstream_state.requests[-1]["input"]
    assert items[1]["call_id"] == items[2]["call_id"] == "call_0123456789abcdef01234567"
