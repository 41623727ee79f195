"""A built-in model that answers like a real one, deterministically and without a network.

It serves the quickstart (no keys needed) and load tests. Chat answers are text in
word-sized chunks; when tools are declared and the last message is not a tool result,
it calls the first declared tool with arguments built from the tool's JSON schema.
Usage figures are realistic (about four characters per token). Embeddings are
deterministic vectors, as floats or base64 as the client asks.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import struct
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson

from providers.allowance import requested_output
from providers.base import CHAT, EMBEDDINGS, RESPONSES, Api, UpstreamCall, UpstreamReply
from providers.bridge import send_responses_via_chat
from providers.sse import DONE_EVENT, SSEEvent

EMBEDDING_DIMENSIONS = 256


class MockProvider:
    kind = "mock"
    apis: frozenset[Api] = frozenset({CHAT, RESPONSES, EMBEDDINGS})
    secrets: tuple[str, ...] = ()

    def __init__(self, name: str) -> None:
        self.name = name

    async def send(self, call: UpstreamCall) -> UpstreamReply:
        if call.api == RESPONSES:
            return await send_responses_via_chat(self._send_chat, call)
        if call.api == EMBEDDINGS:
            return UpstreamReply(parsed=embeddings(call.body, call.model))
        return await self._send_chat(call)

    async def _send_chat(self, call: UpstreamCall) -> UpstreamReply:
        completion = chat_completion(call.body, call.model)
        if not call.stream:
            return UpstreamReply(parsed=completion)
        return UpstreamReply(events=_paced(chat_chunks(call.body, completion)))

    def output_allowance(self, body: dict[str, Any], model: str) -> int | None:
        return requested_output(body)

    async def close(self) -> None:
        return None


async def _paced(chunks: list[dict[str, Any]]) -> AsyncIterator[SSEEvent]:
    for chunk in chunks:
        await asyncio.sleep(0)  # let other requests run between chunks, as a network would
        yield SSEEvent.of(chunk)
    yield DONE_EVENT


def chat_completion(body: dict[str, Any], model: str) -> dict[str, Any]:
    messages = body.get("messages") or []
    tool = _first_tool(body)
    last = messages[-1] if messages and isinstance(messages[-1], dict) else {}
    message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
    call_seed = _digest(orjson.dumps(messages))
    if tool is not None and last.get("role") not in ("tool", "function"):
        message["tool_calls"] = [{
            "id": f"call_{call_seed[:24]}",
            "type": "function",
            "function": {"name": tool["name"], "arguments": orjson.dumps(_arguments_for(tool)).decode()},
        }]
        finish = "tool_calls"
        completion_text = ""
    else:
        if last.get("role") in ("tool", "function"):
            text = f"The tool returned: {_text(last.get('content'))[:200]}"
        else:
            text = f"Hello from Lockgate's mock model. You said: {_last_user_text(messages)[:200]}"
        message["content"] = text
        finish = "stop"
        completion_text = text
    prompt_tokens = max(1, len(orjson.dumps(messages)) // 4)
    completion_tokens = max(1, len(completion_text.split()) + 8 * len(message.get("tool_calls") or []))
    return {
        "id": f"chatcmpl-mock{call_seed[:20]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_lockgate_mock",
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
    }


def chat_chunks(body: dict[str, Any], completion: dict[str, Any]) -> list[dict[str, Any]]:
    """The stream OpenAI would send for `completion`: role, content words, tool calls, finish, usage."""
    choice = completion["choices"][0]
    message = choice["message"]
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    base = {"id": completion["id"], "object": "chat.completion.chunk", "created": completion["created"],
            "model": completion["model"], "system_fingerprint": completion["system_fingerprint"]}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        result = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}
        if include_usage:
            result["usage"] = None
        return result

    chunks = [chunk({"role": "assistant", "content": "", "refusal": None})]
    words = (message.get("content") or "").split(" ")
    chunks.extend(chunk({"content": word if i == 0 else " " + word}) for i, word in enumerate(words) if word)
    for index, call in enumerate(message.get("tool_calls") or []):
        arguments = call["function"]["arguments"]
        middle = len(arguments) // 2
        chunks.append(chunk({"tool_calls": [{"index": index, "id": call["id"], "type": "function",
                                             "function": {"name": call["function"]["name"], "arguments": ""}}]}))
        for part in (arguments[:middle], arguments[middle:]):
            chunks.append(chunk({"tool_calls": [{"index": index, "function": {"arguments": part}}]}))
    chunks.append(chunk({}, choice["finish_reason"]))
    if include_usage:
        chunks.append({**base, "choices": [], "usage": completion["usage"]})
    return chunks


def embeddings(body: dict[str, Any], model: str) -> dict[str, Any]:
    inputs = body.get("input")
    items = inputs if isinstance(inputs, list) else [inputs]
    dimensions = body.get("dimensions") if isinstance(body.get("dimensions"), int) else EMBEDDING_DIMENSIONS
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    tokens = 0
    for index, item in enumerate(items):
        text = orjson.dumps(item)
        tokens += max(1, len(text) // 4)
        vector = _vector(text, dimensions)
        value: Any = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode() if as_base64 else vector
        data.append({"object": "embedding", "index": index, "embedding": value})
    return {"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def _vector(text: bytes, dimensions: int) -> list[float]:
    seed = hashlib.sha256(text).digest()
    raw = (seed * (dimensions // len(seed) + 1))[:dimensions]
    return [(byte - 127.5) / 127.5 for byte in raw]


def _first_tool(body: dict[str, Any]) -> dict[str, Any] | None:
    if body.get("tool_choice") == "none":
        return None
    for tool in body.get("tools") or []:
        if isinstance(tool, dict) and tool.get("type") == "function" and isinstance(tool.get("function"), dict):
            function = tool["function"]
            if isinstance(function.get("name"), str):
                return function
    return None


def _arguments_for(tool: dict[str, Any]) -> dict[str, Any]:
    schema = tool.get("parameters") or {}
    properties = schema.get("properties") or {}
    return {name: _example(spec) for name, spec in properties.items()
            if name in (schema.get("required") or properties)}


def _example(spec: Any) -> Any:
    kind = spec.get("type") if isinstance(spec, dict) else None
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if isinstance(spec, dict) and spec.get("enum"):
        return spec["enum"][0]
    return {"integer": 1, "number": 1.5, "boolean": True, "array": [], "object": {}}.get(kind or "", "example")


def _last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _text(message.get("content"))
    return ""


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
