"""Gemini's error answers -> `UpstreamError`.

Google answers `{"error": {"code", "message", "status", "details"}}` (as a one-element
list on the streaming endpoint without `alt=sse`). The canonical `status` says whether a
retry can help; a 429 names its wait in a `google.rpc.RetryInfo` detail ("30s"), which
wins over a Retry-After header.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson
from multidict import CIMultiDict

from providers.base import UpstreamError
from providers.http import RETRYABLE_STATUSES, retry_after_seconds

_RETRYABLE = frozenset({"RESOURCE_EXHAUSTED", "UNAVAILABLE", "INTERNAL", "DEADLINE_EXCEEDED"})
_FINAL = frozenset({"INVALID_ARGUMENT", "FAILED_PRECONDITION", "PERMISSION_DENIED", "NOT_FOUND",
                    "UNAUTHENTICATED", "OUT_OF_RANGE"})
_OPENAI_ERROR = {
    "INVALID_ARGUMENT": ("invalid_request_error", "invalid_request"),
    "FAILED_PRECONDITION": ("invalid_request_error", "failed_precondition"),
    "OUT_OF_RANGE": ("invalid_request_error", "invalid_request"),
    "NOT_FOUND": ("invalid_request_error", "model_not_found"),
    "RESOURCE_EXHAUSTED": ("rate_limit_error", "rate_limit_exceeded"),
}
_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?)s\s*$")


def gemini_error(status: int, body: bytes, headers: Mapping[str, str]) -> UpstreamError:
    error = _error_object(body)
    google_status = str(error.get("status") or "")
    message = str(error.get("message") or "").strip()[:500] or f"HTTP {status} without an error message"
    if google_status in _RETRYABLE:
        retryable = True
    elif google_status in _FINAL:
        retryable = False
    else:
        retryable = status in RETRYABLE_STATUSES
    error_type, error_code = _OPENAI_ERROR.get(google_status, ("upstream_error", "upstream_error"))
    retry_after = _retry_delay(error)
    if retry_after is None:
        retry_after = retry_after_seconds(CIMultiDict(headers))
    return UpstreamError(
        f"Gemini {google_status or status}: {message}",
        status=status,
        retryable=retryable,
        retry_after=retry_after,
        error_type=error_type,
        error_code=error_code,
    )


def _error_object(body: bytes) -> dict[str, Any]:
    try:
        payload = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return {"message": body[:200].decode("utf-8", "replace")}
    if isinstance(payload, list) and payload:
        payload = payload[0]
    error = payload.get("error") if isinstance(payload, dict) else None
    return error if isinstance(error, dict) else {}


def _retry_delay(error: dict[str, Any]) -> float | None:
    for detail in error.get("details") or ():
        if isinstance(detail, dict) and detail.get("@type") == _RETRY_INFO:
            match = _DURATION.match(str(detail.get("retryDelay", "")))
            if match:
                return float(match[1])
    return None
