"""Chat Completions request -> Gemini request: golden fixtures, validated by google-genai's types."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import orjson
import pydantic
import pytest
from google.genai import types
from hypothesis import given
from hypothesis import strategies as st

from providers.base import UnsupportedRequest
from providers.gemini import chat_to_gemini, gemini_to_chat, join_tool_call_id, split_tool_call_id, to_gemini_schema
from tests.golden import golden_cases

FIXTURES = Path(__file__).parent / "fixtures" / "gemini"

# The SDK's pydantic models mirror the API's protos and forbid unknown fields.
_REQUEST_TYPES: dict[str, pydantic.TypeAdapter[Any]] = {
    "contents": pydantic.TypeAdapter(list[types.Content]),
    "systemInstruction": pydantic.TypeAdapter(types.Content),
    "tools": pydantic.TypeAdapter(list[types.Tool]),
    "toolConfig": pydantic.TypeAdapter(types.ToolConfig),
    "generationConfig": pydantic.TypeAdapter(types.GenerationConfig),
}


def assert_valid_gemini_request(request: dict[str, Any]) -> None:
    assert set(request) <= set(_REQUEST_TYPES), set(request) - set(_REQUEST_TYPES)
    for key, value in request.items():
        # JSON mode, so thought signatures must be base64 as on the wire.
        _REQUEST_TYPES[key].validate_json(orjson.dumps(value))
    for content in request["contents"]:
        assert content["role"] in ("user", "model") and content["parts"]


@pytest.mark.parametrize("case", golden_cases(FIXTURES / "request", errors=False))
def test_request_fixture(case: dict[str, Any]) -> None:
    body = copy.deepcopy(case["input"])
    produced = chat_to_gemini(body, case["model"])
    assert produced == case["expected"]
    assert body == case["input"], "the translator must not change its input"
    assert_valid_gemini_request(produced)


@pytest.mark.parametrize("case", golden_cases(FIXTURES / "request", errors=True))
def test_request_rejected(case: dict[str, Any]) -> None:
    with pytest.raises(UnsupportedRequest) as raised:
        chat_to_gemini(case["input"], case["model"])
    assert raised.value.param == case["error"]["param"]
    assert raised.value.message


@pytest.mark.parametrize("case", golden_cases(FIXTURES / "schema"))
def test_schema_fixture(case: dict[str, Any]) -> None:
    converted = to_gemini_schema(copy.deepcopy(case["input"]))
    assert converted == case["expected"]
    types.Schema.model_validate_json(orjson.dumps(converted))
    assert "additionalProperties" not in orjson.dumps(converted).decode()


@given(st.binary(min_size=1, max_size=300), st.sampled_from(["call_abc", "fc-1", "x"]))
def test_signature_survives_the_tool_call_id(signature_bytes: bytes, call_id: str) -> None:
    signature = base64.b64encode(signature_bytes).decode()
    tool_call_id = join_tool_call_id(call_id, signature)
    assert all(char.isalnum() or char in "_-" for char in tool_call_id)
    assert split_tool_call_id(tool_call_id) == (call_id, signature)


def test_plain_ids_have_no_signature() -> None:
    assert join_tool_call_id("call_1", None) == "call_1"
    assert split_tool_call_id("call_1") == ("call_1", None)


def _gemini_reply_with_parallel_calls() -> dict[str, Any]:
    cases = json.loads((FIXTURES / "response" / "tools.json").read_text())
    return next(case["input"] for case in cases if case["description"].startswith("parallel function calls"))


def test_thought_signature_round_trip_through_an_openai_client() -> None:
    """Gemini's parts come back byte for byte after a trip through chat-shaped history."""
    reply = _gemini_reply_with_parallel_calls()
    completion = gemini_to_chat(reply, "gemini-3-flash-preview", completion_id="chatcmpl-1")
    message = completion["choices"][0]["message"]
    # What an OpenAI client keeps of the assistant turn: role, content, id/name/arguments.
    history = [
        {"role": "user", "content": "Weather and time in Paris?"},
        {"role": "assistant", "content": message["content"], "tool_calls": [
            {"id": call["id"], "type": "function", "function": dict(call["function"])}
            for call in message["tool_calls"]]},
        *({"role": "tool", "tool_call_id": call["id"], "content": "ok"} for call in message["tool_calls"]),
    ]
    request = chat_to_gemini({"messages": history}, "gemini-3-flash-preview")
    model_turn = request["contents"][1]
    original_calls = [part for part in reply["candidates"][0]["content"]["parts"] if "functionCall" in part]
    sent_calls = [part for part in model_turn["parts"] if "functionCall" in part]
    assert [part.get("thoughtSignature") for part in sent_calls] == \
        [part.get("thoughtSignature") for part in original_calls]
    assert [part["functionCall"]["args"] for part in sent_calls] == \
        [part["functionCall"]["args"] for part in original_calls]
    answers = request["contents"][2]["parts"]
    assert [answer["functionResponse"]["id"] for answer in answers] == \
        [part["functionCall"]["id"] for part in sent_calls]
    assert [answer["functionResponse"]["name"] for answer in answers] == ["get_weather", "get_time"]


