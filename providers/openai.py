"""OpenAI and every OpenAI-compatible server (vLLM, Ollama, LM Studio, Azure OpenAI).

A pass-through adapter: the request body goes upstream as the client sent it (only
`model` differs, and the bytes are reused when it does not; tool call ids that carry a
Gemini thought signature are shortened, see toolids.py), and the answer comes back
as is: JSON bytes, or SSE events with their original bytes kept for relaying.

Azure OpenAI (`type: azure`) differs only in the URL (`/deployments/{model}/...`), the
`api-key` header and the `api-version` query parameter.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from providers.allowance import requested_output
from providers.base import CHAT, EMBEDDINGS, RESPONSES, Api, UpstreamCall, UpstreamReply
from providers.http import ensure_event_stream, new_session, openai_error, post, read_body, stream_events
from providers.toolids import SIGNATURE_MARK, without_gemini_signatures

PATHS: dict[str, str] = {CHAT: "/chat/completions", RESPONSES: "/responses", EMBEDDINGS: "/embeddings"}


class OpenAIProvider:
    kind = "openai"
    apis: frozenset[Api] = frozenset({CHAT, RESPONSES, EMBEDDINGS})

    def __init__(self, name: str, base_url: str, api_key: str | None = None, *,
                 azure: bool = False, api_version: str | None = None,
                 extra_headers: Iterable[tuple[str, str]] = (), max_connections: int = 1000) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.azure = azure
        self.query = f"?api-version={api_version}" if api_version else ""
        self.kind = "azure" if azure else "openai"
        headers = {"Content-Type": "application/json"}
        if api_key:
            if azure:
                headers["api-key"] = api_key
            else:
                headers["Authorization"] = f"Bearer {api_key}"
        extra = dict(extra_headers)
        headers.update(extra)
        self.secrets = tuple(value for value in (api_key, *extra.values()) if value)
        self._headers = headers
        self._stream_headers = {**headers, "Accept": "text/event-stream"}
        self._max_connections = max_connections
        self._session = None

    @property
    def session(self):  # created lazily: it must belong to the running event loop
        if self._session is None:
            self._session = new_session(self._max_connections)
        return self._session

    def url(self, api: Api, model: str) -> str:
        if self.azure and api != RESPONSES:
            return f"{self.base_url}/deployments/{model}{PATHS[api]}{self.query}"
        return f"{self.base_url}{PATHS[api]}{self.query}"

    async def send(self, call: UpstreamCall) -> UpstreamReply:
        headers = self._stream_headers if call.stream else self._headers
        body = call.body_bytes()
        if SIGNATURE_MARK in body:  # a conversation that began on Gemini
            shortened = without_gemini_signatures(call.api, call.body)
            if shortened is not None:
                body = orjson.dumps(shortened)
        response = await post(self.session, self.url(call.api, call.model), body, headers, call, openai_error)
        if call.stream:
            ensure_event_stream(response)
            return UpstreamReply(status=response.status, headers=response.headers,
                                 events=stream_events(response, call), closer=response.close)
        body = await read_body(response, call)
        return UpstreamReply(status=response.status, headers=response.headers, body=body)

    def output_allowance(self, body: dict[str, Any], model: str) -> int | None:
        return requested_output(body)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
