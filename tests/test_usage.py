"""Usage extraction: every provider's usage shape as it reaches the meter, and stream trackers.

Fixtures (tests/fixtures/usage/): answers.json (usage objects and the Usage read from each),
chat_streams.json and responses_streams.json (recorded streams and the tracker's expected
state). Wire-valid fixtures are checked against the official OpenAI SDK's types, and each
recorded stream is also served by a real aiohttp server and read both by the OpenAI SDK
and by our SSE parser + tracker, which must agree.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st
from openai import AsyncOpenAI
from openai.types import CompletionUsage, CreateEmbeddingResponse
from openai.types.chat import ChatCompletionChunk
from openai.types.responses import ResponseStreamEvent, ResponseUsage
from pydantic import TypeAdapter

from gateway.usage import (
    ChatStreamUsage,
    ResponsesStreamUsage,
    Usage,
    usage_from_chat,
    usage_from_embeddings,
    usage_from_responses,
)
from providers.sse import SSEParser

FIXTURES = Path(__file__).parent / "fixtures" / "usage"
READERS = {"chat": usage_from_chat, "responses": usage_from_responses, "embeddings": usage_from_embeddings}
SDK_USAGE_TYPES = {"chat": CompletionUsage, "responses": ResponseUsage,
                   "embeddings": CreateEmbeddingResponse.model_fields["usage"].annotation}
TRACKERS = {"chat_streams": ChatStreamUsage, "responses_streams": ResponsesStreamUsage}
REPLAYED = web.AppKey("replayed", bytes)


def load_cases(name: str) -> list[Any]:
    cases = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))["cases"]
    return [pytest.param(case, id=case["name"]) for case in cases]


def as_usage(expected: dict[str, Any] | None) -> Usage | None:
    return None if expected is None else Usage(**expected)


# --- non-streamed answers ----------------------------------------------------------------------


@pytest.mark.parametrize("case", load_cases("answers"))
def test_usage_is_read_from_every_answer_shape(case: dict[str, Any]) -> None:
    assert READERS[case["api"]](case["usage"]) == as_usage(case["expected"])


@pytest.mark.parametrize("case", load_cases("answers"))
def test_wire_valid_fixtures_are_what_the_openai_sdk_accepts(case: dict[str, Any]) -> None:
    if not case["wire_valid"]:
        pytest.skip("deliberately malformed: the SDK would reject it, the reader must not")
    parsed = SDK_USAGE_TYPES[case["api"]].model_validate(case["usage"])
    # What the SDK parsed, dumped back (extra keys kept), reads the same as the raw object.
    read = READERS[case["api"]]
    assert read(parsed.model_dump()) == read(case["usage"]) == as_usage(case["expected"])


@pytest.mark.parametrize("reader", list(READERS.values()))
@pytest.mark.parametrize("value", [None, {}, [], "100", 7, {"total": 3}, {"usage": {"prompt_tokens": 3}}])
def test_no_token_counts_means_no_usage(reader: Any, value: Any) -> None:
    assert reader(value) is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(
        st.sampled_from(["prompt_tokens", "completion_tokens", "input_tokens", "output_tokens",
                         "prompt_tokens_details", "completion_tokens_details", "input_tokens_details",
                         "output_tokens_details", "cached_tokens", "cache_write_tokens",
                         "reasoning_tokens", "cache_creation_input_tokens", "total_tokens"]),
        children, max_size=6),
    max_leaves=20,
)


@given(json_values)
def test_readers_never_raise_and_keep_subsets_inside_totals(value: Any) -> None:
    for reader in READERS.values():
        usage = reader(value)
        if usage is None:
            continue
        counts = (usage.input_tokens, usage.output_tokens, usage.cached_tokens,
                  usage.cache_write_tokens, usage.reasoning_tokens)
        assert all(type(count) is int and count >= 0 for count in counts)
        assert usage.cached_tokens + usage.cache_write_tokens <= usage.input_tokens
        assert usage.reasoning_tokens <= usage.output_tokens
        assert not usage.estimated


def test_usages_add_up_field_by_field() -> None:
    first = Usage(100, 20, cached_tokens=50, cache_write_tokens=10, reasoning_tokens=5)
    second = Usage(7, 3, cached_tokens=1, reasoning_tokens=2, estimated=True)
    assert first + second == Usage(107, 23, cached_tokens=51, cache_write_tokens=10,
                                   reasoning_tokens=7, estimated=True)
    assert (first + second).total_tokens == 130
    assert sum([first, second], Usage()) == first + second
    with pytest.raises(TypeError):
        first + 1  # type: ignore[operator]


# --- streams -----------------------------------------------------------------------------------


def stream_cases() -> list[Any]:
    return [pytest.param(name, param.values[0], id=f"{name}:{param.id}")
            for name in TRACKERS for param in load_cases(name)]


def recorded(case: dict[str, Any]) -> list[dict[str, Any]]:
    return case.get("chunks") or case["events"]


@pytest.mark.parametrize(("kind", "case"), stream_cases())
def test_tracker_reads_recorded_stream(kind: str, case: dict[str, Any]) -> None:
    tracker = TRACKERS[kind]()
    for item in recorded(case):
        tracker.feed(item)
    expected = as_usage(case["usage"])
    assert tracker.usage == expected
    assert (tracker.text_chars, tracker.text_bytes) == (case["text_chars"], case["text_bytes"])
    assert tracker.final_usage(case["estimated_input"]) == as_usage(case["final"])


@pytest.mark.parametrize(("kind", "case"), stream_cases())
def test_recorded_streams_are_valid_openai_wire_format(kind: str, case: dict[str, Any]) -> None:
    validate = (ChatCompletionChunk.model_validate if kind == "chat_streams"
                else TypeAdapter(ResponseStreamEvent).validate_python)
    for item in recorded(case):
        validate(item)


@pytest.mark.parametrize("tracker_type", [ChatStreamUsage, ResponsesStreamUsage])
def test_trackers_ignore_junk(tracker_type: type) -> None:
    tracker = tracker_type()
    for junk in (None, "data", 3, [], {"choices": "x"}, {"choices": [None, {"delta": "x"}]},
                 {"choices": [{"delta": {"content": 5, "tool_calls": "x"}}]},
                 {"type": "response.completed", "response": None},
                 {"type": "response.output_text.delta", "delta": None}):
        tracker.feed(junk)
    assert tracker.usage is None
    assert (tracker.text_chars, tracker.text_bytes) == (0, 0)
    assert tracker.final_usage(-5) == Usage(estimated=True)


def sse_body(case: dict[str, Any], kind: str) -> bytes:
    events = []
    for item in recorded(case):
        if kind == "responses_streams":
            events.append(b"event: " + item["type"].encode() + b"\n")
        events.append(b"data: " + orjson.dumps(item) + b"\n\n")
    if case["usage"] is not None and kind == "chat_streams":
        events.append(b"data: [DONE]\n\n")
    return b"".join(events)


@pytest.fixture
async def upstream(aiohttp_server: Any) -> Any:
    """A real server replaying one recorded stream per request, as the upstream sent it."""
    app = web.Application()
    app[REPLAYED] = b""

    async def replay(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for block in app[REPLAYED].split(b"\n\n"):
            if block:
                await response.write(block + b"\n\n")
        await response.write_eof()
        return response

    app.router.add_post("/v1/chat/completions", replay)
    app.router.add_post("/v1/responses", replay)
    return await aiohttp_server(app)


@pytest.mark.parametrize(("kind", "case"), stream_cases())
async def test_tracker_agrees_with_the_openai_sdk_on_a_live_stream(upstream: Any, kind: str,
                                                                   case: dict[str, Any]) -> None:
    upstream.app[REPLAYED] = sse_body(case, kind)
    client = AsyncOpenAI(base_url=str(upstream.make_url("/v1")), api_key="sk-test", max_retries=0)
    sdk_usage = None
    if kind == "chat_streams":
        stream = await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}],
                                                      stream=True, stream_options={"include_usage": True})
        async for chunk in stream:
            sdk_usage = chunk.usage or sdk_usage
        path = "/v1/chat/completions"
    else:
        stream = await client.responses.create(model="m", input="hi", stream=True)
        async for event in stream:
            if event.type in ("response.completed", "response.incomplete", "response.failed"):
                sdk_usage = event.response.usage
        path = "/v1/responses"
    await client.close()

    tracker = TRACKERS[kind]()
    parser = SSEParser()
    async with aiohttp.ClientSession() as session, session.post(upstream.make_url(path), json={}) as response:
        async for data in response.content.iter_any():
            for event in parser.feed(data):
                if not event.is_done:
                    tracker.feed(event.json())
    for event in parser.finish():
        tracker.feed(event.json())

    assert tracker.usage == as_usage(case["usage"])
    if sdk_usage is None:
        assert tracker.usage is None
    elif kind == "chat_streams":
        assert (tracker.usage.input_tokens, tracker.usage.output_tokens) == (
            sdk_usage.prompt_tokens, sdk_usage.completion_tokens)
    else:
        assert (tracker.usage.input_tokens, tracker.usage.output_tokens, tracker.usage.cached_tokens,
                tracker.usage.reasoning_tokens) == (
            sdk_usage.input_tokens, sdk_usage.output_tokens, sdk_usage.input_tokens_details.cached_tokens,
            sdk_usage.output_tokens_details.reasoning_tokens)
