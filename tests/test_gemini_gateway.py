"""Gemini through the gateway, end to end with the official SDKs against the fake Gemini:

- a typed answer beside tools (the Agents SDK's `output_type` with tools): Gemini 1.x/2.x
  refuse JSON mode beside function declarations, so the format goes as an instruction in
  the system instruction; Gemini 3 gets the native fields;
- an answer that breaks off (finishReason MALFORMED_FUNCTION_CALL, ...) is a failed attempt:
  retried, else a 502, or the final error event of a stream that had started.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from agents import Agent, function_tool
from openai import OpenAI
from pydantic import BaseModel

from gateway.usage import Usage
from tests.agents_support import agents_model, run_agent
from tests.fakes.gemini_server import STATE, FakeGeminiState, Script, create_app
from tests.harness import TENANT_KEY, BackgroundLoop, Gateway, Server, base_config, serving
from tests.providers_matrix import GEMINI_KEY

LOOKUP_TOOL = {"type": "function", "function": {
    "name": "lookup_weather", "description": "The weather in a city", "strict": True, "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
        "additionalProperties": False}}}
ANSWER = '{"city": "Paris", "sunny": true}'
LOOKED_UP: list[str] = []


class Forecast(BaseModel):
    city: str
    sunny: bool


@function_tool
def lookup_weather(city: str) -> str:
    """The weather in a city."""
    LOOKED_UP.append(city)
    return f"sunny in {city}"


@pytest.fixture
def gemini(bg: BackgroundLoop) -> Iterator[Server]:
    yield from serving(bg, create_app(api_key=GEMINI_KEY))


@pytest.fixture
def state(gemini: Server) -> FakeGeminiState:
    return gemini.app[STATE]


@pytest.fixture
def gateway_on(gemini: Server, gateway_factory: Callable[..., Gateway]) -> Callable[[str], Gateway]:
    """A gateway whose alias `assistant` has one target: the fake Gemini under this model name."""
    def start(model: str) -> Gateway:
        config = base_config("http://127.0.0.1:9")
        config["providers"] = {"google": {"type": "gemini", "base_url": gemini.url, "api_key": GEMINI_KEY}}
        config["models"] = {"assistant": {"targets": [{"provider": "google", "model": model}],
                                          "retry": {"attempts": 2, "backoff_ms": 10}}}
        config["tenants"]["globex"]["models"] = ["assistant"]
        return gateway_factory(config, name=model)
    return start


def client(gateway: Gateway) -> OpenAI:
    return OpenAI(base_url=gateway.base_url, api_key=TENANT_KEY, max_retries=0)


def format_instruction(body: dict[str, Any]) -> str | None:
    """The output format instruction the gateway appended to the system instruction, if any."""
    parts = body.get("systemInstruction", {}).get("parts") or [{}]
    text = parts[-1].get("text", "")
    return text if text.startswith("Answer format:") else None


# --- a typed answer beside tools ------------------------------------------------------------


@pytest.mark.parametrize("api", ["chat", "responses"])
def test_typed_answer_beside_tools_is_an_instruction_on_gemini_2_and_native_on_gemini_3(
        state: FakeGeminiState, gateway_on: Callable[[str], Gateway], api: str) -> None:
    for model in ("gemini-2.5-flash", "gemini-3-flash-preview"):
        openai = client(gateway_on(model))
        state.queue.append(Script.reply({"text": ANSWER}))
        if api == "chat":
            parsed = openai.chat.completions.parse(
                model="assistant", messages=[{"role": "system", "content": "Be brief."},
                                             {"role": "user", "content": "Weather in Paris?"}],
                tools=[LOOKUP_TOOL], response_format=Forecast).choices[0].message.parsed
        else:
            tool = {"type": "function", **LOOKUP_TOOL["function"]}
            parsed = openai.responses.parse(model="assistant", instructions="Be brief.", input="Weather in Paris?",
                                            tools=[tool], text_format=Forecast).output_parsed  # type: ignore[list-item]
        assert parsed == Forecast(city="Paris", sunny=True), model
        sent = state.requests[-1].body
        assert sent["tools"][0]["functionDeclarations"][0]["name"] == "lookup_weather"
        config = sent.get("generationConfig", {})
        instruction = format_instruction(sent)
        if model.startswith("gemini-2"):
            assert "responseMimeType" not in config and "responseSchema" not in config
            assert instruction is not None and "only a JSON value that matches the JSON schema" in instruction
            schema = json.loads(instruction.split(" JSON schema: ", 1)[1])
            assert schema["required"] == ["city", "sunny"] and set(schema["properties"]) == {"city", "sunny"}
            assert sent["systemInstruction"]["parts"][0] == {"text": "Be brief."}
        else:
            assert config["responseMimeType"] == "application/json"
            assert set(config["responseSchema"]["properties"]) == {"city", "sunny"}
            assert instruction is None


@pytest.mark.parametrize("api", ["chat", "responses"])
@pytest.mark.parametrize("streamed", [False, True], ids=["run", "streamed"])
async def test_agent_with_output_type_and_a_tool_runs_on_gemini_2_5(
        state: FakeGeminiState, gateway_on: Callable[[str], Gateway], api: str, streamed: bool) -> None:
    LOOKED_UP.clear()
    gateway = gateway_on("gemini-2.5-flash")
    state.queue.append(Script.reply({"functionCall": {"name": "lookup_weather", "args": {"city": "Paris"}}}))
    state.queue.append(Script.reply({"text": ANSWER}))
    agent = Agent(name="forecaster", instructions="Use lookup_weather.", tools=[lookup_weather],
                  output_type=Forecast, model=agents_model(api, gateway))
    result = await run_agent(agent, "Weather in Paris?", streamed=streamed)
    assert result.final_output == Forecast(city="Paris", sunny=True)
    assert LOOKED_UP == ["Paris"]
    assert len(state.requests) == 2
    for request in state.requests:
        assert "responseMimeType" not in request.body.get("generationConfig", {})
        instruction = format_instruction(request.body)
        assert instruction is not None and '"sunny"' in instruction
        assert request.body["systemInstruction"]["parts"][0] == {"text": "Use lookup_weather."}


# --- an answer that breaks off ------------------------------------------------------------------


def _ask(gateway: Gateway, api: str, stream: bool) -> str:
    """The answer's text, through the openai SDK."""
    openai = client(gateway)
    if api == "chat":
        messages: Any = [{"role": "user", "content": "Weather in Paris?"}]
        if not stream:
            return openai.chat.completions.create(model="assistant", messages=messages,
                                                  tools=[LOOKUP_TOOL]).choices[0].message.content or ""
        chunks = openai.chat.completions.create(model="assistant", messages=messages, tools=[LOOKUP_TOOL],
                                                stream=True)
        return "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    if not stream:
        return openai.responses.create(model="assistant", input="Weather in Paris?").output_text
    with openai.responses.stream(model="assistant", input="Weather in Paris?") as events:
        return events.get_final_response().output_text


