"""A fake Anthropic Messages API: a real aiohttp app speaking the documented wire format.

    app = create_app()                  # serves POST /v1/messages
    app[STATE].queue.append(Script(message={...}, text_chunks=3))
    ... call it ...
    app[STATE].requests                 # every body past the key and version checks
    app[STATE].headers                  # ... and the headers it came with

It checks what Anthropic checks before answering: the API key (`x-api-key`, or
`Authorization: Bearer` as the 2.x SDKs send it), a known `anthropic-version`, and the
body (required fields, alternating roles, every `tool_result` answering a `tool_use` of
the turn before, thinking rules, no sampling parameters under 2026-10-21, no unknown
fields); failures come back in Anthropic's error shape.

A `Script` is a Message to answer with (fields it leaves out are filled in), or an HTTP
error. Streamed, the Message becomes the exact event sequence Anthropic sends:
`message_start` (usage with cache fields), a `ping`, per block `content_block_start` /
`content_block_delta`s / `content_block_stop`, `message_delta` (stop reason, cumulative
usage) and `message_stop`. With an empty queue the fake answers by itself: a call of the
first (or the forced) tool with its required parameters filled in, unless the last user
turn carries tool results or tools are off; otherwise the text
"Hello from fake Anthropic. You said: <the last user text>" (without the echo when that
turn has no text).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.anthropic_checks import RequestError, check_request

VERSIONS = ("2023-06-01", "2026-10-21")
HELLO = "Hello from fake Anthropic"


@dataclass
class Script:
    """One scripted answer."""

    message: dict[str, Any] | None = None
    """The Message to answer with; missing id/type/role/model/stop fields/usage are filled in."""
    text_chunks: int = 1
    """Split each text (and thinking) block into this many deltas."""
    json_chunks: int = 1
    """Split each tool input's JSON into this many `input_json_delta` fragments."""
    error_after: int | None = None
    """Streamed: send an `error` event after this many events, then end the stream."""
    error_type: str = "overloaded_error"
    cut_after: int | None = None
    """Streamed: drop the connection after this many events (no error event, no `message_stop`)."""
    status: int | None = None
    """Answer with this HTTP error status instead of a Message."""
    body: dict[str, Any] | None = None
    """The error body for `status` (default: Anthropic's error shape for `error_type`)."""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    """Wait this long before answering."""
    event_delay_s: float = 0.0
    """Streamed: wait this long between events."""


@dataclass
class FakeState:
    api_key: str
    queue: list[Script] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))


STATE = web.AppKey("anthropic_fake_state", FakeState)


def create_app(api_key: str = "test-anthropic-key") -> web.Application:
    app = web.Application()
    app[STATE] = FakeState(api_key)
    app.router.add_post("/v1/messages", _messages)
    return app


def error_body(error_type: str, message: str, request_id: str = "req_fake") -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type, "message": message}, "request_id": request_id}


