"""A fast fake OpenAI upstream: the benchmark's model provider.

It speaks the OpenAI chat completions wire format (JSON and SSE streams, usage, tool
calls) and does as little work as possible, so that it is never what is measured:

  POST /v1/chat/completions  a `chat.completion`, or with "stream": true the SSE stream
                             OpenAI sends: a role chunk, --chunks content chunks (one
                             word each), a finish chunk, the usage chunk when
                             stream_options.include_usage is set, then `data: [DONE]`.
                             With "tool_choice": "required" (or a named function) the
                             answer is a call of the first (named) declared tool, its
                             arguments spread over --chunks deltas, finish_reason
                             "tool_calls", as OpenAI streams a forced tool call.
  GET  /v1/models, GET /health, GET /stats (counters), DELETE /stats (reset)

Knobs: --latency-ms (think time before the answer starts), --chunk-interval-ms
(pause between stream chunks), --fail-rate with --fail-codes (a fraction of requests
answered with 500 / 429 / 503 in OpenAI's error envelope, or `reset`: the connection
is torn down with a TCP RST before any answer). Token counts are fake but
deterministic: prompt_tokens = request body bytes // 4, completion_tokens = --chunks.

    python bench/fake_upstream.py --port 19000 [--latency-ms 0] [--chunks 20]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import socket
import struct
import time
import uuid
from typing import Any

import orjson
from aiohttp import web

WORDS = ("lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed", "do",
         "eiusmod", "tempor", "incididunt", "ut", "labore", "et", "dolore", "magna", "aliqua")
TOOL_ARGUMENTS = '{"query": "Bosch GSR 18V-55", "city": "Lyon", "max_results": 3}'
ERRORS: dict[int, tuple[str, str | None, str]] = {
    429: ("requests", "rate_limit_exceeded", "Rate limit reached (fake upstream)."),
    500: ("server_error", None, "The server had an error (fake upstream)."),
    503: ("server_error", None, "The engine is currently overloaded (fake upstream)."),
}
RESET = "reset"
STATS: web.AppKey[dict[str, int]] = web.AppKey("stats", dict)
SETTINGS: web.AppKey[argparse.Namespace] = web.AppKey("settings", argparse.Namespace)
CHOOSER: web.AppKey[random.Random] = web.AppKey("chooser", random.Random)


def error_response(status: int) -> web.Response:
    kind, code, message = ERRORS.get(status, ("server_error", None, "Error (fake upstream)."))
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def reset_connection(request: web.Request) -> web.Response:
    """Close the client's connection with an RST (SO_LINGER 0): a crashed or killed upstream."""
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.close()
    return web.Response(status=500)  # never reaches the client: the connection is gone


def forced_tool(payload: dict[str, Any]) -> str | None:
    """The tool the request forces the model to call, as OpenAI honours tool_choice."""
    tools = payload.get("tools") or []
    choice = payload.get("tool_choice")
    if isinstance(choice, dict):
        return (choice.get("function") or {}).get("name")
    if choice == "required" and tools:
        return tools[0].get("function", {}).get("name")
    return None


