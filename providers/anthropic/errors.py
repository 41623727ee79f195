"""Anthropic failures -> `UpstreamError`, with whether and when a retry can succeed.

Anthropic answers errors as `{"type": "error", "error": {"type", "message"}}`, over
HTTP or as an `error` event in a stream that already started. Overload (529), rate
limits, timeouts and server errors are worth retrying; the wait comes from
`retry-after-ms` / `Retry-After`, or else, for a 429, from the reset time of the
exhausted `anthropic-ratelimit-*` limit. `x-should-retry`, when present, overrides the
status.

Some problems of the gateway's own account come as a 400 `invalid_request_error`, the
answer to a bad request: "Your credit balance is too low" and "This organization has
been disabled". The router hands a 400 to the client as its own mistake and tries no
other target, so these are reported as 402 `billing_error` / 403 `permission_error`,
never retried on this target: another target can serve the very same request.

Messages carry what Anthropic said and its request id, never anything we sent.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

import orjson

from providers.base import UpstreamError

RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504, 529})
RETRYABLE_TYPES = frozenset({"overloaded_error", "rate_limit_error", "api_error", "timeout_error"})
# The HTTP status Anthropic documents for each error type (used for errors inside a stream).
STATUS_BY_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
_RATE_LIMITS = ("requests", "tokens", "input-tokens", "output-tokens")
# (what the message says, the error type it is really) for account problems sent as 400s.
_ACCOUNT_PROBLEMS = (
    ("credit balance is too low", "billing_error"),
    ("organization has been disabled", "permission_error"),
)
_MAX_MESSAGE = 500


def anthropic_error(status: int, body: bytes, headers: Mapping[str, str], *,
                    now: float | None = None) -> UpstreamError:
    """The `UpstreamError` for a non-2xx answer. `now` (epoch seconds) is for tests."""
    error_type, message = _parse(body)
    error_type = error_type or _type_for_status(status)
    lowered = {key.lower(): value for key, value in headers.items()}
    request_id = lowered.get("request-id")
    description = _describe(f"Anthropic answered {status} {error_type}", message, request_id)
    account_problem = _account_problem(error_type, message)
    if account_problem is not None:
        # Retrying the same key will not help, whatever x-should-retry says.
        return UpstreamError(description, status=STATUS_BY_TYPE[account_problem], retryable=False,
                             error_type=account_problem)
    retryable = status in RETRYABLE_STATUSES or error_type in RETRYABLE_TYPES
    should_retry = lowered.get("x-should-retry")
    if should_retry in ("true", "false"):
        retryable = should_retry == "true"
    return UpstreamError(
        description,
        status=status,
        retryable=retryable,
        retry_after=retry_after(lowered, time.time() if now is None else now, rate_limited=status == 429),
        error_type=error_type,
    )


def stream_error(data: Mapping[str, Any]) -> UpstreamError:
    """The `UpstreamError` for an `error` event inside a stream."""
    error = data.get("error") if isinstance(data.get("error"), dict) else {}
    error_type = str(error.get("type") or "api_error")
    return UpstreamError(
        _describe(f"Anthropic stream failed with {error_type}", str(error.get("message") or ""),
                  data.get("request_id")),
        status=STATUS_BY_TYPE.get(error_type, 500),
        retryable=error_type in RETRYABLE_TYPES,
        error_type=error_type,
    )


def retry_after(headers: Mapping[str, str], now: float, *, rate_limited: bool = False) -> float | None:
    """Seconds to wait before a retry, from lower-cased response `headers`.

    The `anthropic-ratelimit-*` headers come with every answer; they say when a limit
    resets, which is the wait only when that limit is why the request failed (a 429).
    On a 529 or a 5xx, waiting for them would only delay or forgo the retry.
    """
    if "retry-after-ms" in headers:
        seconds = _number(headers["retry-after-ms"])
        if seconds is not None:
            return max(seconds / 1000, 0.0)
    if "retry-after" in headers:
        value = headers["retry-after"]
        seconds = _number(value)
        if seconds is None:
            seconds = _seconds_until(_http_date(value), now)
        if seconds is not None:
            return max(seconds, 0.0)
    if not rate_limited:
        return None
    exhausted, every = [], []
    for limit in _RATE_LIMITS:
        reset = _seconds_until(_timestamp(headers.get(f"anthropic-ratelimit-{limit}-reset")), now)
        if reset is None:
            continue
        every.append(reset)
        if headers.get(f"anthropic-ratelimit-{limit}-remaining") == "0":
            exhausted.append(reset)
    # The exhausted limit is the one to wait for; without one, the earliest reset is a lower bound.
    if exhausted:
        return max(max(exhausted), 0.0)
    if every:
        return max(min(every), 0.0)
    return None


def _account_problem(error_type: str, message: str) -> str | None:
    """The error type of an account problem Anthropic reported as an invalid request, if it is one."""
    if error_type != "invalid_request_error":
        return None
    lowered = message.lower()
    return next((kind for says, kind in _ACCOUNT_PROBLEMS if says in lowered), None)


def _parse(body: bytes) -> tuple[str | None, str]:
    try:
        payload = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        payload = None
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        return (str(error["type"]) if error.get("type") else None), str(error.get("message") or "")
    # Not Anthropic's shape (a proxy's page, say): a bounded excerpt of what came back.
    return None, body[:200].decode("utf-8", "replace").strip()


def _type_for_status(status: int) -> str:
    """The error type to report when the body did not say (it is not Anthropic's JSON)."""
    if status == 408:
        return "timeout_error"
    for error_type, known in STATUS_BY_TYPE.items():
        if known == status:
            return error_type
    return "api_error" if status >= 500 else "invalid_request_error"


def _describe(head: str, message: str, request_id: Any) -> str:
    text = f"{head}: {message[:_MAX_MESSAGE]}" if message else head
    return f"{text} (request-id {request_id})" if request_id else text


def _number(value: str) -> float | None:
    """A finite number; "inf" and "nan" are no wait the client's Retry-After could say."""
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _http_date(value: str) -> datetime | None:
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None


def _timestamp(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _seconds_until(moment: datetime | None, now: float) -> float | None:
    if moment is None or moment.tzinfo is None:
        return None
    return moment.timestamp() - now
