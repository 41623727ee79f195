"""OpenAI Chat Completions request -> Anthropic Messages request (golden fixtures).

Every fixture in tests/fixtures/anthropic/request/ is translated and compared with its
expected body; the result must also match the official SDK's request types and be
accepted by the fake Anthropic server, which checks what the real API checks.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydantic
import pytest
from anthropic.types import message_create_params

from providers.anthropic import ModelTraits, chat_to_anthropic, traits_for
from providers.anthropic.request import output_allowance
from providers.base import UnsupportedRequest
from tests.fakes.anthropic_server import create_app

FIXTURES = Path(__file__).parent / "fixtures" / "anthropic"
CASES = sorted((FIXTURES / "request").glob("*.json"))
ERRORS = json.loads((FIXTURES / "request_errors.json").read_text())
SAMPLING = ("temperature", "top_p", "top_k")
SDK_TYPES = {
    False: pydantic.TypeAdapter(message_create_params.MessageCreateParamsNonStreaming),
    True: pydantic.TypeAdapter(message_create_params.MessageCreateParamsStreaming),
}


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def translate(case: dict[str, Any]) -> dict[str, Any]:
    options = dict(case.get("options") or {})
    if "traits" in options:
        options["traits"] = ModelTraits(**options["traits"])
    return chat_to_anthropic(case["openai"], case["model"], **options)


def materialize(value: Any) -> Any:
    """Pydantic validates `Iterable` fields lazily; walk them so every item is validated."""
    if isinstance(value, dict):
        return {key: materialize(item) for key, item in value.items()}
    if isinstance(value, list | tuple | Iterator):
        return [materialize(item) for item in value]
    return value


@pytest.mark.parametrize("path", CASES, ids=lambda path: path.stem)
def test_translation_matches_fixture(path: Path) -> None:
    case = load(path)
    original = copy.deepcopy(case["openai"])
    assert translate(case) == case["anthropic"]
    assert case["openai"] == original, "the translator must not change its input"


@pytest.mark.parametrize("path", CASES, ids=lambda path: path.stem)
def test_translation_fits_the_sdk_request_types(path: Path) -> None:
    request = translate(load(path))
    validated = materialize(SDK_TYPES[bool(request.get("stream"))].validate_python(request))
    # The SDK's types drop unknown keys, so any difference is a field the API does not know.
    # (The 2.x SDK follows anthropic-version 2026-10-21, which has no sampling parameters;
    # the fake server checks those under 2023-06-01.)
    assert validated == {key: value for key, value in request.items() if key not in SAMPLING}


@pytest.mark.parametrize("path", CASES, ids=lambda path: path.stem)
async def test_fake_anthropic_accepts_translation(path: Path, aiohttp_client: Any) -> None:
    client = await aiohttp_client(create_app())
    response = await client.post("/v1/messages", json=translate(load(path)), headers={
        "x-api-key": "test-anthropic-key", "anthropic-version": "2023-06-01"})
    assert response.status == 200, await response.text()


@pytest.mark.parametrize("case", ERRORS["cases"], ids=lambda case: case["name"])
def test_unsupported_requests_say_what_to_do(case: dict[str, Any]) -> None:
    body = {"model": "gpt-5.5", "messages": ERRORS["base_messages"], **case["body"]}
    with pytest.raises(UnsupportedRequest) as raised:
        chat_to_anthropic(body, ERRORS["model"])
    assert raised.value.param == case["param"]
    assert case["says"] in raised.value.message


@pytest.mark.parametrize(("model", "api_version", "sampling", "thinking"), [
    ("claude-3-5-haiku-20241022", "2023-06-01", True, "budget"),
    ("claude-3-7-sonnet-latest", "2023-06-01", True, "budget"),
    ("claude-sonnet-4-20250514", "2023-06-01", True, "budget"),
    ("claude-sonnet-4-5-20250929", "2023-06-01", True, "budget"),
    ("us.anthropic.claude-haiku-4-5-20251001-v1:0", "2023-06-01", True, "budget"),
    ("claude-opus-4-6", "2023-06-01", True, "adaptive"),
    ("claude-opus-4-7", "2023-06-01", False, "adaptive"),
    ("claude-sonnet-5", "2023-06-01", False, "adaptive"),
    ("claude-haiku-5-5", "2023-06-01", False, "adaptive"),
    ("claude-sonnet-4-5", "2026-10-21", False, "budget"),
    ("my-claude-deployment", "2023-06-01", True, "budget"),
])
def test_traits_follow_model_generation_and_api_version(model: str, api_version: str, sampling: bool,
                                                        thinking: str) -> None:
    assert traits_for(model, api_version) == ModelTraits(sampling=sampling, thinking=thinking)


def test_temperature_is_sent_to_models_that_take_it_only() -> None:
    body = {"model": "gpt-5.5", "messages": [{"role": "user", "content": "Hi"}], "temperature": 0.4}
    assert chat_to_anthropic(body, "claude-sonnet-4-5")["temperature"] == 0.4
    assert "temperature" not in chat_to_anthropic(body, "claude-opus-4-7")
    no_sampling = traits_for("claude-sonnet-4-5", "2026-10-21")
    assert "temperature" not in chat_to_anthropic(body, "claude-sonnet-4-5", traits=no_sampling)


@pytest.mark.parametrize(("body", "thinking", "allowance"), [
    ({"max_tokens": 100, "reasoning_effort": "high"}, "budget", 100 + 16_384),
    ({"max_output_tokens": 100, "reasoning": {"effort": "medium"}}, "budget", 100 + 4_096),  # Responses
    ({"max_tokens": 20_000, "reasoning_effort": "high"}, "budget", 20_000),  # room for the budget already
    ({"reasoning_effort": "low"}, "budget", 4_096),  # the default max_tokens holds the 1,024 budget
    ({"max_tokens": 100, "reasoning_effort": "high"}, "adaptive", 100),  # thinks within max_tokens
    ({}, "budget", 4_096),
])
def test_output_allowance_is_the_max_tokens_the_translation_sends(body: dict[str, Any], thinking: str,
                                                                  allowance: int) -> None:
    traits = ModelTraits(thinking=thinking)  # type: ignore[arg-type]
    assert output_allowance(body, traits) == allowance
    if "messages" not in body and "max_output_tokens" not in body and "reasoning" not in body:
        sent = chat_to_anthropic({**body, "messages": [{"role": "user", "content": "x"}]}, "claude-x", traits=traits)
        assert sent["max_tokens"] == allowance
