"""Gemini's error answers -> `UpstreamError`.

Google answers `{"error": {"code", "message", "status", "details"}}` (as a one-element
list on the streaming endpoint without `alt=sse`). The canonical `status` says whether a
retry can help; a 429 names its wait in a `google.rpc.RetryInfo` detail ("30s"), which
wins over a Retry-After header.

Google answers some problems of the gateway's own account with HTTP 400, the status of a
bad request: an invalid or expired API key (INVALID_ARGUMENT with a `google.rpc.ErrorInfo`
reason API_KEY_INVALID / API_KEY_EXPIRED) and a project or region that may not use the
API (FAILED_PRECONDITION: billing not enabled, "User location is not supported"). The
router hands a 400 to the client as its own mistake and tries no other target, so these
are reported as 401 / 403: another target can serve the very same request.
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
    "FAILED_PRECONDITION": ("permission_error", "failed_precondition"),
    "OUT_OF_RANGE": ("invalid_request_error", "invalid_request"),
    "NOT_FOUND": ("invalid_request_error", "model_not_found"),
    "RESOURCE_EXHAUSTED": ("rate_limit_error", "rate_limit_exceeded"),
    "UNAUTHENTICATED": ("authentication_error", "invalid_api_key"),
    "PERMISSION_DENIED": ("permission_error", "permission_denied"),
}
_KEY_REASONS = frozenset({"API_KEY_INVALID", "API_KEY_EXPIRED"})
"""ErrorInfo reasons that blame the gateway's key: read as UNAUTHENTICATED, whatever the status."""
_ACCOUNT_STATUS = {"UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403, "FAILED_PRECONDITION": 403}
"""The HTTP status reported for problems of the gateway's account, which are never the client's."""
_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
_ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?)s\s*$")


def gemini_error(status: int, body: bytes, headers: Mapping[str, str]) -> UpstreamError:
    error = _error_object(body)
    google_status = str(error.get("status") or "")
    message = str(error.get("message") or "").strip()[:500] or f"HTTP {status} without an error message"
    reason = _error_reason(error)
    canonical = "UNAUTHENTICATED" if reason in _KEY_REASONS else google_status
    if canonical in _RETRYABLE:
        retryable = True
    elif canonical in _FINAL:
        retryable = False
    else:
        retryable = status in RETRYABLE_STATUSES
    error_type, error_code = _OPENAI_ERROR.get(canonical, ("upstream_error", "upstream_error"))
    retry_after = _retry_delay(error)
    if retry_after is None:
        retry_after = retry_after_seconds(CIMultiDict(headers), rate_limited=status == 429)
    said = f"{google_status} ({reason})" if reason else google_status
    return UpstreamError(
        f"Gemini {said or status}: {message}",
        status=_ACCOUNT_STATUS.get(canonical, status),
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


def _error_reason(error: dict[str, Any]) -> str | None:
    """The `reason` of the error's `google.rpc.ErrorInfo` detail (API_KEY_INVALID, ...)."""
    for detail in _details(error):
        if detail.get("@type") == _ERROR_INFO and detail.get("reason"):
            return str(detail["reason"])
    return None


def _details(error: dict[str, Any]) -> list[dict[str, Any]]:
    details = error.get("details")
    return [detail for detail in details if isinstance(detail, dict)] if isinstance(details, list) else []


def _retry_delay(error: dict[str, Any]) -> float | None:
    for detail in _details(error):
        if detail.get("@type") == _RETRY_INFO:
            match = _DURATION.match(str(detail.get("retryDelay", "")))
            if match:
                return float(match[1])
    return None