def split(text: str, parts: int) -> list[str]:
    size = max(1, -(-len(text) // max(1, parts)))
    return [text[i:i + size] for i in range(0, len(text), size)]


class Answer:
    """One chat completion's content, ready to be sent as JSON or as stream chunks."""

    def __init__(self, payload: dict[str, Any], body_bytes: int, chunks: int) -> None:
        self.id = "chatcmpl-" + uuid.uuid4().hex[:24]
        self.model = payload.get("model") or "gpt-4o-mini"
        self.created = int(time.time())
        self.tool = forced_tool(payload)
        prompt = max(1, body_bytes // 4)
        self.usage = {"prompt_tokens": prompt, "completion_tokens": chunks, "total_tokens": prompt + chunks}
        self.words = [WORDS[i % len(WORDS)] if i == 0 else " " + WORDS[i % len(WORDS)] for i in range(chunks)]
        self.finish_reason = "tool_calls" if self.tool else "stop"

    def message(self) -> dict[str, Any]:
        if self.tool is None:
            return {"role": "assistant", "content": "".join(self.words), "refusal": None}
        call = {"id": "call_" + self.id[-24:], "type": "function",
                "function": {"name": self.tool, "arguments": TOOL_ARGUMENTS}}
        return {"role": "assistant", "content": None, "refusal": None, "tool_calls": [call]}

    def completion(self) -> bytes:
        return orjson.dumps({
            "id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
            "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "message": self.message(), "logprobs": None,
                         "finish_reason": self.finish_reason}],
            "usage": self.usage,
        })

    def deltas(self) -> list[dict[str, Any]]:
        """The stream's deltas after the role chunk, one per --chunks."""
        if self.tool is None:
            return [{"content": word} for word in self.words]
        pieces = split(TOOL_ARGUMENTS, len(self.words))
        return [{"tool_calls": [{"index": 0, "function": {"arguments": piece}}]} for piece in pieces]

    def first_delta(self) -> dict[str, Any]:
        if self.tool is None:
            return {"role": "assistant", "content": ""}
        call = {"index": 0, "id": "call_" + self.id[-24:], "type": "function",
                "function": {"name": self.tool, "arguments": ""}}
        return {"role": "assistant", "content": None, "tool_calls": [call]}

    def chunk(self, delta: dict[str, Any] | None, finish: str | None, with_usage: bool) -> bytes:
        chunk: dict[str, Any] = {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                                 "model": self.model, "system_fingerprint": "fp_fake", "choices": []}
        if delta is not None:
            chunk["choices"] = [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
        if with_usage:
            chunk["usage"] = None if delta is not None else self.usage
        return b"data: " + orjson.dumps(chunk) + b"\n\n"


async def chat_completions(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    stats = request.app[STATS]
    raw = await request.read()
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return error_response(400)
    if settings.fail_rate and request.app[CHOOSER].random() < settings.fail_rate:
        failure = request.app[CHOOSER].choice(settings.fail_codes)
        stats["failed_" + failure] = stats.get("failed_" + failure, 0) + 1
        return reset_connection(request) if failure == RESET else error_response(int(failure))
    if settings.latency_ms > 0:
        await asyncio.sleep(settings.latency_ms / 1000)
    answer = Answer(payload, len(raw), settings.chunks)
    if not payload.get("stream"):
        stats["chat"] += 1
        return web.Response(body=answer.completion(), content_type="application/json",
                            headers={"x-request-id": answer.id})
    stats["chat_stream"] += 1
    return await stream(request, answer, payload, settings.chunk_interval_ms / 1000)


async def stream(request: web.Request, answer: Answer, payload: dict[str, Any], interval: float
                 ) -> web.StreamResponse:
    with_usage = bool((payload.get("stream_options") or {}).get("include_usage"))
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "x-request-id": answer.id})
    await response.prepare(request)
    await response.write(answer.chunk(answer.first_delta(), None, with_usage))
    for delta in answer.deltas():
        if interval > 0:
            await asyncio.sleep(interval)
        await response.write(answer.chunk(delta, None, with_usage))
    await response.write(answer.chunk({}, answer.finish_reason, with_usage))
    if with_usage:
        await response.write(answer.chunk(None, None, True))
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


async def models(request: web.Request) -> web.Response:
    data = [{"id": name, "object": "model", "created": 1700000000, "owned_by": "fake"}
            for name in ("gpt-4o-mini", "gpt-4o")]
    return web.Response(body=orjson.dumps({"object": "list", "data": data}), content_type="application/json")


async def health(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def get_stats(request: web.Request) -> web.Response:
    return web.Response(body=orjson.dumps(request.app[STATS]), content_type="application/json")


async def reset_stats(request: web.Request) -> web.Response:
    request.app[STATS].clear()
    request.app[STATS].update(chat=0, chat_stream=0)
    return await get_stats(request)


def build_app(settings: argparse.Namespace) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[SETTINGS] = settings
    app[STATS] = {"chat": 0, "chat_stream": 0}
    app[CHOOSER] = random.Random(settings.seed)
    app.add_routes([
        web.post("/v1/chat/completions", chat_completions),
        web.get("/v1/models", models),
        web.get("/health", health),
        web.get("/stats", get_stats),
        web.delete("/stats", reset_stats),
    ])
    return app


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=19000)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="think time before the answer starts")
    parser.add_argument("--chunks", type=int, default=20, help="stream deltas = completion tokens")
    parser.add_argument("--chunk-interval-ms", type=float, default=0.0, help="pause between stream chunks")
    parser.add_argument("--fail-rate", type=float, default=0.0, help="fraction of requests that fail")
    parser.add_argument("--fail-codes", default="500,429,reset",
                        type=lambda text: [code for code in text.split(",") if code],
                        help="what a failure is, picked at random: HTTP statuses and/or 'reset'")
    parser.add_argument("--seed", type=int, default=1, help="seed of the failure draws")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    settings = parse_args(argv)
    import uvloop

    # access_log=None: logging each request would cost more than answering it.
    web.run_app(build_app(settings), host=settings.host, port=settings.port, access_log=None, print=None,
                backlog=4096, loop=uvloop.new_event_loop())


if __name__ == "__main__":
    main()