@pytest.mark.parametrize("api", ["chat", "responses"])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_a_malformed_function_call_is_retried(state: FakeGeminiState, gateway_on: Callable[[str], Gateway],
                                              api: str, stream: bool) -> None:
    gateway = gateway_on("gemini-2.5-flash")
    state.queue.extend([Script.reply(finish_reason="MALFORMED_FUNCTION_CALL"),
                        Script.reply({"text": "Sunny in Paris."})])
    assert _ask(gateway, api, stream) == "Sunny in Paris."
    assert len(state.requests) == 2


def _post_chat(gateway: Gateway, stream: bool) -> httpx.Response:
    body = {"model": "assistant", "messages": [{"role": "user", "content": "Weather in Paris?"}],
            "tools": [LOOKUP_TOOL], "stream": stream}
    return httpx.post(f"{gateway.base_url}/chat/completions", json=body, timeout=30,
                      headers={"Authorization": f"Bearer {TENANT_KEY}"})


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_every_attempt_malformed_is_a_502(state: FakeGeminiState, gateway_on: Callable[[str], Gateway],
                                          stream: bool) -> None:
    gateway = gateway_on("gemini-2.5-flash")
    state.queue.extend([Script.reply(finish_reason="MALFORMED_FUNCTION_CALL")] * 2)
    response = _post_chat(gateway, stream)
    assert response.status_code == 502, response.text
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("upstream_error", "upstream_error")
    assert "after 2 attempt(s)" in error["message"] and "finishReason MALFORMED_FUNCTION_CALL" in error["message"]
    assert len(state.requests) == 2


def test_a_stream_that_breaks_off_after_content_ends_with_the_error_event(
        state: FakeGeminiState, gateway_on: Callable[[str], Gateway]) -> None:
    gateway = gateway_on("gemini-2.5-flash")
    state.queue.append(Script.reply({"text": "Let me look that up for you."}, finish_reason="MALFORMED_FUNCTION_CALL",
                                    events=3))
    response = _post_chat(gateway, stream=True)
    assert response.status_code == 200
    events = [line.removeprefix("data: ") for line in response.text.splitlines() if line.startswith("data: ")]
    assert "[DONE]" not in events
    chunks, last = [json.loads(event) for event in events[:-1]], json.loads(events[-1])
    text = "".join(choice["delta"].get("content") or "" for chunk in chunks for choice in chunk["choices"])
    assert text and "Let me look that up for you.".startswith(text)
    assert not any(choice.get("finish_reason") for chunk in chunks for choice in chunk["choices"])
    assert last["error"]["type"] == "upstream_error"
    assert "finishReason MALFORMED_FUNCTION_CALL" in last["error"]["message"]
    assert len(state.requests) == 1, "content had reached the client: no second attempt"


