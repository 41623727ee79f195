"""Anthropic stream events -> OpenAI chat.completion.chunks.

Golden fixtures give event sequences (valid `anthropic.types.RawMessageStreamEvent`s)
and the exact chunks expected; every chunk must be a valid `ChatCompletionChunk`. A
second test streams each response fixture through the fake server's event generator,
split at random points, and checks that OpenAI's own stream accumulator rebuilds the
same answer as the non-streamed translation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anthropic.types
import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletionChunk

from providers.anthropic import AnthropicStreamTranslator, anthropic_to_chat
from providers.base import UpstreamError
from providers.sse import SSEParser
from tests.fakes.anthropic_server import STATE, Script, create_app, stream_events

FIXTURES = Path(__file__).parent / "fixtures" / "anthropic"
CASES = sorted((FIXTURES / "stream").glob("*.json"))
MESSAGES = sorted((FIXTURES / "response").glob("*.json"))
ERRORS = json.loads((FIXTURES / "stream_errors.json").read_text())["cases"]
EVENT = pydantic.TypeAdapter(anthropic.types.RawMessageStreamEvent)
KNOWN_EVENTS = {"message_start", "message_delta", "message_stop", "content_block_start",
                "content_block_delta", "content_block_stop"}


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def expected_chunk(case: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    envelope = {"id": case["id"], "object": "chat.completion.chunk", "created": case["created"],
                "model": case["model"]}
    if "usage" in spec:
        return {**envelope, "choices": [], "usage": spec["usage"]}
    return {**envelope, "choices": [{"index": 0, "delta": spec["delta"],
                                     "finish_reason": spec.get("finish_reason"), "logprobs": None}]}


def translator_for(case: dict[str, Any]) -> AnthropicStreamTranslator:
    return AnthropicStreamTranslator(case["model"], created=case["created"],
                                     completion_id=case.get("completion_id"),
                                     legacy_functions=case.get("legacy_functions", False))


@pytest.mark.parametrize("path", CASES, ids=lambda path: path.stem)
def test_events_translate_to_fixture_chunks(path: Path) -> None:
    case = load(path)
    translator = translator_for(case)
    chunks: list[dict[str, Any]] = []
    for name, data in case["events"]:
        if name in KNOWN_EVENTS:
            EVENT.validate_python(data)
        if name == "error":
            with pytest.raises(UpstreamError) as raised:
                translator.feed(name, data)
            expected = case["error"]
            assert (raised.value.status, raised.value.retryable, raised.value.error_type) == (
                expected["status"], expected["retryable"], expected["error_type"])
            assert all(part in raised.value.message for part in expected["says"])
            break
        chunks.extend(translator.feed(name, data))
    assert chunks == [expected_chunk(case, spec) for spec in case["chunks"]]
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)
    assert translator.usage == case.get("usage", chunks[-1].get("usage"))


@pytest.mark.parametrize(("error_type", "status", "retryable"), ERRORS)
def test_error_events_raise_upstream_errors(error_type: str, status: int, retryable: bool) -> None:
    translator = AnthropicStreamTranslator("m", created=1)
    event = {"type": "error", "error": {"type": error_type, "message": f"{error_type} happened"}}
    with pytest.raises(UpstreamError) as raised:
        translator.feed("error", event)
    assert (raised.value.status, raised.value.retryable, raised.value.error_type) == (status, retryable,
                                                                                      error_type)
    assert f"{error_type} happened" in raised.value.message


def test_usage_is_unknown_before_message_start() -> None:
    translator = AnthropicStreamTranslator("m", created=1)
    assert translator.usage is None
    assert translator.feed("ping", {"type": "ping"}) == []


def accumulate(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    usage = None
    for chunk in chunks:
        parsed = ChatCompletionChunk.model_validate(chunk)
        state.handle_chunk(parsed)
        usage = chunk.get("usage") or usage
    # The snapshot, not get_final_completion(), which refuses answers cut by max_tokens.
    final = state.current_completion_snapshot.model_dump()
    return {"choice": final["choices"][0], "usage": usage}


def comparable(message: dict[str, Any]) -> dict[str, Any]:
    """What must agree between streamed and non-streamed answers (arguments compared as JSON)."""
    calls = [(call["id"], call["function"]["name"], json.loads(call["function"]["arguments"]))
             for call in message.get("tool_calls") or []]
    function_call = message.get("function_call")
    if function_call:
        calls.append((None, function_call["name"], json.loads(function_call["arguments"])))
    thinking = [{key: value for key, value in block.items() if key != "index"}
                for block in message.get("thinking_blocks") or []]
    return {"content": message.get("content") or "", "calls": calls,
            "reasoning": message.get("reasoning_content") or "", "thinking": thinking}


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text_chunks=st.integers(1, 9), json_chunks=st.integers(1, 9))
@pytest.mark.parametrize("path", MESSAGES, ids=lambda path: path.stem)
def test_streamed_answer_rebuilds_the_non_streamed_one(path: Path, text_chunks: int, json_chunks: int) -> None:
    case = load(path)
    legacy = case.get("legacy_functions", False)
    whole = anthropic_to_chat(case["anthropic"], "m", created=1, legacy_functions=legacy)
    translator = AnthropicStreamTranslator("m", created=1, legacy_functions=legacy)
    chunks = [chunk for name, data in stream_events(case["anthropic"], text_chunks, json_chunks)
              for chunk in translator.feed(name, data)]
    streamed = accumulate(chunks)
    assert streamed["choice"]["finish_reason"] == whole["choices"][0]["finish_reason"]
    assert comparable(streamed["choice"]["message"]) == comparable(whole["choices"][0]["message"])
    assert streamed["usage"] == whole["usage"] == translator.usage


async def test_translates_a_real_stream_from_the_fake_server(aiohttp_client: Any) -> None:
    app = create_app()
    message = load(FIXTURES / "response" / "parallel_tool_calls_with_cache.json")["anthropic"]
    app[STATE].queue.append(Script(message=message, text_chunks=4, json_chunks=6))
    client = await aiohttp_client(app)
    response = await client.post("/v1/messages", headers={
        "x-api-key": "test-anthropic-key", "anthropic-version": "2023-06-01"}, json={
        "model": "claude-sonnet-4-5", "max_tokens": 100, "stream": True,
        "messages": [{"role": "user", "content": "Weather?"}]})
    assert response.status == 200
    translator = AnthropicStreamTranslator("gpt-5.5", created=1)
    parser = SSEParser()
    chunks = []
    async for data in response.content.iter_any():
        for event in parser.feed(data):
            chunks.extend(translator.feed(event.event or "", event.json()))
    streamed = accumulate(chunks)
    whole = anthropic_to_chat(message, "gpt-5.5", created=1)
    assert comparable(streamed["choice"]["message"]) == comparable(whole["choices"][0]["message"])
    assert [chunk["id"] for chunk in chunks] == [f"chatcmpl-{message['id']}"] * len(chunks)
    assert streamed["usage"]["prompt_tokens_details"] == {"cached_tokens": 100, "cache_write_tokens": 50}
