"""A fake OpenAI API (and any OpenAI-compatible server), scriptable, with fault injection.

    app = create_app()
    app[STATE].queue.append(Script(content="hi"))        # next answer
    app[STATE].queue.append(Script(status=503))           # then an error
    app[STATE].requests                                   # what it received

Serves `/v1/chat/completions` (JSON, or SSE `data:` chunks with a usage chunk when
`stream_options.include_usage`, then `data: [DONE]`), `/v1/responses` (JSON, or SSE
with `event:` lines), `/v1/embeddings` and `/v1/models`. With an empty queue it calls
the first declared tool (unless the last message is a tool result), else says hello.
Fault modes cover what real upstreams do wrong: error statuses with Retry-After,
hangs, slow first bytes, resets, streams cut mid-way, malformed JSON and SSE, and an
error event right after the first non-content event.
"""

from __future__ import annotations

import asyncio
import base64
import json
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes import openai_wire as wire

API_KEY = "sk-upstream-test-0123456789abcdefghij"


@dataclass
class Script:
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    """[{"name": ..., "arguments": {...} or "raw json", "id": optional}]"""
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    status: int | None = None
    """Answer with this HTTP error status."""
    error_body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    """Before the response head (a slow first byte)."""
    chunk_delay_s: float = 0.0
    text_pieces: int = 4
    argument_pieces: int = 3
    hang: bool = False
    """Never answer (until the client gives up)."""
    reset: bool = False
    """Close the connection without answering."""
    cut_after: int | None = None
    """Streams: close the connection after this many events."""
    error_event_after: int | None = None
    """Streams: send an error event after this many events, then end."""
    malformed_json: bool = False
    malformed_sse_after: int | None = None
    stall_after: int | None = None
    """Streams: after this many events go quiet for `stall_s`."""
    stall_s: float = 0.0
    hold_after: int | None = None
    """Streams: after this many events wait for `release` before sending the rest."""
    release: asyncio.Event | None = None


@dataclass
class State:
    api_key: str = API_KEY
    queue: list[Script] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    disconnects: int = 0
    """Streams whose client went away before the end."""
    completed_streams: int = 0


STATE: web.AppKey[State] = web.AppKey("state", State)


def create_app(api_key: str = API_KEY) -> web.Application:
    app = web.Application()
    app[STATE] = State(api_key=api_key)
    for prefix in ("/v1", ""):
        app.router.add_post(f"{prefix}/chat/completions", chat)
        app.router.add_post(f"{prefix}/responses", responses)
        app.router.add_post(f"{prefix}/embeddings", embeddings)
        app.router.add_get(f"{prefix}/models", models)
    # Azure OpenAI: the deployment in the path, `api-key` header, `api-version` query.
    app.router.add_post("/openai/deployments/{deployment}/chat/completions", chat)
    app.router.add_post("/openai/deployments/{deployment}/embeddings", embeddings)
    return app


def error_response(status: int, message: str, kind: str, code: str | None = None,
                   headers: dict[str, str] | None = None) -> web.Response:
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return web.json_response(body, status=status, headers=headers)


async def _admit(request: web.Request) -> tuple[State, dict[str, Any] | None, web.StreamResponse | None]:
    state = request.app[STATE]
    azure = "deployment" in request.match_info
    if azure and not request.query.get("api-version"):
        return state, None, error_response(404, "Resource not found (no api-version)", "invalid_request_error")
    presented = request.headers.get("api-key") if azure else request.headers.get("Authorization")
    if presented != (state.api_key if azure else f"Bearer {state.api_key}"):
        return state, None, error_response(401, "Incorrect API key provided.", "invalid_request_error",
                                           "invalid_api_key")
    try:
        body = await request.json()
    except ValueError:
        return state, None, error_response(400, "We could not parse the JSON body of your request.",
                                           "invalid_request_error")
    state.requests.append(body)
    state.headers.append(dict(request.headers))
    state.paths.append(request.path_qs)
    return state, body, None


async def _fault(request: web.Request, script: Script) -> web.StreamResponse | None:
    """The script's fault before any answer, if it has one."""
    if script.delay_s:
        await asyncio.sleep(script.delay_s)
    if script.hang:
        await asyncio.sleep(3600)
    if script.reset:
        assert request.transport is not None
        request.transport.close()
        return web.Response(status=500)
    if script.status is not None:
        if script.error_body is not None:
            return web.json_response(script.error_body, status=script.status, headers=script.headers)
        return error_response(script.status, f"Injected failure {script.status}", "server_error",
                              headers=script.headers)
    if script.malformed_json:
        return web.Response(body=b'{"id": "x", "choices": [', content_type="application/json")
    return None


