"""What an upstream stream event means: content or preamble, the end, or a failure.

Every event is checked once, as it arrives: garbage or an error payload from the
upstream becomes an `UpstreamError` (before the first content the router fails over on
it; after, the relay ends the stream with the error event), so no stage ever forwards
an upstream's broken bytes to a client.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from providers.base import CHAT, EMBEDDINGS, RESPONSES, Api, UpstreamError
from providers.sse import SSEEvent

# Responses events that carry no content yet: held back so a failure right after them can
# still fail over to another target.
RESPONSES_PREAMBLE = frozenset({"response.created", "response.in_progress", "response.queued"})
RESPONSES_TERMINAL = frozenset({"response.completed", "response.incomplete"})
RESPONSES_FAILURES = frozenset({"error", "response.failed"})


def checked_payload(event: SSEEvent) -> dict[str, Any] | None:
    """The event's JSON object (None for `[DONE]`); raises `UpstreamError` on garbage or errors."""
    if event.is_done:
        return None
    try:
        payload = event.json()
    except orjson.JSONDecodeError:
        raise UpstreamError("the upstream sent a malformed stream event", kind="malformed",
                            retryable=True) from None
    if not isinstance(payload, dict):
        raise UpstreamError("the upstream sent a stream event that is not a JSON object", kind="malformed",
                            retryable=True)
    if ("error" in payload and payload.get("object") != "response") or payload.get("type") in RESPONSES_FAILURES:
        raise UpstreamError(_error_message(payload), kind="http", retryable=True, event=payload)
    choices = payload.get("choices")
    if choices is not None and not _chunk_shape_ok(choices):
        # The tool-call gate must be able to read every chunk: one it cannot read fails closed.
        raise UpstreamError("the upstream sent a chat chunk of an unexpected shape", kind="malformed",
                            retryable=True)
    return payload


def _chunk_shape_ok(choices: Any) -> bool:
    if not isinstance(choices, list):
        return False
    for choice in choices:
        if not isinstance(choice, dict):
            return False
        delta = choice.get("delta")
        if delta is None:
            continue
        if not isinstance(delta, dict):
            return False
        calls = delta.get("tool_calls")
        if calls is not None and not (isinstance(calls, list) and all(
                isinstance(call, dict) and isinstance(call.get("function") or {}, dict) for call in calls)):
            return False
    return True


def _error_message(payload: dict[str, Any]) -> str:
    error = payload.get("error")
    if error is None and isinstance(payload.get("response"), dict):
        error = payload["response"].get("error")
    if isinstance(error, dict) and error.get("message"):
        return f"upstream stream error: {str(error['message'])[:300]}"
    if payload.get("message"):
        return f"upstream stream error: {str(payload['message'])[:300]}"
    return "the upstream reported an error in the stream"


def _chat_is_content(event: SSEEvent) -> bool:
    chunk = checked_payload(event)
    if chunk is None:
        return True
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or {}
        if delta.get("content") or delta.get("tool_calls") or delta.get("refusal") or \
                delta.get("reasoning_content") or choice.get("finish_reason"):
            return True
    return bool(chunk.get("usage"))


def _responses_is_content(event: SSEEvent) -> bool:
    payload = checked_payload(event)
    return payload is None or payload.get("type", event.event) not in RESPONSES_PREAMBLE


def is_content_event(api: Api) -> Callable[[SSEEvent], bool]:
    """The router's test for 'the stream has really started' (until then it may fail over)."""
    return {CHAT: _chat_is_content, RESPONSES: _responses_is_content, EMBEDDINGS: lambda event: True}[api]


def is_terminal(api: Api, event: SSEEvent, payload: dict[str, Any] | None) -> bool:
    """The event that ends a complete stream: `[DONE]`, or the Responses final event."""
    if api == CHAT:
        return event.is_done
    return payload is not None and payload.get("type", event.event) in RESPONSES_TERMINAL
