"""Chat completion -> Responses `response` object.

Golden fixtures (tests/fixtures/responses_chat/response/*.json) hold a Responses request, the
chat completion that answered it and the expected `response`; each result must also pass
`openai.types.responses.Response.model_validate`. The official client reading the answer
off the wire is exercised in the Agents SDK tests of test_responses_chat_request.py.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
from openai.types.responses import Response

from providers.responses_chat import chat_to_responses_response, counting_ids
from tests.golden import golden_cases

FIXTURES = Path(__file__).parent / "fixtures" / "responses_chat" / "response"


@pytest.mark.parametrize("case", golden_cases(FIXTURES))
def test_golden(case: dict[str, Any]) -> None:
    completion, request = copy.deepcopy(case["completion"]), copy.deepcopy(case["request"])

    response = chat_to_responses_response(completion, request, new_id=counting_ids())

    assert response == case["expected"]
    assert (completion, request) == (case["completion"], case["request"]), "inputs must not change"
    Response.model_validate(response)


def _completion(message: dict[str, Any], finish_reason: str = "stop") -> dict[str, Any]:
    return {"id": "chatcmpl-9", "object": "chat.completion", "created": 1700000000, "model": "m-1",
            "choices": [{"index": 0, "message": {"role": "assistant", **message},
                         "finish_reason": finish_reason}]}


def test_sdk_reads_text_calls_and_usage() -> None:
    completion = _completion({"content": "Checking.", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": 1}'}}]},
        "tool_calls")
    completion["usage"] = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18,
                           "prompt_tokens_details": {"cached_tokens": 4}}

    parsed = Response.model_validate(chat_to_responses_response(completion, {"model": "alias"}))

    assert parsed.output_text == "Checking."
    call = parsed.output[1]
    assert (call.type, call.call_id, call.name) == ("function_call", "call_1", "lookup")
    assert call.arguments == '{"q": 1}'
    assert parsed.usage is not None
    assert (parsed.usage.input_tokens, parsed.usage.output_tokens, parsed.usage.total_tokens) == (11, 7, 18)
    assert parsed.usage.input_tokens_details.cached_tokens == 4
    assert parsed.model == "m-1"


def test_default_ids_carry_openai_prefixes_and_differ() -> None:
    completion = _completion({"content": "Hi", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]})
    first = chat_to_responses_response(completion, {})
    second = chat_to_responses_response(completion, {})

    assert re.fullmatch(r"resp_[0-9a-f]{48}", first["id"])
    assert first["output"][0]["id"].startswith("msg_")
    assert first["output"][1]["id"].startswith("fc_")
    assert first["id"] != second["id"]


def test_explicit_response_id_and_created_at_win() -> None:
    response = chat_to_responses_response(_completion({"content": "Hi"}), {}, "resp_gateway",
                                          created_at=42)
    assert (response["id"], response["created_at"]) == ("resp_gateway", 42)


def test_missing_model_falls_back_to_the_request() -> None:
    completion = _completion({"content": "Hi"})
    del completion["model"]
    assert chat_to_responses_response(completion, {"model": "alias"})["model"] == "alias"
