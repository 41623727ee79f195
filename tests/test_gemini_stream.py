"""Gemini stream events -> chat.completion.chunks: golden fixtures, and agreement with whole answers."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from google.genai import types
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletionChunk

from providers.base import UpstreamError
from providers.gemini import GeminiStreamTranslator, gemini_to_chat
from tests.fakes.gemini_server import split_events
from tests.golden import golden_cases
from tests.test_gemini_response import BROKEN_REASONS

FIXTURES = Path(__file__).parent / "fixtures" / "gemini"


def _cases(errors: bool) -> list[Any]:
    return golden_cases(FIXTURES / "stream", errors=errors)


def _options(case: dict[str, Any]) -> dict[str, Any]:
    return {key: case[key] for key in ("created", "completion_id", "legacy_functions") if key in case}


def _translator(case: dict[str, Any]) -> GeminiStreamTranslator:
    return GeminiStreamTranslator(case["model"], **_options(case))


def _translate(translator: GeminiStreamTranslator, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    chunks = [chunk for event in events for chunk in translator.feed(event)]
    return chunks + translator.finish()


@pytest.mark.parametrize("case", _cases(errors=False))
def test_stream_fixture(case: dict[str, Any]) -> None:
    for event in case["events"]:
        types.GenerateContentResponse.model_validate_json(orjson.dumps(event))
    events = copy.deepcopy(case["events"])
    translator = _translator(case)
    chunks = _translate(translator, events)
    assert chunks == case["expected"]
    assert events == case["events"], "the translator must not change its input"
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)
    assert translator.finished
    assert translator.usage == (chunks[-1].get("usage"))


@pytest.mark.parametrize("case", _cases(errors=True))
def test_stream_error(case: dict[str, Any]) -> None:
    translator = _translator(case)
    with pytest.raises(UpstreamError) as raised:
        _translate(translator, case["events"])
    expected = case["error"]
    assert (raised.value.kind, raised.value.status, raised.value.retryable) == \
        (expected["kind"], expected["status"], expected["retryable"])
    assert expected["message_contains"] in raised.value.message


def test_a_cut_stream_is_not_finished() -> None:
    translator = GeminiStreamTranslator("gemini-2.5-flash")
    translator.feed({"candidates": [{"content": {"parts": [{"text": "Hel"}], "role": "model"}}]})
    assert not translator.finished


def _whole_responses() -> list[Any]:
    cases = []
    for path in sorted((FIXTURES / "response").glob("*.json")):
        for case in json.loads(path.read_text()):
            # Error cases (an answer that ends broken included) have their own tests.
            if "error" not in case:
                for events in (1, 2, 5):
                    cases.append(pytest.param(case, events, id=f"{case['description']} / {events} events"))
    return cases


@pytest.mark.parametrize(("case", "events"), _whole_responses())
def test_streamed_answer_equals_whole_answer(case: dict[str, Any], events: int) -> None:
    """Streamed as Google streams it and put together by the openai SDK, it is the same answer."""
    options = {**_options(case), "completion_id": "chatcmpl-x", "created": 1}
    whole = gemini_to_chat(case["input"], case["model"], **options)
    translator = GeminiStreamTranslator(case["model"], **options)
    state = ChatCompletionStreamState()
    for chunk in _translate(translator, split_events(case["input"], events)):
        state.handle_chunk(ChatCompletionChunk.model_validate(chunk))
    streamed = state.current_completion_snapshot.model_dump(exclude_none=True)
    assert streamed["usage"] == whole["usage"]
    assert len(streamed["choices"]) == len(whole["choices"])
    for got, expected in zip(streamed["choices"], whole["choices"], strict=True):
        assert got["finish_reason"] == expected["finish_reason"]
        # A stream opens with content "" (as OpenAI's do) where a whole answer may say null.
        assert (got["message"].get("content") or None) == expected["message"]["content"]
        assert got["message"].get("reasoning_content") == expected["message"].get("reasoning_content")
        calls = [{"id": call["id"], "type": call["type"], "function": {
            "name": call["function"]["name"], "arguments": call["function"]["arguments"]}}
            for call in got["message"].get("tool_calls", ())]
        assert calls == expected["message"].get("tool_calls", [])
        assert got["message"].get("function_call") == expected["message"].get("function_call")


@pytest.mark.parametrize("reason", BROKEN_REASONS)
def test_a_broken_finish_reason_ends_the_stream(reason: str) -> None:
    """What came before is relayed; the event with the broken finish reason raises instead of a
    `finish_reason: stop` chunk, so the client never reads a broken answer as complete."""
    reply = {"candidates": [{"content": {"role": "model", "parts": [{"text": "Let me look that up."}]},
                             "finishReason": reason, "index": 0}],
             "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 4, "totalTokenCount": 9}}
    first, *rest = split_events(reply, 3)
    translator = GeminiStreamTranslator("gemini-2.5-flash")
    relayed = translator.feed(first)
    assert [chunk["choices"][0]["delta"].get("content") for chunk in relayed] == \
        ["", first["candidates"][0]["content"]["parts"][0]["text"]]
    with pytest.raises(UpstreamError) as raised:
        for event in rest:
            translator.feed(event)
    assert (raised.value.kind, raised.value.retryable) == ("malformed", True)
    assert f"finishReason {reason}" in raised.value.message
    assert not translator.finished


def test_a_broken_answer_without_content_fails_before_any_chunk() -> None:
    translator = GeminiStreamTranslator("gemini-2.5-flash")
    with pytest.raises(UpstreamError, match="MALFORMED_FUNCTION_CALL"):
        translator.feed({"candidates": [{"finishReason": "MALFORMED_FUNCTION_CALL", "index": 0}],
                         "usageMetadata": {"promptTokenCount": 5, "totalTokenCount": 5}})
