"""Gemini response -> chat.completion: golden fixtures, validated by the openai and google-genai types."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
import pytest
from google.genai import types
from openai.types.chat import ChatCompletion

from providers.base import UpstreamError
from providers.gemini import gemini_to_chat, usage_to_chat
from tests.golden import golden_cases

FIXTURES = Path(__file__).parent / "fixtures" / "gemini" / "response"
BROKEN_REASONS = ("MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL", "TOO_MANY_TOOL_CALLS", "MALFORMED_RESPONSE")
"""Finish reasons of an answer that broke off: a failed, retryable attempt, never an answer."""


def _options(case: dict[str, Any]) -> dict[str, Any]:
    return {key: case[key] for key in ("created", "completion_id", "legacy_functions") if key in case}


@pytest.mark.parametrize("case", golden_cases(FIXTURES, errors=False))
def test_response_fixture(case: dict[str, Any]) -> None:
    # The input is a response Gemini could send: the SDK's own type accepts it.
    types.GenerateContentResponse.model_validate_json(orjson.dumps(case["input"]))
    response = copy.deepcopy(case["input"])
    completion = gemini_to_chat(response, case["model"], **_options(case))
    assert completion == case["expected"]
    assert response == case["input"], "the translator must not change its input"
    parsed = ChatCompletion.model_validate(completion)
    assert parsed.usage is not None
    assert parsed.usage.total_tokens == parsed.usage.prompt_tokens + parsed.usage.completion_tokens


@pytest.mark.parametrize("case", golden_cases(FIXTURES, errors=True))
def test_response_error(case: dict[str, Any]) -> None:
    with pytest.raises(UpstreamError) as raised:
        gemini_to_chat(case["input"], case["model"], **_options(case))
    expected = case["error"]
    assert (raised.value.kind, raised.value.status, raised.value.retryable) == \
        (expected["kind"], expected["status"], expected["retryable"])
    assert expected["message_contains"] in raised.value.message


def test_generated_ids_are_stable_for_one_completion_and_differ_across_completions() -> None:
    reply = {"candidates": [{"content": {"role": "model", "parts": [
        {"functionCall": {"name": "a", "args": {}}}, {"functionCall": {"name": "b", "args": {}}}]},
        "finishReason": "STOP"}]}

    def ids(completion_id: str) -> list[str]:
        message = gemini_to_chat(reply, "m", completion_id=completion_id)["choices"][0]["message"]
        return [call["id"] for call in message["tool_calls"]]

    assert ids("chatcmpl-1") == ids("chatcmpl-1")
    assert len(set(ids("chatcmpl-1"))) == 2
    assert set(ids("chatcmpl-1")).isdisjoint(ids("chatcmpl-2"))


def test_usage_without_optional_counts() -> None:
    assert usage_to_chat({"promptTokenCount": 3}) == {
        "prompt_tokens": 3, "completion_tokens": 0, "total_tokens": 3,
        "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0},
    }


@pytest.mark.parametrize("reason", BROKEN_REASONS)
@pytest.mark.parametrize("parts", [[], [{"text": "Let me check."}],
                                   [{"functionCall": {"name": "lookup", "args": {}}}]], ids=["empty", "text", "call"])
def test_a_broken_finish_reason_is_a_retryable_failure(reason: str, parts: list[dict[str, Any]]) -> None:
    """Not a successful empty answer: the router retries it or fails over."""
    candidate: dict[str, Any] = {"finishReason": reason, "index": 0}
    if parts:
        candidate["content"] = {"role": "model", "parts": parts}
    reply = {"candidates": [candidate], "usageMetadata": {"promptTokenCount": 5, "totalTokenCount": 5}}
    types.GenerateContentResponse.model_validate_json(orjson.dumps(reply))
    with pytest.raises(UpstreamError) as raised:
        gemini_to_chat(reply, "gemini-2.5-flash")
    error = raised.value
    assert (error.kind, error.retryable, error.status) == ("malformed", True, None)
    assert f"finishReason {reason}" in error.message


def test_one_broken_candidate_fails_the_answer() -> None:
    good = {"content": {"role": "model", "parts": [{"text": "fine"}]}, "finishReason": "STOP", "index": 0}
    broken = {"finishReason": "MALFORMED_FUNCTION_CALL", "index": 1}
    with pytest.raises(UpstreamError, match="MALFORMED_FUNCTION_CALL"):
        gemini_to_chat({"candidates": [good, broken]}, "gemini-2.5-flash")