# --- response_format beside function declarations ------------------------------------------

FORECAST_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}, "sunny": {"type": "boolean"}},
                   "required": ["city", "sunny"], "additionalProperties": False}
FORMATS = {
    "json_schema": {"type": "json_schema", "json_schema": {"name": "Forecast", "strict": True,
                                                          "schema": FORECAST_SCHEMA}},
    "json_object": {"type": "json_object"},
}
LOOKUP_TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def _with_format(kind: str, model: str, **extra: Any) -> dict[str, Any]:
    body = {"model": model, "response_format": FORMATS[kind], **extra,
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Paris?"}]}
    return chat_to_gemini(body, model)


@pytest.mark.parametrize("kind", sorted(FORMATS))
def test_json_format_beside_functions_is_an_instruction_before_gemini_3(kind: str) -> None:
    """Gemini 1.x/2.x answer 400 to JSON mode beside functions; Gemini 3 takes both natively."""
    for model in ("gemini-2.5-flash", "models/gemini-2.0-flash", "gemini-1.5-pro", "gemini-flash-latest",
                  "my-tuned-model"):
        request = _with_format(kind, model, tools=[LOOKUP_TOOL])
        assert_valid_gemini_request(request)
        config = request.get("generationConfig", {})
        assert "responseMimeType" not in config and "responseSchema" not in config, model
        first, instruction = request["systemInstruction"]["parts"]
        assert first == {"text": "Be brief."}
        assert instruction["text"].startswith("Answer format: when you give your final answer (rather than "
                                              "calling a function), reply with only ")
        if kind == "json_object":
            assert "only a JSON object," in instruction["text"] and "schema" not in instruction["text"]
        else:
            assert instruction["text"].endswith(f" JSON schema: {orjson.dumps(FORECAST_SCHEMA).decode()}")
    for model in ("gemini-3-flash-preview", "models/gemini-3-pro-preview", "gemini-3.1-pro-preview"):
        request = _with_format(kind, model, tools=[LOOKUP_TOOL])
        assert request["generationConfig"]["responseMimeType"] == "application/json", model
        assert ("responseSchema" in request["generationConfig"]) == (kind == "json_schema")
        assert request["systemInstruction"] == {"parts": [{"text": "Be brief."}]}


def test_json_format_without_functions_stays_native_and_the_instruction_needs_no_system_message() -> None:
    native = _with_format("json_schema", "gemini-2.5-flash")
    assert native["generationConfig"]["responseMimeType"] == "application/json"
    assert native["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    alone = chat_to_gemini({"messages": [{"role": "user", "content": "hi"}], "tools": [LOOKUP_TOOL],
                            "response_format": FORMATS["json_object"]}, "gemini-2.5-flash")
    assert [part["text"][:14] for part in alone["systemInstruction"]["parts"]] == ["Answer format:"]
    assert "generationConfig" not in alone
