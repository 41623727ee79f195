"""Output a stream gate could relay without judging it.

1. Text after the end of the answer: rules whose `when` reads `response_text` judge the
   whole answer when it ends (a choice's `finish_reason`, the Responses terminal event).
   Text the upstream sends after that was never part of what they judged, so it fails
   the stream closed (`blocked_by_policy`) instead of reaching the client.
2. Tool calls inside Responses lifecycle snapshots (`response.created`,
   `response.in_progress`): the OpenAI SDK reads their `output` too, so their call
   items are judged as `response.completed`'s are, a denied one replaced by a message.

Each case drives the real gateway with the official `openai` SDK, streaming from an
upstream server that writes scripted SSE bytes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
import pytest
from openai import OpenAI

from tests.fakes.scripted_server import QUEUE
from tests.harness import TENANT_KEY, Gateway, Server, base_config
from tests.test_policy_responses_redaction import completed, message, response, stream, streamed

CONFIDENTIAL = """\
policy: default
rules:
  - name: no-confidential
    stage: response
    when: 'response_text.contains("CONFIDENTIAL")'
    action: deny
"""
REDACT_KEYS = """\
policy: default
rules:
  - name: no-keys-out
    stage: response
    action: redact
    detectors: [openai_key]
"""
DENY_DELETE = """\
policy: default
rules:
  - name: no-delete
    tools: {deny: [delete_file]}
"""
KEY = "sk-proj-ABCDEFGHIJKLMNOPQRSTUVWX"
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
def upstream(scripted_upstream: Server) -> Server:
    return scripted_upstream


@pytest.fixture
def client(gateway_factory: Callable[..., Gateway], upstream: Server, tmp_path: Path,
           request: pytest.FixtureRequest) -> OpenAI:
    """The SDK, through a gateway whose tenant has only the `request.param` policy."""
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "default.yaml").write_text(request.param)
    gateway = gateway_factory(base_config(upstream.url, policies_dir=str(policies)))
    return OpenAI(base_url=gateway.base_url, api_key=TENANT_KEY, max_retries=0, timeout=20)


def _queue_chat(upstream: Server, *deltas: tuple[dict, str | None]) -> None:
    chunks = [{"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-test-upstream",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]} for delta, finish in deltas]
    body = b"".join(f"data: {json.dumps(chunk)}\n\n".encode() for chunk in chunks)
    upstream.app[QUEUE].append(body + b"data: [DONE]\n\n")


def _queue_responses(upstream: Server, events: list[dict]) -> None:
    upstream.app[QUEUE].append(b"".join(
        f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode() for event in events))


def _chat_text(client: OpenAI) -> tuple[str, Exception | None]:
    """What the SDK assembles of choice 0's text, and the error that ended the stream."""
    text = ""
    try:
        for chunk in client.chat.completions.create(model="gpt-test", messages=HI, stream=True):
            text += "".join(choice.delta.content or "" for choice in chunk.choices)
    except openai.APIError as error:
        return text, error
    return text, None


def _responses_events(client: OpenAI) -> tuple[list[Any], Exception | None]:
    events: list[Any] = []
    try:
        for event in client.responses.create(model="gpt-test", input="hi", stream=True):
            events.append(event)
    except openai.APIError as error:
        return events, error
    return events, None


# -- 1. text after the end of the answer -----------------------------------------------

@pytest.mark.parametrize("client", [CONFIDENTIAL], indirect=True, ids=["no-confidential"])
def test_chat_text_after_the_finish_fails_closed(client: OpenAI, upstream: Server) -> None:
    _queue_chat(upstream, ({"role": "assistant", "content": "hello"}, None), ({}, "stop"),
                ({"content": " CONFIDENTIAL plan"}, None))
    text, error = _chat_text(client)
    assert text == "hello"
    assert isinstance(error, openai.APIError)
    assert "no-confidential" in str(error) and "after the choice finished" in str(error)


@pytest.mark.parametrize("client", [CONFIDENTIAL], indirect=True, ids=["no-confidential"])
def test_chat_text_before_the_finish_is_still_judged_whole(client: OpenAI, upstream: Server) -> None:
    # The same words before the finish: the rule itself denies the answer.
    _queue_chat(upstream, ({"role": "assistant", "content": "hello"}, None),
                ({"content": " CONFIDENTIAL plan"}, None), ({}, "stop"))
    _, error = _chat_text(client)
    assert isinstance(error, openai.APIError) and "no-confidential" in str(error)
    assert "finished" not in str(error)


@pytest.mark.parametrize("client", [REDACT_KEYS], indirect=True, ids=["no-keys-out"])
def test_chat_text_after_the_finish_is_still_redacted(client: OpenAI, upstream: Server) -> None:
    # No rule reads the whole text: late text goes on, redacted as any other text (what
    # the filter holds back at its end stays back: the choice's text was flushed).
    _queue_chat(upstream, ({"role": "assistant", "content": "hello"}, None), ({}, "stop"),
                ({"content": f" key {KEY} and more" + "." * 80}, None))
    text, error = _chat_text(client)
    assert error is None and text.startswith("hello key [REDACTED] and more") and KEY not in text


@pytest.mark.parametrize("client", [CONFIDENTIAL], indirect=True, ids=["no-confidential"])
def test_responses_text_after_the_terminal_event_fails_closed(client: OpenAI, upstream: Server) -> None:
    _queue_responses(upstream, stream(*streamed(0, "hello"), completed(message("msg_0", "hello")),
                                      *streamed(1, "CONFIDENTIAL", " plan")))
    events, error = _responses_events(client)
    assert "response.completed" in [event.type for event in events]
    assert not [event.type for event in events if "CONFIDENTIAL" in event.to_json()]
    assert isinstance(error, openai.APIError)
    assert "no-confidential" in str(error) and "after the response ended" in str(error)


# -- 2. tool calls in lifecycle snapshots ----------------------------------------------

def _call(item_id: str, name: str) -> dict:
    return {"type": "function_call", "id": item_id, "call_id": f"call_{item_id}", "name": name,
            "arguments": '{"path":"/"}', "status": "completed"}


CALLS = [_call("fc_0", "get_weather"), _call("fc_1", "delete_file")]
SNAPSHOTS: dict[str, Callable[[], list[dict]]] = {
    "response.created": lambda: [
        {"type": "response.created", "response": response("in_progress", CALLS)},
        *stream(*streamed(2, "done"), completed(*CALLS, message("msg_2", "done")))[1:]],
    "response.in_progress": lambda: stream(
        {"type": "response.in_progress", "response": response("in_progress", CALLS)},
        *streamed(2, "done"), completed(*CALLS, message("msg_2", "done"))),
}


@pytest.mark.parametrize("client", [DENY_DELETE], indirect=True, ids=["no-delete"])
@pytest.mark.parametrize("snapshot", SNAPSHOTS)
def test_a_denied_call_in_a_lifecycle_snapshot_is_replaced(client: OpenAI, upstream: Server, snapshot: str) -> None:
    _queue_responses(upstream, SNAPSHOTS[snapshot]())
    events, error = _responses_events(client)
    assert error is None
    [stated] = [event for event in events if event.type == snapshot]
    [done] = [event for event in events if event.type == "response.completed"]
    for output in (stated.response.output, done.response.output):
        # The allowed call stays as it came; the denied one is a message at its index.
        assert output[0].type == "function_call" and output[0].name == "get_weather"
        assert output[1].type == "message" and "no-delete" in output[1].content[0].text
    assert not [event.type for event in events if '"name":"delete_file"' in event.to_json(indent=None)]
