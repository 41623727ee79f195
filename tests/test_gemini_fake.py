"""The fake Gemini server: the official google-genai SDK accepts it, it rejects what Google rejects,
and the translators hold a tool-calling conversation with it (thought signatures checked)."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from providers.base import UpstreamError
from providers.gemini import GeminiStreamTranslator, chat_to_gemini, gemini_error, gemini_to_chat
from providers.sse import SSEParser
from tests.fakes.gemini_server import DEFAULT_TEXT, STATE, Script, create_app, signature_bytes

KEY = "test-gemini-key"
SIGNATURE = "CiQBjz1rX6c9Qm+/Zx0eTQ4pW2Vh8hXk1Y3Zb7a0cRr+Z2l/s9E="
WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city", "days"], "additionalProperties": False}}}


@pytest.fixture
async def fake(aiohttp_server: Any) -> Any:
    return await aiohttp_server(create_app(KEY))


def sdk(server: Any, api_key: str = KEY) -> genai.Client:
    options = types.HttpOptions(base_url=str(server.make_url("")), api_version="v1beta")
    return genai.Client(api_key=api_key, http_options=options)


async def post(server: Any, model: str, body: Any, *, stream: bool = False,
               key: str | None = KEY) -> tuple[int, bytes, dict[str, str]]:
    method = "streamGenerateContent?alt=sse" if stream else "generateContent"
    headers = {"x-goog-api-key": key} if key else {}
    async with aiohttp.ClientSession() as session, session.post(
            server.make_url(f"/v1beta/models/{model}:{method}"), data=orjson.dumps(body),
            headers=headers) as response:
        return response.status, await response.read(), dict(response.headers)


# --- the official SDK accepts the fake ----------------------------------------------------


async def test_sdk_generate_content_text(fake: Any) -> None:
    response = await sdk(fake).aio.models.generate_content(model="gemini-2.5-flash", contents="Hi")
    assert response.text == DEFAULT_TEXT
    usage = response.usage_metadata
    assert usage is not None and usage.prompt_token_count and usage.candidates_token_count
    assert usage.total_token_count == usage.prompt_token_count + usage.candidates_token_count
    assert fake.app[STATE].requests[-1].body["contents"] == [{"parts": [{"text": "Hi"}], "role": "user"}]


async def test_sdk_function_call_and_its_answer(fake: Any) -> None:
    client = sdk(fake)
    tool = types.Tool(function_declarations=[types.FunctionDeclaration(
        name="get_weather", parameters=types.Schema(type="OBJECT", properties={
            "city": types.Schema(type="STRING"), "unit": types.Schema(type="STRING")}, required=["city"]))])
    config = types.GenerateContentConfig(
        tools=[tool], automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True))
    first = await client.aio.models.generate_content(
        model="gemini-3-flash-preview", contents="Weather in Paris?", config=config)
    assert first.function_calls and first.function_calls[0].name == "get_weather"
    assert first.function_calls[0].args == {"city": "test"}
    call_part = first.candidates[0].content.parts[0]
    assert call_part.thought_signature
    # The SDK sends the model turn back as it got it, signature included: the fake accepts it.
    history = [types.Content(role="user", parts=[types.Part(text="Weather in Paris?")]),
               first.candidates[0].content,
               types.Content(role="user", parts=[types.Part.from_function_response(
                   name="get_weather", response={"result": "sunny"})])]
    second = await client.aio.models.generate_content(
        model="gemini-3-flash-preview", contents=history, config=config)
    assert second.text == DEFAULT_TEXT


async def test_sdk_stream_text_and_progressive_usage(fake: Any) -> None:
    text = "Streaming answers arrive in several pieces."
    fake.app[STATE].queue.append(Script.reply(
        {"text": text}, usage={"promptTokenCount": 9, "candidatesTokenCount": 10}, events=4))
    chunks = [chunk async for chunk in await sdk(fake).aio.models.generate_content_stream(
        model="gemini-2.5-flash", contents="Hi")]
    assert len(chunks) == 4
    assert "".join(chunk.text or "" for chunk in chunks) == text
    counts = [chunk.usage_metadata.candidates_token_count or 0 for chunk in chunks]
    assert counts == sorted(counts) and counts[-1] == 10
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert all(chunk.candidates[0].finish_reason is None for chunk in chunks[:-1])


async def test_sdk_stream_function_calls_arrive_whole(fake: Any) -> None:
    fake.app[STATE].queue.append(Script.reply(
        {"text": "Checking both cities."},
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": SIGNATURE},
        {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}}, events=3))
    chunks = [chunk async for chunk in await sdk(fake).aio.models.generate_content_stream(
        model="gemini-2.5-flash", contents="Weather?")]
    calls = [call for chunk in chunks for call in chunk.function_calls or ()]
    assert [(call.name, call.args) for call in calls] == [("get_weather", {"city": "Paris"}),
                                                           ("get_weather", {"city": "Rome"})]
    signed = [part for chunk in chunks for part in chunk.candidates[0].content.parts or ()
              if part.thought_signature]
    assert len(signed) == 1 and signed[0].function_call.args == {"city": "Paris"}


@pytest.mark.parametrize(("script", "code", "status"), [
    (Script.failure(429, "RESOURCE_EXHAUSTED", "Quota exceeded.", retry_delay="30s"), 429, "RESOURCE_EXHAUSTED"),
    (Script.failure(503, "UNAVAILABLE", "The model is overloaded."), 503, "UNAVAILABLE"),
    (Script.failure(404, "NOT_FOUND", "models/nope is not found."), 404, "NOT_FOUND"),
])
async def test_sdk_raises_its_api_error(fake: Any, script: Script, code: int, status: str) -> None:
    fake.app[STATE].queue.append(script)
    with pytest.raises(genai_errors.APIError) as raised:
        await sdk(fake).aio.models.generate_content(model="gemini-2.5-flash", contents="Hi")
    assert (raised.value.code, raised.value.status) == (code, status)


async def test_sdk_with_a_wrong_key(fake: Any) -> None:
    with pytest.raises(genai_errors.ClientError) as raised:
        await sdk(fake, api_key="wrong").aio.models.generate_content(model="gemini-2.5-flash", contents="Hi")
    assert (raised.value.code, raised.value.status) == (400, "INVALID_ARGUMENT")
    assert "API key not valid" in (raised.value.message or "")


# --- the fake rejects what Google rejects, and gemini_error reads its answers --------------

USER_HI = {"role": "user", "parts": [{"text": "hi"}]}
CALL = {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}}]}
ANSWER = {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {"result": 1}}}]}


@pytest.mark.parametrize(("body", "model", "message"), [
    ({"contents": [USER_HI], "tools": [{"functionDeclarations": [{"name": "f", "parameters": {
        "type": "OBJECT", "properties": {"a": {"type": "STRING"}}, "additionalProperties": False}}]}]},
     "gemini-2.5-flash", 'Unknown name "additionalProperties"'),
    ({"contents": [USER_HI], "temperature": 1}, "gemini-2.5-flash", 'Unknown name "temperature"'),
    ({"contents": [{"role": "user", "parts": [{"text": "hi", "cache_control": {}}]}]}, "gemini-2.5-flash",
     'Unknown name "cache_control"'),
    ({"contents": []}, "gemini-2.5-flash", "contents is not specified"),
    ({"contents": [{"role": "assistant", "parts": [{"text": "hi"}]}]}, "gemini-2.5-flash", "valid role"),
    ({"contents": [USER_HI, ANSWER]}, "gemini-2.5-flash", "immediately after a function call turn"),
    ({"contents": [USER_HI, {"role": "model", "parts": CALL["parts"] * 2}, ANSWER]}, "gemini-2.5-flash",
     "number of function response parts"),
    ({"contents": [USER_HI, CALL, ANSWER]}, "gemini-3-flash-preview", "missing a thought_signature"),
    ({"contents": [USER_HI, {"role": "model", "parts": [{**CALL["parts"][0], "thoughtSignature": "AAAA"}]},
                   ANSWER]}, "gemini-3-flash-preview", "Corrupted thought signature"),
])
async def test_fake_rejects_like_google(fake: Any, body: dict[str, Any], model: str, message: str) -> None:
    status, raw, headers = await post(fake, model, body)
    assert status == 400, raw
    error = orjson.loads(raw)["error"]
    assert error["status"] == "INVALID_ARGUMENT" and message in error["message"]
    upstream = gemini_error(status, raw, headers)
    assert (upstream.status, upstream.retryable, upstream.error_type) == (400, False, "invalid_request_error")
    assert message in upstream.message


async def test_fake_refuses_json_mode_beside_functions_before_gemini_3(fake: Any) -> None:
    """As Google does (googleapis/python-genai#867): 400 on 1.x/2.x, accepted on Gemini 3."""
    functions = [{"functionDeclarations": [{"name": "f"}]}]
    json_mode = {"responseMimeType": "application/json", "responseSchema": {"type": "OBJECT"}}
    body = {"contents": [USER_HI], "tools": functions, "generationConfig": json_mode}
    for model in ("gemini-2.5-flash", "gemini-2.0-flash", "gemini-1.5-pro"):
        status, raw, headers = await post(fake, model, body)
        assert (status, orjson.loads(raw)) == (400, {"error": {
            "code": 400, "message": "Function calling with a response mime type: 'application/json' is unsupported",
            "status": "INVALID_ARGUMENT"}}), model
        assert gemini_error(status, raw, headers).status == 400
    assert (await post(fake, "gemini-3-flash-preview", body))[0] == 200
    assert (await post(fake, "gemini-2.5-flash", {**body, "tools": []}))[0] == 200
    assert (await post(fake, "gemini-2.5-flash", {**body, "generationConfig": {"temperature": 0}}))[0] == 200


async def test_fake_accepts_unsigned_calls_on_gemini_2_and_the_documented_stand_in(fake: Any) -> None:
    assert (await post(fake, "gemini-2.5-flash", {"contents": [USER_HI, CALL, ANSWER]}))[0] == 200
    stand_in = {"role": "model",
                "parts": [{**CALL["parts"][0], "thoughtSignature": "skip_thought_signature_validator"}]}
    assert (await post(fake, "gemini-3-flash-preview", {"contents": [USER_HI, stand_in, ANSWER]}))[0] == 200


async def test_fake_checks_the_api_key(fake: Any) -> None:
    status, raw, _ = await post(fake, "gemini-2.5-flash", {"contents": [USER_HI]}, key=None)
    assert status == 403 and orjson.loads(raw)["error"]["status"] == "PERMISSION_DENIED"
    status, raw, _ = await post(fake, "gemini-2.5-flash", {"contents": [USER_HI]}, key="wrong")
    assert status == 400 and orjson.loads(raw)["error"]["details"][0]["reason"] == "API_KEY_INVALID"


@pytest.mark.parametrize(("script", "retryable", "retry_after", "error_type"), [
    (Script.failure(429, "RESOURCE_EXHAUSTED", "Quota exceeded.", retry_delay="30s"), True, 30.0,
     "rate_limit_error"),
    (Script.failure(429, "RESOURCE_EXHAUSTED", "Quota exceeded.", retry_delay="1.5s",
                    headers={"Retry-After": "9"}), True, 1.5, "rate_limit_error"),
    (Script.failure(503, "UNAVAILABLE", "Overloaded.", headers={"Retry-After": "7"}), True, 7.0, "upstream_error"),
    (Script.failure(500, "INTERNAL", "An internal error has occurred."), True, None, "upstream_error"),
    (Script.failure(504, "DEADLINE_EXCEEDED", "Deadline expired."), True, None, "upstream_error"),
    (Script.failure(403, "PERMISSION_DENIED", "Permission denied."), False, None, "permission_error"),
    (Script.failure(404, "NOT_FOUND", "models/nope is not found."), False, None, "invalid_request_error"),
    (Script(status=502, raw=b"<html>Bad Gateway</html>", headers={"Content-Type": "text/html"}), True, None,
     "upstream_error"),
])
async def test_gemini_error_reads_google_errors(fake: Any, script: Script, retryable: bool,
                                                retry_after: float | None, error_type: str) -> None:
    fake.app[STATE].queue.append(script)
    status, raw, headers = await post(fake, "gemini-2.5-flash", {"contents": [USER_HI]})
    error = gemini_error(status, raw, headers)
    assert (error.status, error.retryable, error.retry_after, error.error_type) == \
        (script.status, retryable, retry_after, error_type)
    assert error.kind == "http" and error.message


def test_gemini_error_on_bodies_that_are_not_google_json() -> None:
    listed = orjson.dumps([{"error": {"code": 503, "message": "Overloaded.", "status": "UNAVAILABLE"}}])
    assert gemini_error(503, listed, {}).message == "Gemini UNAVAILABLE: Overloaded."
    html = gemini_error(502, b"<html>Bad Gateway</html>", {"retry-after": "3"})
    assert (html.retryable, html.retry_after) == (True, 3.0) and "Bad Gateway" in html.message
    assert gemini_error(400, b"", {}).retryable is False


# --- the translators hold a tool-calling conversation with the fake -------------------------


def _chat_request(messages: list[dict[str, Any]]) -> dict[str, Any]:
    return {"model": "gemini-3-flash-preview", "messages": messages, "tools": [WEATHER_TOOL]}


async def _complete(fake: Any, messages: list[dict[str, Any]], stream: bool) -> dict[str, Any]:
    """One chat turn through the translators and the fake, as the gateway's adapter would do it."""
    body = chat_to_gemini(_chat_request(messages), "gemini-3-flash-preview")
    status, raw, _ = await post(fake, "gemini-3-flash-preview", body, stream=stream)
    assert status == 200, raw
    if not stream:
        return gemini_to_chat(orjson.loads(raw), "gemini-3-flash-preview")["choices"][0]["message"]
    translator = GeminiStreamTranslator("gemini-3-flash-preview")
    message: dict[str, Any] = {"role": "assistant", "content": "", "tool_calls": []}
    for event in SSEParser().feed(raw):
        for chunk in translator.feed(event.json()):
            delta = chunk["choices"][0]["delta"] if chunk["choices"] else {}
            message["content"] += delta.get("content") or ""
            message["tool_calls"] += [{key: call[key] for key in ("id", "type", "function")}
                                      for call in delta.get("tool_calls", ())]
    assert translator.finished and translator.finish()[0]["usage"]["total_tokens"] > 0
    return message


@pytest.mark.parametrize("stream", [False, True])
async def test_tool_round_trip_with_thought_signatures(fake: Any, stream: bool) -> None:
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Paris for 3 days?"}]
    first = await _complete(fake, messages, stream)
    [call] = first["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    assert orjson.loads(call["function"]["arguments"]) == {"city": "test", "days": 0}
    assert "__gts_" in call["id"]
    # What an OpenAI client sends back: the call as it got it, and the tool's result.
    messages += [{"role": "assistant", "content": None, "tool_calls": [call]},
                 {"role": "tool", "tool_call_id": call["id"], "content": '{"forecast": "sun"}'}]
    second = await _complete(fake, messages, stream)
    assert second["content"] == DEFAULT_TEXT
    sent = fake.app[STATE].requests[-1].body["contents"][1]["parts"][0]
    assert signature_bytes(sent["thoughtSignature"]) in fake.app[STATE].signatures


async def test_a_cut_stream_leaves_the_translator_unfinished(fake: Any) -> None:
    fake.app[STATE].queue.append(Script.reply({"text": "a long answer that will not arrive whole"},
                                              events=4, cut_after=2))
    translator = GeminiStreamTranslator("gemini-2.5-flash")
    parser = SSEParser()
    async with aiohttp.ClientSession() as session, session.post(
            fake.make_url("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"),
            data=orjson.dumps({"contents": [USER_HI]}), headers={"x-goog-api-key": KEY}) as response:
        with pytest.raises(aiohttp.ClientPayloadError):
            async for data in response.content.iter_any():
                for event in parser.feed(data):
                    translator.feed(event.json())
    assert not translator.finished


async def test_stream_without_alt_sse_is_one_json_array(fake: Any) -> None:
    fake.app[STATE].queue.append(Script.reply({"text": "one two three"}, events=3))
    async with aiohttp.ClientSession() as session, session.post(
            fake.make_url("/v1beta/models/gemini-2.5-flash:streamGenerateContent"),
            data=orjson.dumps({"contents": [USER_HI]}), headers={"x-goog-api-key": KEY}) as response:
        events = orjson.loads(await response.read())
    assert len(events) == 3
    assert "".join(event["candidates"][0]["content"]["parts"][0]["text"] for event in events) == "one two three"


def test_a_blocked_prompt_script_translates_to_a_safety_error() -> None:
    blocked = {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 4}}
    with pytest.raises(UpstreamError) as raised:
        gemini_to_chat(blocked, "gemini-2.5-flash")
    assert raised.value.kind == "safety" and not raised.value.retryable
