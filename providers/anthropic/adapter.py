"""Anthropic's wire details for `TranslatedProvider`: `POST /v1/messages` and its event stream."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.config import ProviderConfig
from providers.anthropic.errors import anthropic_error
from providers.anthropic.request import chat_to_anthropic, output_allowance
from providers.anthropic.response import anthropic_to_chat
from providers.anthropic.stream import AnthropicStreamTranslator
from providers.anthropic.traits import LEGACY_API_VERSION, traits_for
from providers.base import UpstreamCall, UpstreamError
from providers.legacy_functions import uses_legacy_functions
from providers.sse import SSEEvent
from providers.translated import event_json


class AnthropicStream:
    def __init__(self, call: UpstreamCall) -> None:
        self._translator = AnthropicStreamTranslator(call.model, legacy_functions=uses_legacy_functions(call.body))
        self.finished = False

    def feed(self, event: SSEEvent) -> list[dict[str, Any]]:
        payload = event_json(event, "anthropic")
        if not isinstance(payload, dict):
            raise UpstreamError("anthropic sent a stream event that is not an object", kind="malformed")
        kind = event.event or str(payload.get("type", ""))
        if kind == "message_stop":
            self.finished = True
        return self._translator.feed(kind, payload)

    @property
    def reported_usage(self) -> dict[str, Any] | None:
        return self._translator.reported_usage

    def finish(self) -> list[dict[str, Any]]:
        return []


class AnthropicDialect:
    kind = "anthropic"
    error = staticmethod(anthropic_error)

    def __init__(self, config: ProviderConfig) -> None:
        assert config.base_url is not None
        self.api_version = config.api_version or LEGACY_API_VERSION
        self._url = f"{config.base_url}/v1/messages"
        self._headers = {"Content-Type": "application/json", "anthropic-version": self.api_version,
                         **dict(config.headers)}
        self.secrets = config.secrets
        if config.api_key:
            self._headers["x-api-key"] = config.api_key

    def url(self, model: str, stream: bool) -> str:
        return self._url

    def headers(self) -> Mapping[str, str]:
        return self._headers

    def request(self, body: dict[str, Any], model: str) -> dict[str, Any]:
        return chat_to_anthropic(body, model, traits=traits_for(model, self.api_version))

    def output_allowance(self, body: dict[str, Any], model: str) -> int:
        return output_allowance(body, traits_for(model, self.api_version))

    def response(self, payload: Any, call: UpstreamCall) -> dict[str, Any]:
        if not isinstance(payload, dict) or payload.get("type") != "message":
            raise UpstreamError("anthropic answered with something other than a message", kind="malformed",
                                retryable=True)
        return anthropic_to_chat(payload, call.model, legacy_functions=uses_legacy_functions(call.body))

    def stream(self, call: UpstreamCall) -> AnthropicStream:
        return AnthropicStream(call)
