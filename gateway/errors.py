"""Every failure a client can see, as the OpenAI error envelope.

A `GatewayError` carries the HTTP status, the envelope's `type` and `code`, a message
that says what to fix, and the metric bucket it counts under (`lockgate_errors_total`).
The constructors below are the status table of DESIGN.md §3 in code form, so a stage
raises `not_found_model(alias)` instead of assembling envelopes by hand.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

# The closed set of `lockgate_errors_total{type}` values.
METRIC_TIMEOUT = "timeout"
METRIC_RATE_LIMIT = "rate_limit"
METRIC_VALIDATION = "validation_error"
METRIC_UPSTREAM = "upstream_error"
METRIC_POLICY = "policy"
METRIC_BUDGET = "budget"


class GatewayError(Exception):
    """An error answered to the client in the OpenAI envelope."""

    def __init__(
        self,
        status: int,
        type_: str,
        code: str | None,
        message: str,
        *,
        param: str | None = None,
        metric: str = METRIC_VALIDATION,
        retry_after: float | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.code = code
        self.message = message
        self.param = param
        self.metric = metric
        self.retry_after = retry_after
        self.extra = extra or {}

    def envelope(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "message": self.message,
            "type": self.type,
            "code": self.code,
            "param": self.param,
        }
        error.update(self.extra)
        return {"error": error}

    def body(self) -> bytes:
        return orjson.dumps(self.envelope())

    def headers(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        return {"Retry-After": str(max(1, math.ceil(self.retry_after)))}

    def __repr__(self) -> str:
        return f"GatewayError({self.status}, {self.type!r}, {self.code!r}, {self.message!r})"


def invalid_request(message: str, *, param: str | None = None, code: str | None = None) -> GatewayError:
    return GatewayError(400, "invalid_request_error", code, message, param=param)


def request_too_large(limit: int) -> GatewayError:
    return GatewayError(
        413,
        "invalid_request_error",
        "request_too_large",
        f"Request body is larger than the gateway's limit of {limit} bytes "
        "(server.max_body_bytes); send a smaller request.",
    )


def invalid_api_key(message: str | None = None) -> GatewayError:
    return GatewayError(
        401,
        "authentication_error",
        "invalid_api_key",
        message
        or "Missing or unknown API key. Send a Lockgate virtual key as 'Authorization: Bearer <key>'.",
    )


def admin_only() -> GatewayError:
    return GatewayError(
        403,
        "permission_error",
        "admin_key_required",
        "This endpoint needs an admin key; tenant keys cannot use it.",
        metric=METRIC_POLICY,
    )


def model_not_found(alias: str, tenant: str) -> GatewayError:
    return GatewayError(
        404,
        "invalid_request_error",
        "model_not_found",
        f"The model '{alias}' does not exist or tenant '{tenant}' may not use it. "
        "GET /v1/models lists the models you can use.",
        param="model",
    )


def not_found(message: str) -> GatewayError:
    return GatewayError(404, "invalid_request_error", "not_found", message)


def policy_violation(code: str, message: str, **extra: Any) -> GatewayError:
    return GatewayError(403, "policy_violation", code, message, metric=METRIC_POLICY, extra=extra)


def approval_required(approval_id: str, rule: str) -> GatewayError:
    return GatewayError(
        403,
        "approval_required",
        "approval_required",
        f"Rule '{rule}' requires a human approval. Once approval {approval_id} is approved, "
        f"retry the same request with the header 'X-Lockgate-Approval: {approval_id}'.",
        metric=METRIC_POLICY,
        extra={"approval_id": approval_id},
    )


def rate_limited(message: str, retry_after: float) -> GatewayError:
    return GatewayError(
        429, "rate_limit_error", "rate_limit_exceeded", message,
        metric=METRIC_RATE_LIMIT, retry_after=retry_after,
    )


def budget_exceeded(message: str, retry_after: float) -> GatewayError:
    return GatewayError(
        429, "rate_limit_error", "budget_exceeded", message,
        metric=METRIC_BUDGET, retry_after=retry_after,
    )


def upstream_error(message: str, status: int = 502, *, code: str = "upstream_error",
                   retry_after: float | None = None) -> GatewayError:
    return GatewayError(
        status, "upstream_error", code, message, metric=METRIC_UPSTREAM, retry_after=retry_after
    )


def upstream_timeout(message: str) -> GatewayError:
    return GatewayError(504, "upstream_error", "upstream_timeout", message, metric=METRIC_TIMEOUT)


def no_healthy_target(alias: str, retry_after: float) -> GatewayError:
    return GatewayError(
        503,
        "upstream_error",
        "no_healthy_target",
        f"Every target of model '{alias}' is failing or its circuit is open; retry later.",
        metric=METRIC_UPSTREAM,
        retry_after=retry_after,
    )


def service_unavailable(message: str, retry_after: float = 1.0, code: str = "shutting_down") -> GatewayError:
    return GatewayError(
        503, "service_unavailable", code, message,
        metric=METRIC_UPSTREAM, retry_after=retry_after,
    )


def internal_error(request_id: str) -> GatewayError:
    return GatewayError(
        500,
        "server_error",
        "internal_error",
        f"The gateway failed on request {request_id}; this is a bug, please report it with the id.",
        metric=METRIC_UPSTREAM,
    )