def _totals(gateway: Gateway) -> dict[str, Any]:
    return httpx.get(f"{gateway.base_url}/usage", headers={"Authorization": f"Bearer {TENANT_KEY}"}).json()["totals"]


@pytest.mark.parametrize("answered", [True, False], ids=["retried", "all-broken"])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_answers_that_broke_off_are_metered_as_billed(state: FakeGeminiState, gateway_on: Callable[[str], Gateway],
                                                       answered: bool, stream: bool) -> None:
    # Google bills an answer that broke off like any other: the retry must not hide it.
    gateway = gateway_on("gemini-2.5-flash")
    usage = {"promptTokenCount": 100, "candidatesTokenCount": 20}
    broken = Script.reply(finish_reason="MALFORMED_FUNCTION_CALL", usage=usage, events=1)
    state.queue.extend([broken, Script.reply({"text": "Sunny."}, usage=usage) if answered else broken])
    assert _post_chat(gateway, stream=stream).status_code == (200 if answered else 502)
    totals = _totals(gateway)
    one_call = gateway.runtime.snapshot.prices.cost("gemini-2.5-flash", Usage(input_tokens=100, output_tokens=20))
    assert one_call
    assert (totals["requests"], totals["input_tokens"], totals["output_tokens"]) == (1, 200, 40)
    assert totals["cost_usd"] == pytest.approx(2 * one_call)


def test_a_billed_failure_and_an_unpriced_backup_are_both_accounted(
        state: FakeGeminiState, gemini: Server, openai_upstream: Server,
        gateway_factory: Callable[..., Gateway]) -> None:
    config = base_config(openai_upstream.url)
    config["providers"]["google"] = {"type": "gemini", "base_url": gemini.url, "api_key": GEMINI_KEY}
    config["models"] = {"assistant": {"targets": [{"provider": "google", "model": "gemini-2.5-flash"},
                                                  {"provider": "upstream", "model": "my-local-llm"}],
                                      "retry": {"attempts": 1}}}
    config["tenants"]["globex"]["models"] = ["assistant"]
    gateway = gateway_factory(config)
    state.queue.append(Script.reply(finish_reason="MALFORMED_FUNCTION_CALL",
                                    usage={"promptTokenCount": 100, "candidatesTokenCount": 20}))
    assert _post_chat(gateway, stream=False).headers["x-lockgate-model"] == "my-local-llm"
    billed = gateway.runtime.snapshot.prices.cost("gemini-2.5-flash", Usage(input_tokens=100, output_tokens=20))
    assert _totals(gateway)["cost_usd"] == pytest.approx(billed)  # the priced part; the local model's is unknown
    metrics = httpx.get(f"{gateway.url}/metrics").text
    assert 'lockgate_unpriced_requests_total{model="my-local-llm"} 1.0' in metrics


def test_billed_failures_are_reserved_before_the_next_attempt(
        state: FakeGeminiState, gemini: Server, gateway_factory: Callable[..., Gateway]) -> None:
    # $0.10 per broken answer at these prices; the reservation of one attempt is ~$0.11 of
    # the $0.25 budget. Two billed failures and the third attempt would spend $0.30.
    config = base_config("http://127.0.0.1:9", pricing={"models": {"gemini-2.5-flash": {"input": 100.0,
                                                                                       "output": 100.0}}})
    config["providers"] = {"google": {"type": "gemini", "base_url": gemini.url, "api_key": GEMINI_KEY}}
    config["models"] = {"assistant": {"targets": [{"provider": "google", "model": "gemini-2.5-flash"}],
                                      "retry": {"attempts": 3, "backoff_ms": 10}}}
    config["tenants"]["globex"]["models"] = ["assistant"]
    config["tenants"]["acme"]["budget"] = {"usd_per_day": 0.25}
    gateway = gateway_factory(config)
    heavy = {"promptTokenCount": 1000, "candidatesTokenCount": 0}
    state.queue.extend([Script.reply(finish_reason="MALFORMED_FUNCTION_CALL", usage=heavy)] * 2
                       + [Script.reply({"text": "Sunny."}, usage=heavy)])
    response = _post_chat(gateway, stream=False)
    assert response.status_code == 429 and response.json()["error"]["code"] == "budget_exceeded", response.text
    assert len(state.requests) == 2  # the third attempt would have passed the budget
    assert _totals(gateway)["cost_usd"] == pytest.approx(0.2)
