"""Chat completion chunks -> Responses stream events.

Golden fixtures (tests/fixtures/responses_chat/stream/*.json) list, for each chat chunk fed,
the events it must produce (so a text delta that was held back fails the test), then the
events of `finish()`, and the final response. Every event is validated against the SDK's
`ResponseStreamEvent` union. The official clients then consume the same streams over
HTTP: `AsyncOpenAI().responses.stream()` / `responses.create(stream=True)` and an Agents SDK
`Runner.run_streamed`. A property test checks that any way of chunking a chat answer
streams to exactly the response the non-streaming translation gives.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pydantic
import pytest
from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st
from openai import AsyncOpenAI
from openai.types.responses import Response, ResponseStreamEvent

from providers.responses_chat import (
    ChatToResponsesStream,
    chat_to_responses_response,
    counting_ids,
    responses_to_chat_request,
)
from providers.sse import encode_json

FIXTURES = Path(__file__).parent / "fixtures" / "responses_chat" / "stream"
STREAM_EVENT = pydantic.TypeAdapter(ResponseStreamEvent)
LIFECYCLE = {"response.created", "response.in_progress", "response.completed", "response.incomplete"}


def _load() -> list[dict[str, Any]]:
    return [case for path in sorted(FIXTURES.glob("*.json")) for case in json.loads(path.read_text())]


def _params(cases: list[dict[str, Any]]) -> list[Any]:
    return [pytest.param(case, id=case["description"]) for case in cases]


CASES = _load()


def _run(case: dict[str, Any]) -> tuple[list[list[tuple[str, dict[str, Any]]]], ChatToResponsesStream]:
    stream = ChatToResponsesStream(case["request"], created_at=case.get("created_at"), new_id=counting_ids())
    groups = [stream.feed(chunk) for chunk in case["chunks"]]
    groups.append(stream.finish())
    return groups, stream


@pytest.mark.parametrize("case", _params(CASES))
def test_golden(case: dict[str, Any]) -> None:
    groups, stream = _run(case)
    final = case["response"]
    opening = {**final, "status": "in_progress", "output": [], "usage": None, "incomplete_details": None}

    stripped = [[[kind, {k: v for k, v in payload.items() if k != "response"}] for kind, payload in group]
                for group in groups]
    assert stripped == case["events"]
    events = [event for group in groups for event in group]
    for kind, payload in events:
        assert payload["type"] == kind
        STREAM_EVENT.validate_python(payload)
        if kind in ("response.created", "response.in_progress"):
            assert payload["response"] == opening
        elif kind in LIFECYCLE:
            assert payload["response"] == final
    assert [payload["sequence_number"] for _, payload in events] == list(range(len(events)))
    assert events[-1][0] == f"response.{final['status']}"
    assert stream.response == final
    Response.model_validate(final)


def test_finish_is_idempotent_and_nothing_follows_the_end() -> None:
    case = next(case for case in CASES if case["description"].startswith("text split"))
    _, stream = _run(case)
    assert stream.finish() == []
    assert stream.feed(case["chunks"][1]) == []
    assert stream.response == case["response"]
    assert stream.finish_reason == "stop"


def test_a_cut_stream_has_no_finish_reason() -> None:
    case = next(case for case in CASES if case["description"].startswith("text split"))
    stream = ChatToResponsesStream(case["request"], new_id=counting_ids())
    for chunk in case["chunks"][:3]:
        stream.feed(chunk)
    assert stream.finish_reason is None


def test_response_is_in_progress_until_the_end() -> None:
    case = next(case for case in CASES if case["description"].startswith("two parallel"))
    stream = ChatToResponsesStream(case["request"], "resp_fixed", new_id=counting_ids())
    for chunk in case["chunks"][:5]:
        stream.feed(chunk)
    snapshot = stream.response
    assert (snapshot["id"], snapshot["status"]) == ("resp_fixed", "in_progress")
    assert [item["status"] for item in snapshot["output"]] == ["in_progress", "in_progress"]
    assert snapshot["output"][0]["arguments"] == '{"ci'
    Response.model_validate(snapshot)


# --- the official clients over HTTP -------------------------------------------------


async def _serve_stream(request: web.Request, chunks: list[dict[str, Any]]) -> web.StreamResponse:
    body = await request.json()
    responses_to_chat_request(body)  # what the gateway would send upstream must translate
    reply = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await reply.prepare(request)
    stream = ChatToResponsesStream(body)
    for chunk in chunks:
        for kind, payload in stream.feed(chunk):
            await reply.write(encode_json(payload, kind))
    for kind, payload in stream.finish():
        await reply.write(encode_json(payload, kind))
    await reply.write_eof()
    return reply


@pytest.fixture
async def scripted_server(aiohttp_server: Any) -> Any:
    """A Responses server streaming the given chat chunk lists, one list per request."""

    async def start(script: list[list[dict[str, Any]]]) -> AsyncOpenAI:
        pending = list(script)

        async def handle(request: web.Request) -> web.StreamResponse:
            return await _serve_stream(request, pending.pop(0))

        app = web.Application()
        app.router.add_post("/v1/responses", handle)
        server = await aiohttp_server(app)
        return AsyncOpenAI(base_url=str(server.make_url("/v1")), api_key="x", max_retries=0)

    return start


def _calls(response: Any) -> list[tuple[str, str, str]]:
    return [(item.call_id, item.name, item.arguments)
            for item in response.output if item.type == "function_call"]


def _request_kwargs(case: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in case["request"].items() if key != "stream"}


COMPLETED_CASES = [case for case in CASES if case["response"]["status"] == "completed"]


@pytest.mark.parametrize("case", _params(COMPLETED_CASES))
async def test_openai_sdk_stream_helper_accumulates(case: dict[str, Any], scripted_server: Any) -> None:
    client = await scripted_server([case["chunks"]])
    expected = Response.model_validate(case["response"])

    async with client.responses.stream(**_request_kwargs(case)) as stream:
        text_deltas = [event.delta async for event in stream if event.type == "response.output_text.delta"]
        final = await stream.get_final_response()

    assert final.output_text == expected.output_text == "".join(text_deltas)
    assert _calls(final) == _calls(expected)
    assert final.usage == expected.usage
    assert [item.type for item in final.output] == [item.type for item in expected.output]


@pytest.mark.parametrize("case", _params(CASES))
async def test_openai_sdk_raw_stream(case: dict[str, Any], scripted_server: Any) -> None:
    client = await scripted_server([case["chunks"]])

    events = [event async for event in await client.responses.create(stream=True, **_request_kwargs(case))]

    assert [event.type for event in events] == [kind for group in case["events"] for kind, _ in group]
    terminal, expected = events[-1].response, Response.model_validate(case["response"])
    assert terminal.status == expected.status
    assert terminal.output_text == expected.output_text
    assert _calls(terminal) == _calls(expected)
    assert terminal.usage == expected.usage


def _chunk(delta: dict[str, Any] | None = None, finish_reason: str | None = None,
           usage: dict[str, Any] | None = None) -> dict[str, Any]:
    chunk: dict[str, Any] = {"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1741476542,
                             "model": "upstream-model", "choices": []}
    if usage is None:
        chunk["choices"] = [{"index": 0, "delta": delta or {}, "finish_reason": finish_reason}]
    else:
        chunk["usage"] = usage
    return chunk


@function_tool
def get_weather(city: str) -> str:
    """Get the weather for a city."""
    return f"Sunny in {city}"


async def test_agents_sdk_streamed_run(scripted_server: Any) -> None:
    set_tracing_disabled(True)
    usage = {"prompt_tokens": 30, "completion_tokens": 6, "total_tokens": 36}
    call_turn = [
        _chunk({"role": "assistant", "content": None}),
        _chunk({"tool_calls": [{"index": 0, "id": "call_s", "type": "function",
                                "function": {"name": "get_weather", "arguments": ""}}]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Oslo"}'}}]}),
        _chunk(finish_reason="tool_calls"),
        _chunk(usage=usage),
    ]
    answer_turn = [_chunk({"role": "assistant", "content": ""})]
    answer_turn += [_chunk({"content": piece}) for piece in ("Oslo ", "is ", "sunny.")]
    answer_turn += [_chunk(finish_reason="stop"), _chunk(usage=usage)]
    client = await scripted_server([call_turn, answer_turn])
    agent = Agent(name="Weather", instructions="Use tools.", tools=[get_weather],
                  model=OpenAIResponsesModel(model="gpt-test", openai_client=client))

    result = Runner.run_streamed(agent, "Weather in Oslo?")
    deltas = [event.data.delta async for event in result.stream_events()
              if event.type == "raw_response_event" and event.data.type == "response.output_text.delta"]

    assert result.final_output == "Oslo is sunny."
    assert deltas == ["Oslo ", "is ", "sunny."]
    tool_outputs = [item.output for item in result.new_items if item.type == "tool_call_output_item"]
    assert tool_outputs == ["Sunny in Oslo"]
    assert result.context_wrapper.usage.input_tokens == 60


# --- any chunking streams to the non-streamed answer --------------------------------


def _pieces(text: str, cuts: list[int]) -> list[str]:
    bounds = sorted({0, len(text), *(cut % (len(text) + 1) for cut in cuts)})
    return [text[start:end] for start, end in itertools.pairwise(bounds)]


@settings(max_examples=60, deadline=None)
@given(
    text=st.text(min_size=0, max_size=30),
    text_cuts=st.lists(st.integers(min_value=0, max_value=40), max_size=8),
    calls=st.lists(st.tuples(st.sampled_from(["get_weather", "get_time"]), st.text(max_size=20),
                             st.lists(st.integers(min_value=0, max_value=30), max_size=5)), max_size=3),
    order=st.randoms(use_true_random=False),
    finish_reason=st.sampled_from(["stop", "tool_calls", "length", "content_filter"]),
)
def test_any_chunking_streams_to_the_non_streamed_response(
    text: str, text_cuts: list[int], calls: list[tuple[str, str, list[int]]], order: Any, finish_reason: str,
) -> None:
    request = {"model": "alias", "input": "hi", "stream": True}
    tool_calls = [{"id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": arguments}}
                  for i, (name, arguments, _) in enumerate(calls)]
    usage = {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14}

    chunks = [_chunk({"role": "assistant", "content": piece}) for piece in _pieces(text, text_cuts)]
    # Each call opens with its id and name; its argument pieces then interleave with the others'.
    chunks += [_chunk({"tool_calls": [{"index": i, "id": call["id"], "type": "function",
                                       "function": {"name": call["function"]["name"], "arguments": ""}}]})
               for i, call in enumerate(tool_calls)]
    queues = [_pieces(arguments, cuts) for _, arguments, cuts in calls]
    while any(queues):
        index = order.choice([i for i, queue in enumerate(queues) if queue])
        piece = queues[index].pop(0)
        chunks.append(_chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}))
    chunks += [_chunk(finish_reason=finish_reason), _chunk(usage=usage)]

    stream = ChatToResponsesStream(request, new_id=counting_ids())
    events = []
    for chunk in chunks:
        produced = stream.feed(chunk)
        content = (chunk["choices"] or [{}])[0].get("delta", {}).get("content")
        if content:
            assert [p["delta"] for k, p in produced if k == "response.output_text.delta"] == [content]
        events += produced
    events += stream.finish()

    completion = {"id": "chatcmpl-s", "object": "chat.completion", "created": 1741476542,
                  "model": "upstream-model", "usage": usage,
                  "choices": [{"index": 0, "finish_reason": finish_reason,
                               "message": {"role": "assistant", "content": text or None,
                                           "tool_calls": tool_calls or None}}]}
    assert stream.response == chat_to_responses_response(completion, request, new_id=counting_ids())
    for _, payload in events:
        STREAM_EVENT.validate_python(payload)
    assert [payload["sequence_number"] for _, payload in events] == list(range(len(events)))
