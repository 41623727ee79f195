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