def _plan(body: dict[str, Any], script: Script | None) -> tuple[str | None, list[dict[str, Any]], str]:
    """(content, tool_calls, finish_reason) for this request."""
    if script is not None and (script.content is not None or script.tool_calls is not None):
        calls = [{"id": call.get("id") or wire.next_id("call_fake"), "type": "function",
                  "function": {"name": call["name"], "arguments": call["arguments"] if isinstance(
                      call["arguments"], str) else json.dumps(call["arguments"])}}
                 for call in script.tool_calls or []]
        finish = script.finish_reason or ("tool_calls" if calls else "stop")
        return script.content, calls, finish
    tools = [tool for tool in body.get("tools") or [] if tool.get("type") == "function"]
    history = body.get("messages") or body.get("input") or []
    last = history[-1] if isinstance(history, list) and history else {}
    last_kind = last.get("role") or last.get("type") if isinstance(last, dict) else None
    if tools and last_kind not in ("tool", "function_call_output") and body.get("tool_choice") != "none":
        tool = tools[0].get("function", tools[0])
        arguments = {name: "test" for name in (tool.get("parameters") or {}).get("required", [])}
        call = {"id": wire.next_id("call_fake"), "type": "function",
                "function": {"name": tool["name"], "arguments": json.dumps(arguments)}}
        return None, [call], "tool_calls"
    return f"Hello from fake OpenAI. You said: {_last_text(history)}", [], "stop"


def _last_text(history: Any) -> str:
    if isinstance(history, str):
        return history[:100]
    for item in reversed(history or []):
        if isinstance(item, dict) and item.get("role") == "user":
            content = item.get("content")
            if isinstance(content, str):
                return content[:100]
            if isinstance(content, list):
                return " ".join(part.get("text", "") for part in content if isinstance(part, dict))[:100]
    return ""


Answer = Callable[[web.Request, State, dict[str, Any], Script | None], Awaitable[web.StreamResponse]]


def scripted(answer: Answer) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A route that checks the key, records the request, then plays the next script's fault or answer."""
    async def handler(request: web.Request) -> web.StreamResponse:
        state, body, refused = await _admit(request)
        if refused is not None:
            return refused
        assert body is not None
        script = state.queue.pop(0) if state.queue else None
        if script is not None and (fault := await _fault(request, script)) is not None:
            return fault
        return await answer(request, state, body, script)
    return handler


@scripted
async def chat(request: web.Request, state: State, body: dict[str, Any], script: Script | None
               ) -> web.StreamResponse:
    content, calls, finish = _plan(body, script)
    usage = wire.usage_for(body.get("messages"), content or "", calls, script.usage if script else None)
    completion = wire.chat_completion(body.get("model", "?"), content, calls, finish, usage)
    if not body.get("stream"):
        return web.json_response(completion)
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    chunks = wire.chat_chunks(completion, include_usage=include_usage,
                              text_pieces=script.text_pieces if script else 4,
                              argument_pieces=script.argument_pieces if script else 3)
    frames = [(None, chunk) for chunk in chunks] + [(None, "[DONE]")]
    return await _stream(request, state, frames, script)


@scripted
async def responses(request: web.Request, state: State, body: dict[str, Any], script: Script | None
                    ) -> web.StreamResponse:
    content, calls, _ = _plan(body, script)
    chat_usage = wire.usage_for(body.get("input"), content or "", calls, script.usage if script else None)
    response = wire.response_object(body.get("model", "?"), body, content, calls, wire.responses_usage(chat_usage))
    if not body.get("stream"):
        return web.json_response(response)
    events = wire.response_events(response, script.text_pieces if script else 4,
                                  script.argument_pieces if script else 3)
    return await _stream(request, state, [(event["type"], event) for event in events], script)


async def _stream(request: web.Request, state: State, frames: list[tuple[str | None, Any]],
                  script: Script | None) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    try:
        for index, (name, payload) in enumerate(frames):
            if script is not None:
                if script.cut_after == index:
                    assert request.transport is not None
                    request.transport.close()
                    return response
                if script.error_event_after == index:
                    error = {"error": {"message": "Injected stream error", "type": "server_error",
                                       "code": "server_error", "param": None}}
                    await response.write(b"data: " + json.dumps(error).encode() + b"\n\n")
                    await response.write_eof()
                    return response
                if script.malformed_sse_after == index:
                    await response.write(b"data: {this is not json\n\n")
                    await response.write_eof()
                    return response
                if script.stall_after == index:
                    await asyncio.sleep(script.stall_s)
                if script.hold_after == index and script.release is not None:
                    await script.release.wait()
                if script.chunk_delay_s and index:
                    await asyncio.sleep(script.chunk_delay_s)
            data = payload if isinstance(payload, str) else json.dumps(payload)
            prefix = f"event: {name}\n" if name else ""
            await response.write(f"{prefix}data: {data}\n\n".encode())
        await response.write_eof()
        state.completed_streams += 1
    except (ConnectionResetError, asyncio.CancelledError):
        state.disconnects += 1
        raise
    return response


@scripted
async def embeddings(request: web.Request, state: State, body: dict[str, Any], script: Script | None
                     ) -> web.StreamResponse:
    inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
    dimensions = body.get("dimensions") or 8
    data = []
    for index, item in enumerate(inputs):
        vector = [((hash(json.dumps(item)) >> i) % 100) / 100 for i in range(dimensions)]
        value: Any = vector
        if body.get("encoding_format") == "base64":
            value = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": value})
    tokens = sum(max(1, len(json.dumps(item)) // 4) for item in inputs)
    return web.json_response({"object": "list", "data": data, "model": body.get("model"),
                              "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


async def models(request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [
        {"id": "gpt-test", "object": "model", "created": 1700000000, "owned_by": "fake"}]})
