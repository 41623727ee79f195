"""The gates between a real streaming upstream and the official OpenAI SDK.

A fake upstream (a real aiohttp server) streams recorded Chat Completions chunks and
Responses events in the documented SSE format; a minimal relay in front of it runs
every event through a gate, relaying unchanged events by their original bytes; the
OpenAI SDK streams through the relay. What the SDK assembles is what an application
sees: the allowed call intact, the blocked call gone and named in the text."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from aiohttp import ClientSession, web
from openai import AsyncOpenAI

from gateway.policy import ChatStreamGate, Emit, Fail, Hold, ResponsesStreamGate
from providers.sse import SSEParser, encode
from tests.test_policy_support import FIXTURES, facts, tenant

CHAT = json.loads((FIXTURES / "chat_stream" / "two_calls_one_blocked.json").read_text())
RESPONSES = json.loads((FIXTURES / "responses_stream" / "blocked_function_call.json").read_text())


def _upstream(events: list[tuple[str | None, dict]], done: bool) -> web.Application:
    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for name, payload in events:
            await response.write(encode(orjson.dumps(payload), name))
        if done:
            await response.write(b"data: [DONE]\n\n")
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", stream)
    app.router.add_post("/v1/responses", stream)
    return app


def _relay(upstream: str, make_gate: Callable[[dict], Any], chat: bool) -> web.Application:
    """Just enough of a gateway: forward, gate every event, relay what comes out."""

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        gate = make_gate(body)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)

        async def send(items: list) -> None:
            for item in items:
                if isinstance(item, Hold):
                    await send(gate.resolve(item.call_key, False, "denied in test"))
                elif isinstance(item, Fail):
                    await response.write(encode(orjson.dumps({"error": {"message": item.message,
                                                                         "code": item.code}})))
                elif isinstance(item, Emit):
                    await response.write(raw[id(item.payload)] if item.original
                                         else encode(orjson.dumps(item.payload), item.event))

        raw: dict[int, bytes] = {}
        parser = SSEParser()
        async with ClientSession() as session, session.post(upstream + request.path, json=body) as upstream_response:
            async for data in upstream_response.content.iter_any():
                for event in parser.feed(data):
                    if event.is_done:
                        await send(gate.finish())
                        await response.write(b"data: [DONE]\n\n")
                        continue
                    payload = event.json()
                    raw[id(payload)] = event.encode()
                    await send(gate.feed(payload) if chat else gate.feed(event.event or payload["type"], payload))
        if not chat:
            await send(gate.finish())
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handle)
    app.router.add_post("/v1/responses", handle)
    return app


async def test_chat_stream_through_the_sdk(aiohttp_server: Any, tmp_path: Path) -> None:
    upstream = await aiohttp_server(_upstream([(None, chunk) for chunk in CHAT["chunks"]], done=True))
    policies = tenant(tmp_path, CHAT["policy"])
    relay = await aiohttp_server(_relay(str(upstream.make_url("")).rstrip("/"),
                                        lambda body: ChatStreamGate(policies, facts(body)), chat=True))
    client = AsyncOpenAI(base_url=str(relay.make_url("/v1")), api_key="test")
    async with client.chat.completions.stream(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "weather in Lyon, then clean up"}],
    ) as stream:
        async for _ in stream:
            pass
        final = await stream.get_final_completion()
    choice = final.choices[0]
    assert [(c.id, c.function.name, c.function.arguments) for c in choice.message.tool_calls] == [
        ("call_W1", "get_weather", '{"city": "Lyon"}')]
    assert choice.message.content == (
        "Let me check that.\n\nTool call 'delete_files' was blocked by policy rule 'weather-only'.")
    assert choice.finish_reason == "tool_calls" and final.usage is not None and final.usage.total_tokens == 122


async def test_responses_stream_through_the_sdk(aiohttp_server: Any, tmp_path: Path) -> None:
    events = [(event["type"], event) for event in RESPONSES["events"]]
    upstream = await aiohttp_server(_upstream(events, done=False))
    policies = tenant(tmp_path, RESPONSES["policy"])
    relay = await aiohttp_server(_relay(str(upstream.make_url("")).rstrip("/"),
                                        lambda body: ResponsesStreamGate(policies, facts(body)), chat=False))
    client = AsyncOpenAI(base_url=str(relay.make_url("/v1")), api_key="test")
    seen: list[str] = []
    async with client.responses.stream(model="gpt-4o-mini", input="weather in Lyon, then clean up") as stream:
        async for event in stream:
            seen.append(event.type)
        final = await stream.get_final_response()
    assert [(o.type, getattr(o, "name", None)) for o in final.output] == [
        ("message", None), ("function_call", "get_weather"), ("message", None)]
    assert final.output[2].content[0].text == "Tool call 'delete_files' was blocked by policy rule 'weather-only'."
    assert "delete_files" not in " ".join(seen)
    assert final.output_text.startswith("Let me check.")
