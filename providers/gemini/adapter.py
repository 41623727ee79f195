"""Gemini's wire details for `TranslatedProvider`: `generateContent` and its SSE stream."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.config import ProviderConfig
from providers.allowance import requested_output
from providers.base import UpstreamCall, UpstreamError
from providers.gemini.errors import gemini_error
from providers.gemini.request import chat_to_gemini
from providers.gemini.response import gemini_to_chat
from providers.gemini.stream import GeminiStreamTranslator
from providers.legacy_functions import uses_legacy_functions
from providers.sse import SSEEvent
from providers.translated import event_json

API_VERSION = "v1beta"


def _status_of(error: Any) -> int:
    """The HTTP status a stream's error event carries (`error.code`), 500 when it has none."""
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, int) and 400 <= code <= 599 else 500


class GeminiStream:
    def __init__(self, model: str, *, legacy_functions: bool = False) -> None:
        self._translator = GeminiStreamTranslator(model, legacy_functions=legacy_functions)

    @property
    def finished(self) -> bool:
        return self._translator.finished

    @property
    def reported_usage(self) -> dict[str, Any] | None:
        return self._translator.reported_usage

    def feed(self, event: SSEEvent) -> list[dict[str, Any]]:
        payload = event_json(event, "gemini")
        if isinstance(payload, dict) and "error" in payload:
            raise gemini_error(_status_of(payload["error"]), event.data, {})
        if not isinstance(payload, dict):
            raise UpstreamError("gemini sent a stream event that is not an object", kind="malformed")
        return self._translator.feed(payload)

    def finish(self) -> list[dict[str, Any]]:
        return self._translator.finish()


class GeminiDialect:
    kind = "gemini"
    error = staticmethod(gemini_error)

    def __init__(self, config: ProviderConfig) -> None:
        assert config.base_url is not None
        self._root = f"{config.base_url}/{API_VERSION}/models"
        self._headers = {"Content-Type": "application/json", **dict(config.headers)}
        self.secrets = config.secrets
        if config.api_key:
            self._headers["x-goog-api-key"] = config.api_key

    def url(self, model: str, stream: bool) -> str:
        model = model.removeprefix("models/")
        if stream:
            return f"{self._root}/{model}:streamGenerateContent?alt=sse"
        return f"{self._root}/{model}:generateContent"

    def headers(self) -> Mapping[str, str]:
        return self._headers

    def request(self, body: dict[str, Any], model: str) -> dict[str, Any]:
        return chat_to_gemini(body, model)

    def response(self, payload: Any, call: UpstreamCall) -> dict[str, Any]:
        if not isinstance(payload, dict):
            raise UpstreamError("gemini answered with something other than an object", kind="malformed",
                                retryable=True)
        return gemini_to_chat(payload, call.model, legacy_functions=uses_legacy_functions(call.body))

    def output_allowance(self, body: dict[str, Any], model: str) -> int | None:
        return requested_output(body)  # maxOutputTokens, thinking included

    def stream(self, call: UpstreamCall) -> GeminiStream:
        return GeminiStream(call.model, legacy_functions=uses_legacy_functions(call.body))

