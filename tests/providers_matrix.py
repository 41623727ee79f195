"""One scripting interface over the three fake upstreams (OpenAI, Anthropic, Gemini).

End-to-end tests run the same client code against an alias whose only target is one of
the fakes, and script each fake in its own wire format through these adapters, so that
"switching the alias' target changes nothing the client sees" is tested literally.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fakes import anthropic_server, gemini_server, openai_server

PROVIDERS = ("openai", "anthropic", "gemini")
ANTHROPIC_KEY = "sk-ant-test-0123456789abcdefghijklmnop"
GEMINI_KEY = "AIzaSy-test-0123456789abcdefghijklmno"


@dataclass
class FakeProvider:
    kind: str
    app: web.Application
    model: str
    text: Callable[[str], None]
    """Queue a text answer."""
    tool_call: Callable[[str, dict[str, Any]], None]
    """Queue an answer that calls one tool."""
    request_count: Callable[[], int]
    last_request: Callable[[], Any]

    def provider_config(self, url: str) -> dict[str, Any]:
        if self.kind == "openai":
            return {"type": "openai", "base_url": f"{url}/v1", "api_key": openai_server.API_KEY}
        if self.kind == "anthropic":
            return {"type": "anthropic", "base_url": url, "api_key": ANTHROPIC_KEY}
        return {"type": "gemini", "base_url": url, "api_key": GEMINI_KEY}


def make_fake(kind: str) -> FakeProvider:
    if kind == "openai":
        app = openai_server.create_app()
        state = app[openai_server.STATE]
        return FakeProvider(
            kind, app, "gpt-test-upstream",
            text=lambda text: state.queue.append(openai_server.Script(content=text)),
            tool_call=lambda name, args: state.queue.append(
                openai_server.Script(tool_calls=[{"name": name, "arguments": args}])),
            request_count=lambda: len(state.requests), last_request=lambda: state.requests[-1])
    if kind == "anthropic":
        app = anthropic_server.create_app(api_key=ANTHROPIC_KEY)
        a_state = app[anthropic_server.STATE]
        return FakeProvider(
            kind, app, "claude-sonnet-4-5",
            text=lambda text: a_state.queue.append(anthropic_server.Script(
                message={"content": [{"type": "text", "text": text}], "stop_reason": "end_turn"}, text_chunks=3)),
            tool_call=lambda name, args: a_state.queue.append(anthropic_server.Script(
                message={"content": [{"type": "tool_use", "id": f"toolu_{name}", "name": name, "input": args}],
                         "stop_reason": "tool_use"}, json_chunks=3)),
            request_count=lambda: len(a_state.requests), last_request=lambda: a_state.requests[-1])
    app = gemini_server.create_app(api_key=GEMINI_KEY)
    g_state = app[gemini_server.STATE]
    return FakeProvider(
        kind, app, "gemini-2.5-flash",
        text=lambda text: g_state.queue.append(gemini_server.Script.reply({"text": text})),
        tool_call=lambda name, args: g_state.queue.append(
            gemini_server.Script.reply({"functionCall": {"name": name, "args": args}})),
        request_count=lambda: len(g_state.requests), last_request=lambda: g_state.requests[-1].body)


def request_text(fake: FakeProvider) -> str:
    return json.dumps(fake.last_request())
