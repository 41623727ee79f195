"""The fake Anthropic server is faithful: the official `anthropic` SDK accepts its answers.

Non-streamed and streamed Messages (text, tool use with input split across many
fragments, thinking, cache usage) must come out of the SDK equal to the scripted
Message; HTTP errors must raise the SDK's matching exception classes; and malformed
requests must be refused the way Anthropic refuses them (fake_rejections.json).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import anthropic
import pytest
from anthropic.types import Message

from tests.fakes.anthropic_server import HELLO, STATE, Script, create_app

FIXTURES = Path(__file__).parent / "fixtures" / "anthropic"
REJECTIONS = json.loads((FIXTURES / "fake_rejections.json").read_text())
KEY = "test-anthropic-key"
ASK = {"model": "claude-sonnet-4-5", "max_tokens": 256, "messages": [{"role": "user", "content": "Hi there"}]}
SCRIPTED = {
    "id": "msg_01SCRIPT", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
    "content": [
        {"type": "thinking", "thinking": "They want the weather in two cities.", "signature": "EqQBsig=="},
        {"type": "text", "text": "Let me look both up for you."},
        {"type": "tool_use", "id": "toolu_01A", "name": "get_weather",
         "input": {"city": "Paris", "units": "celsius", "days": [1, 2, 3], "detail": {"wind": True}}},
        {"type": "tool_use", "id": "toolu_01B", "name": "get_weather", "input": {"city": "Tokyo"}},
    ],
    "stop_reason": "tool_use", "stop_sequence": None,
    "usage": {"input_tokens": 120, "cache_creation_input_tokens": 300, "cache_read_input_tokens": 2000,
              "output_tokens": 95},
}


@pytest.fixture
async def fake(aiohttp_server: Any) -> tuple[Any, anthropic.AsyncAnthropic]:
    server = await aiohttp_server(create_app())
    client = anthropic.AsyncAnthropic(base_url=str(server.make_url("")).rstrip("/"), api_key=KEY,
                                      max_retries=0)
    return server.app, client


def as_message(payload: dict[str, Any]) -> dict[str, Any]:
    return Message.model_validate(payload).model_dump()


async def test_default_answer_echoes_the_user(fake: tuple[Any, anthropic.AsyncAnthropic]) -> None:
    app, client = fake
    message = await client.messages.create(**ASK)
    assert message.content[0].type == "text"
    assert message.content[0].text == f"{HELLO}. You said: Hi there"
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    assert app[STATE].requests == [ASK]
    # The 2.x SDK sends its key as a bearer token and anthropic-version 2026-10-21.
    assert app[STATE].headers[0]["Authorization"] == f"Bearer {KEY}"


async def test_scripted_message_comes_back_unchanged(fake: tuple[Any, anthropic.AsyncAnthropic]) -> None:
    app, client = fake
    app[STATE].queue.append(Script(message=SCRIPTED))
    message = await client.messages.create(**ASK)
    assert message.model_dump() == as_message(SCRIPTED)
    assert message.usage.cache_read_input_tokens == 2000
    assert message.usage.cache_creation_input_tokens == 300


@pytest.mark.parametrize(("text_chunks", "json_chunks"), [(1, 1), (4, 7), (50, 200)])
async def test_stream_rebuilds_the_scripted_message(fake: tuple[Any, anthropic.AsyncAnthropic],
                                                    text_chunks: int, json_chunks: int) -> None:
    app, client = fake
    app[STATE].queue.append(Script(message=SCRIPTED, text_chunks=text_chunks, json_chunks=json_chunks))
    events: list[str] = []
    async with client.messages.stream(**ASK) as stream:
        async for event in stream:
            events.append(event.type)
        final = await stream.get_final_message()
    assert final.model_dump(exclude={"content"}) == {
        key: value for key, value in as_message(SCRIPTED).items() if key != "content"}
    assert [block.model_dump(exclude={"parsed_output"}) for block in final.content] == as_message(
        SCRIPTED)["content"]
    assert final.content[2].input == SCRIPTED["content"][2]["input"]
    fragments = sum(1 for event in events if event == "input_json")
    assert fragments >= min(json_chunks, len(json.dumps(SCRIPTED["content"][2]["input"]))) + 1


async def test_stream_event_sequence_is_the_documented_one(fake: tuple[Any, anthropic.AsyncAnthropic]) -> None:
    app, client = fake
    app[STATE].queue.append(Script(message={"content": [{"type": "text", "text": "abcdef"}]}, text_chunks=3))
    stream = await client.messages.create(**ASK, stream=True)
    events = [(event.type, getattr(event, "index", None)) async for event in stream]
    assert events == [
        ("message_start", None), ("content_block_start", 0), ("content_block_delta", 0),
        ("content_block_delta", 0), ("content_block_delta", 0), ("content_block_stop", 0),
        ("message_delta", None), ("message_stop", None)]


async def test_default_tool_call_fills_required_parameters(fake: tuple[Any, anthropic.AsyncAnthropic]) -> None:
    _, client = fake
    tools = [{"name": "book", "description": "Book a trip", "input_schema": {
        "type": "object", "required": ["city", "nights", "kind", "when"],
        "properties": {"city": {"type": "string"}, "nights": {"type": "integer"},
                       "kind": {"type": "string", "enum": ["hotel", "hostel"]},
                       "when": {"type": "object", "required": ["month"],
                                "properties": {"month": {"type": "string"}}},
                       "notes": {"type": "string"}}}}]
    call = await client.messages.create(**ASK, tools=tools)
    assert call.stop_reason == "tool_use"
    block = call.content[0]
    assert block.type == "tool_use" and block.name == "book"
    assert block.input == {"city": "test", "nights": 0, "kind": "hotel", "when": {"month": "test"}}
    follow_up = [*ASK["messages"], {"role": "assistant", "content": [block.model_dump(exclude_none=True)]},
                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "ok"}]}]
    answer = await client.messages.create(**{**ASK, "messages": follow_up}, tools=tools)
    assert answer.stop_reason == "end_turn" and answer.content[0].text == HELLO


@pytest.mark.parametrize(("status", "error_type", "exception"), [
    (400, "invalid_request_error", anthropic.BadRequestError),
    (401, "authentication_error", anthropic.AuthenticationError),
    (403, "permission_error", anthropic.PermissionDeniedError),
    (404, "not_found_error", anthropic.NotFoundError),
    (413, "request_too_large", anthropic.ContentTooLargeError),
    (429, "rate_limit_error", anthropic.RateLimitError),
    (500, "api_error", anthropic.InternalServerError),
    (529, "overloaded_error", anthropic.OverloadedError),
])
async def test_scripted_errors_raise_the_sdk_exceptions(fake: tuple[Any, anthropic.AsyncAnthropic], status: int,
                                                        error_type: str, exception: type[Exception]) -> None:
    app, client = fake
    app[STATE].queue.append(Script(status=status, error_type=error_type))
    with pytest.raises(exception) as raised:
        await client.messages.create(**ASK)
    assert raised.value.status_code == status
    assert raised.value.body["error"]["type"] == error_type
    assert raised.value.request_id is not None


async def test_malformed_request_raises_bad_request(fake: tuple[Any, anthropic.AsyncAnthropic]) -> None:
    _, client = fake
    with pytest.raises(anthropic.BadRequestError, match="roles must alternate"):
        await client.messages.create(**{**ASK, "messages": [ASK["messages"][0], ASK["messages"][0]]})


async def test_wrong_key_raises_authentication_error(aiohttp_server: Any) -> None:
    server = await aiohttp_server(create_app(api_key="right"))
    client = anthropic.AsyncAnthropic(base_url=str(server.make_url("")).rstrip("/"), api_key="wrong",
                                      max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        await client.messages.create(**ASK)


async def test_error_event_mid_stream(fake: tuple[Any, anthropic.AsyncAnthropic]) -> None:
    app, client = fake
    app[STATE].queue.append(Script(message=SCRIPTED, text_chunks=5, error_after=6))
    seen: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as raised:
        async with client.messages.stream(**ASK) as stream:
            async for event in stream:
                seen.append(event.type)
    assert raised.value.body["error"]["type"] == "overloaded_error"
    assert "thinking" in seen and "text" not in seen


async def test_delays_slow_the_answer(fake: tuple[Any, anthropic.AsyncAnthropic]) -> None:
    app, client = fake
    app[STATE].queue.append(Script(delay_s=0.1))
    started = time.monotonic()
    await client.messages.create(**ASK)
    assert time.monotonic() - started >= 0.1


@pytest.mark.parametrize("case", REJECTIONS["cases"], ids=lambda case: case["name"])
async def test_fake_refuses_what_anthropic_refuses(case: dict[str, Any], aiohttp_client: Any) -> None:
    client = await aiohttp_client(create_app())
    headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01", "content-type": "application/json"}
    headers.update(case.get("headers") or {})
    body = {**REJECTIONS["good_body"], **(case.get("body") or {})}
    for key in case.get("drop") or []:
        del body[key]
    response = await client.post("/v1/messages", data=case.get("raw") or json.dumps(body),
                                 headers={key: value for key, value in headers.items() if value is not None})
    payload = await response.json()
    assert response.status == case["status"]
    assert payload["type"] == "error" and payload["error"]["type"] == case["type"]
    assert case["says"] in payload["error"]["message"]
    assert response.headers["request-id"] == payload["request_id"]


async def test_good_request_passes_the_same_checks(aiohttp_client: Any) -> None:
    client = await aiohttp_client(create_app())
    response = await client.post("/v1/messages", json=REJECTIONS["good_body"], headers={
        "x-api-key": KEY, "anthropic-version": "2023-06-01"})
    assert response.status == 200
