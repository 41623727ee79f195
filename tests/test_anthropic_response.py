"""Anthropic answers -> OpenAI: Messages as chat.completions, failures as UpstreamErrors.

Golden fixtures: each input must be a valid `anthropic.types.Message` and each output a
valid `openai.types.chat.ChatCompletion`, so both ends of the mapping are the real
formats. HTTP error answers (tests/fixtures/anthropic/http_errors.json) must say whether
and when the router may retry.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import anthropic.types
import pytest
from openai.types.chat import ChatCompletion

from providers.anthropic import anthropic_error, anthropic_to_chat, usage_to_chat
from tests.fakes.anthropic_server import STATE, Script, create_app

FIXTURES = Path(__file__).parent / "fixtures" / "anthropic"
CASES = sorted((FIXTURES / "response").glob("*.json"))
STOP_REASONS = json.loads((FIXTURES / "stop_reasons.json").read_text())["cases"]


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


@pytest.mark.parametrize("path", CASES, ids=lambda path: path.stem)
def test_message_translates_to_fixture(path: Path) -> None:
    case = load(path)
    anthropic.types.Message.model_validate(case["anthropic"])
    completion = anthropic_to_chat(case["anthropic"], case["model"], created=case["created"],
                                   completion_id=case.get("completion_id"),
                                   legacy_functions=case.get("legacy_functions", False))
    assert completion == case["openai"]
    parsed = ChatCompletion.model_validate(completion)
    assert parsed.choices[0].message.content == case["openai"]["choices"][0]["message"]["content"]


@pytest.mark.parametrize(("stop_reason", "finish_reason"), STOP_REASONS)
def test_each_stop_reason_has_its_finish_reason(stop_reason: str, finish_reason: str) -> None:
    message = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
               "content": [{"type": "text", "text": "x"}], "stop_reason": stop_reason, "stop_sequence": None,
               "usage": {"input_tokens": 1, "output_tokens": 1}}
    anthropic.types.Message.model_validate(message)
    completion = anthropic_to_chat(message, "m", created=1)
    assert completion["choices"][0]["finish_reason"] == finish_reason
    ChatCompletion.model_validate(completion)


def test_defaults_for_created_and_id() -> None:
    message = {"id": "msg_42", "content": [], "stop_reason": "end_turn",
               "usage": {"input_tokens": 1, "output_tokens": 1}}
    before = int(time.time())
    completion = anthropic_to_chat(message, "m")
    assert before <= completion["created"] <= int(time.time())
    assert completion["id"] == "chatcmpl-msg_42"


def test_usage_counts_every_prompt_token_once() -> None:
    usage = usage_to_chat({"input_tokens": 3, "cache_read_input_tokens": 1000,
                           "cache_creation_input_tokens": 200, "output_tokens": 7})
    assert usage == {"prompt_tokens": 1203, "completion_tokens": 7, "total_tokens": 1210,
                     "prompt_tokens_details": {"cached_tokens": 1000, "cache_write_tokens": 200},
                     "cache_creation_input_tokens": 200}
    assert usage_to_chat({"input_tokens": 5, "cache_read_input_tokens": None, "output_tokens": 0}) == {
        "prompt_tokens": 5, "completion_tokens": 0, "total_tokens": 5,
        "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0}, "cache_creation_input_tokens": 0}


HTTP_ERRORS = json.loads((FIXTURES / "http_errors.json").read_text())


@pytest.mark.parametrize("case", HTTP_ERRORS["cases"], ids=lambda case: case["name"])
def test_http_errors_say_whether_and_when_to_retry(case: dict[str, Any]) -> None:
    body = case["body"] if isinstance(case["body"], str) else json.dumps(case["body"])
    error = anthropic_error(case["status"], body.encode(), case["headers"], now=HTTP_ERRORS["now"])
    expect = case["expect"]
    assert error.status == expect.get("status", case["status"])
    assert (error.retryable, error.retry_after, error.error_type) == (
        expect["retryable"], expect["retry_after"], expect["error_type"])
    assert all(part in error.message for part in expect["says"]), error.message


async def test_errors_from_the_fake_server_translate(aiohttp_client: Any) -> None:
    app = create_app()
    app[STATE].queue.append(Script(status=529, error_type="overloaded_error", headers={"retry-after": "2"}))
    client = await aiohttp_client(app)
    headers = {"x-api-key": "test-anthropic-key", "anthropic-version": "2023-06-01"}
    body = {"model": "claude-haiku-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    scripted = await client.post("/v1/messages", json=body, headers=headers)
    error = anthropic_error(scripted.status, await scripted.read(), scripted.headers)
    assert (error.status, error.retryable, error.retry_after, error.error_type) == (
        529, True, 2.0, "overloaded_error")
    assert scripted.headers["request-id"] in error.message
    refused = await client.post("/v1/messages", json={**body, "messages": []}, headers=headers)
    error = anthropic_error(refused.status, await refused.read(), refused.headers)
    assert (error.status, error.retryable, error.error_type) == (400, False, "invalid_request_error")
    assert "at least one message" in error.message
