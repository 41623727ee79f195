"""Response-stage redaction end to end: an upstream that replays exact SSE bytes (the
fake OpenAI server only scripts text and tool calls, and writes the events a real API
would), the gateway, and the official openai SDK reading the stream as its users do:
`responses.create(stream=True)` event by event (what the Agents SDK does, taking its
output from `response.completed`) and `responses.stream(...)`'s final response."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import OpenAI

from tests.fakes.scripted_server import QUEUE
from tests.harness import Gateway, Server
from tests.policy_setup import THIRD_TENANT_KEY, policy_config
from tests.test_policy_responses_redaction import FAILED, KEY, REDACTED


@pytest.fixture
def replay(scripted_upstream: Server) -> Server:
    return scripted_upstream


@pytest.fixture
def gateway(gateway_factory: Callable[..., Gateway], replay: Server, tmp_path: Path) -> Gateway:
    # The third tenant has only the default policy, whose `no-keys-out` redacts openai_key.
    return gateway_factory(policy_config(replay.url, tmp_path))


def _queue(replay: Server, events: list[dict], times: int = 1) -> None:
    body = b"".join(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode() for event in events)
    replay.app[QUEUE].extend([body] * times)


def _client(gateway: Gateway) -> OpenAI:
    return OpenAI(base_url=gateway.base_url, api_key=THIRD_TENANT_KEY, max_retries=0)


def _raw(gateway: Gateway, path: str, body: dict[str, Any]) -> str:
    return httpx.post(f"{gateway.base_url}/{path}", json=body, timeout=30,
                      headers={"Authorization": f"Bearer {THIRD_TENANT_KEY}"}).text


@pytest.mark.parametrize("name", REDACTED)
def test_the_sdk_never_sees_a_key(gateway: Gateway, replay: Server, name: str) -> None:
    _queue(replay, REDACTED[name](), times=3)
    raw = _raw(gateway, "responses", {"model": "gpt-test", "input": "hi", "stream": True})
    assert not KEY.search(raw) and "[REDACTED]" in raw

    events = list(_client(gateway).responses.create(model="gpt-test", input="hi", stream=True))
    assert not [event.type for event in events if KEY.search(event.to_json())]
    [done] = [event for event in events if event.type == "response.completed"]
    assert not KEY.search(done.response.output_text)  # what the Agents SDK takes as the answer

    with _client(gateway).responses.stream(model="gpt-test", input="hi") as stream:
        final = stream.get_final_response()
    assert not KEY.search(final.to_json())
    if "snapshot" not in name:
        assert "[REDACTED]" in final.output_text


@pytest.mark.parametrize("name", ["delta at index 0.0", "delta at an unannounced index"])
def test_text_the_gateway_cannot_place_ends_the_stream_with_an_error(gateway: Gateway, replay: Server,
                                                                     name: str) -> None:
    _queue(replay, FAILED[name]())
    raw = _raw(gateway, "responses", {"model": "gpt-test", "input": "hi", "stream": True})
    assert not KEY.search(raw) and "blocked_by_policy" in raw


def test_chat_content_parts_are_redacted(gateway: Gateway, replay: Server) -> None:
    secret = "sk-proj-ABCDEFGHIJKLMNOPQRSTUVWX"
    answer = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-test-upstream",
              "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None, "message": {
                  "role": "assistant", "content": [{"type": "text", "text": f"Your key is {secret}."}]}}],
              "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}}
    replay.app[QUEUE].append(json.dumps(answer).encode())
    raw = _raw(gateway, "chat/completions", {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]})
    assert secret not in raw
    assert json.loads(raw)["choices"][0]["message"]["content"] == [{"type": "text", "text": "Your key is [REDACTED]."}]