async def _messages(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    request_id = f"req_fake_{next(state.ids):04d}"
    try:
        _check_headers(request, state.api_key)
        try:
            body = await request.json()
        except ValueError as exc:
            raise RequestError(400, "invalid_request_error", "There was an error parsing the body") from exc
        state.headers.append(dict(request.headers))
        state.requests.append(body)
        check_request(body, request.headers.get("anthropic-version", ""))
    except RequestError as error:
        return web.json_response(error_body(error.error_type, error.message, request_id),
                                 status=error.status, headers={"request-id": request_id})
    serial = next(state.ids)
    script = state.queue.pop(0) if state.queue else Script(message=_default_message(body, serial))
    if script.delay_s:
        await asyncio.sleep(script.delay_s)
    headers = {"request-id": request_id, **script.headers}
    if script.status is not None:
        payload = script.body or error_body(script.error_type, "Scripted failure", request_id)
        return web.json_response(payload, status=script.status, headers=headers)
    message = _complete(script.message or {}, body, f"msg_fake_{serial:04d}")
    if not body.get("stream"):
        return web.json_response(message, headers=headers)
    return await _stream(request, script, message, headers, request_id)


def _check_headers(request: web.Request, api_key: str) -> None:
    key = request.headers.get("x-api-key")
    if key is None and request.headers.get("authorization", "").startswith("Bearer "):
        key = request.headers["authorization"][len("Bearer "):]
    if key != api_key:
        raise RequestError(401, "authentication_error", "invalid x-api-key")
    version = request.headers.get("anthropic-version")
    if version is None:
        raise RequestError(400, "invalid_request_error", "anthropic-version: header is required")
    if version not in VERSIONS:
        raise RequestError(400, "invalid_request_error", f"anthropic-version: unknown version {version!r}")


def _complete(message: dict[str, Any], body: dict[str, Any], message_id: str) -> dict[str, Any]:
    usage = {"input_tokens": 10, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
             "output_tokens": 5, **(message.get("usage") or {})}
    return {"id": message_id, "type": "message", "role": "assistant", "model": body["model"],
            "content": [], "stop_reason": "end_turn", "stop_sequence": None, **message, "usage": usage}


async def _stream(request: web.Request, script: Script, message: dict[str, Any],
                  headers: dict[str, str], request_id: str) -> web.StreamResponse:
    response = web.StreamResponse(headers={**headers, "Content-Type": "text/event-stream; charset=utf-8",
                                           "Cache-Control": "no-cache"})
    await response.prepare(request)
    for count, (name, data) in enumerate(stream_events(message, script.text_chunks, script.json_chunks)):
        if script.cut_after is not None and count == script.cut_after:
            assert request.transport is not None
            request.transport.close()
            return response
        if script.error_after is not None and count == script.error_after:
            name, data = "error", error_body(script.error_type, "Scripted stream failure", request_id)
        await response.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
        if name == "error":
            break
        if script.event_delay_s:
            await asyncio.sleep(script.event_delay_s)
    await response.write_eof()
    return response


def stream_events(message: dict[str, Any], text_chunks: int = 1,
                  json_chunks: int = 1) -> Iterator[tuple[str, dict[str, Any]]]:
    """The (event name, data) sequence Anthropic streams for `message`."""
    usage = message["usage"]
    start_usage = {**usage, "output_tokens": min(1, usage.get("output_tokens", 0))}
    yield "message_start", {"type": "message_start", "message": {
        **message, "content": [], "stop_reason": None, "stop_sequence": None, "usage": start_usage}}
    yield "ping", {"type": "ping"}
    for index, block in enumerate(message["content"]):
        start, deltas = _block_events(block, text_chunks, json_chunks)
        yield "content_block_start", {"type": "content_block_start", "index": index, "content_block": start}
        for delta in deltas:
            yield "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
        yield "content_block_stop", {"type": "content_block_stop", "index": index}
    yield "message_delta", {"type": "message_delta",
                            "delta": {"stop_reason": message["stop_reason"],
                                      "stop_sequence": message.get("stop_sequence")},
                            "usage": usage}
    yield "message_stop", {"type": "message_stop"}


def _block_events(block: dict[str, Any], text_chunks: int,
                  json_chunks: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    kind = block["type"]
    if kind == "text":
        return {**block, "text": ""}, [{"type": "text_delta", "text": piece}
                                        for piece in split(block["text"], text_chunks)]
    if kind == "thinking":
        pieces = split(block["thinking"], text_chunks)
        deltas = [{"type": "thinking_delta", "thinking": piece} for piece in pieces]
        return ({"type": "thinking", "thinking": "", "signature": ""},
                [*deltas, {"type": "signature_delta", "signature": block["signature"]}])
    if kind in ("tool_use", "server_tool_use"):
        encoded = json.dumps(block["input"]) if block["input"] else ""
        return {**block, "input": {}}, [{"type": "input_json_delta", "partial_json": piece}
                                        for piece in split(encoded, json_chunks)]
    return block, []  # redacted thinking and server tool results arrive whole


def split(text: str, parts: int) -> list[str]:
    """`text` in `parts` nearly equal pieces (one empty piece for empty text)."""
    if not text:
        return [""]
    size = -(-len(text) // max(1, min(parts, len(text))))
    return [text[at:at + size] for at in range(0, len(text), size)]


def _default_message(body: dict[str, Any], serial: int) -> dict[str, Any]:
    messages = body.get("messages") or [{}]
    last = messages[-1] if messages[-1].get("role") == "user" else {}
    blocks = _blocks(last.get("content"))
    answered_tools = any(block.get("type") == "tool_result" for block in blocks)
    choice = body.get("tool_choice") or {}
    tools = body.get("tools") or []
    input_tokens = max(1, len(json.dumps([body.get("system"), messages, tools])) // 4)
    if tools and not answered_tools and choice.get("type") != "none":
        named = [tool for tool in tools if tool.get("name") == choice.get("name")]
        tool = named[0] if named else tools[0]
        call = {"type": "tool_use", "id": f"toolu_fake_{serial:04d}",
                "name": tool["name"], "input": sample_input(tool.get("input_schema") or {})}
        return {"content": [call], "stop_reason": "tool_use",
                "usage": {"input_tokens": input_tokens, "output_tokens": 20}}
    said = " ".join(block["text"] for block in blocks if block.get("type") == "text")
    text = f"{HELLO}. You said: {said[:200]}" if said else HELLO
    return {"content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
            "usage": {"input_tokens": input_tokens, "output_tokens": len(text.split())}}


def _blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [block for block in content or [] if isinstance(block, dict)]


def sample_input(schema: dict[str, Any]) -> dict[str, Any]:
    """An input for a tool schema: its required properties with plain values ("test", 0, ...)."""
    properties = schema.get("properties") or {}
    return {name: _sample(properties.get(name) or {}) for name in schema.get("required") or []}


def _sample(schema: dict[str, Any]) -> Any:
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    kind = kind[0] if isinstance(kind, list) else kind
    samples = {"string": "test", "integer": 0, "number": 0, "boolean": False, "array": [], "null": None}
    if kind == "object":
        return sample_input(schema)
    return samples.get(kind, "test")
