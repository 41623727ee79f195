"""The record of one request as it moves through the pipeline.

Every stage reads and fills the same `Exchange`: who asked (tenant, agent), what
(api, alias, body), what served it (target, attempts), what it cost (usage, cost) and
how long each part took. The meter turns it into a ledger row and metrics at the end.
"""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from gateway.config import TenantConfig
from gateway.router import Outcome
from gateway.tokens import estimate_request_tokens, tokens_for_bytes
from gateway.usage import Usage
from providers.base import Api

# Plain substring scans: `in` on bytes beats one alternation regex ~2x on typical bodies.
ATTACHMENT_MARKERS = (b"image_url", b"input_image", b"input_audio", b"input_file", b'"file"', b"data:")

REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id", str)
EXTRA_HEADERS: web.RequestKey[dict] = web.RequestKey("extra_headers", dict)
"""Headers a middleware wants on the response, for responses a handler prepares itself (streams)."""


_ID_PREFIX = os.urandom(6).hex()
_ID_COUNTER = itertools.count(1)


def new_request_id() -> str:
    """Unique per process start (a random prefix) and cheap (a counter): ids need not be secret."""
    return f"req_{_ID_PREFIX}{next(_ID_COUNTER):012x}"


@dataclass(slots=True)
class Exchange:
    request_id: str
    api: Api
    started: float = field(default_factory=time.perf_counter)
    wall_start: float = field(default_factory=time.time)
    tenant: TenantConfig | None = None
    agent: str | None = None
    alias: str | None = None
    body: dict[str, Any] | None = None
    stream: bool = False
    outcome: Outcome = field(default_factory=Outcome)
    usage: Usage | None = None
    cost_usd: float | None = None
    unpriced_models: list[str] = field(default_factory=list)
    """Models that served part of it (a billed failed attempt included) without a price."""
    status: int = 200
    error_type: str | None = None
    """The metric bucket of the error (errors.METRIC_*), None on success."""
    ttft_s: float | None = None
    upstream_wait_s: float = 0.0
    """Time spent waiting on the upstream after the reply started (stream reads)."""
    approval_wait_s: float = 0.0
    """Time spent waiting for humans to decide held approvals (not the gateway's overhead)."""
    decisions: list[str] = field(default_factory=list)
    reached_upstream: bool = False
    finished: float | None = None
    strip_usage: bool = False
    """The gateway asked the upstream for stream usage; the client did not."""
    stream_text_bytes: int = 0
    """Output text seen in a stream (UTF-8 bytes), for estimating when no usage arrives."""
    reserved_tokens: int = 0
    """Tokens counted against rate limits at admission (settled with the actual ones)."""
    finalized: bool = False
    """Usage and cost are final (see `Meter.finalize`)."""
    body_size: int = 0
    has_attachments: bool = False
    """The raw body mentions images, audio or files (see `ATTACHMENT_MARKERS`)."""
    prompt_estimate: int | None = None
    """Estimated prompt tokens (see `estimated_prompt_tokens`), computed at most once."""
    answer: Any = None
    """The JSON answer as sent (kept for review records)."""
    known_alias: str | None = None
    """The alias once it resolved to a configured route (safe as a metric label)."""
    started_stream: web.StreamResponse | None = None
    """The client's SSE response, when a long request-stage hold started it before the answer."""

    @property
    def alias_label(self) -> str:
        return self.known_alias or "unknown"

    @property
    def provider_name(self) -> str | None:
        target = self.outcome.target
        return target.provider.name if target is not None else None

    @property
    def model_name(self) -> str | None:
        target = self.outcome.target
        return target.model if target is not None else None

    def note_body(self, raw: bytes) -> None:
        self.body_size = len(raw)
        self.has_attachments = any(marker in raw for marker in ATTACHMENT_MARKERS)

    def estimated_prompt_tokens(self) -> int:
        """Prompt tokens estimated from the body, once per request (policies and limits share it).

        A body without attachments is estimated from its size (JSON syntax included, so a
        little high, which suits budget reservations); one with images or files is walked,
        so that their encoded bytes do not count as text.
        """
        if self.prompt_estimate is None:
            size = self.body_size
            if size and not self.has_attachments:
                self.prompt_estimate = tokens_for_bytes(size)
            else:
                self.prompt_estimate = estimate_request_tokens(self.api, self.body or {})
        return self.prompt_estimate

    def elapsed(self) -> float:
        return (self.finished or time.perf_counter()) - self.started

    def waited(self) -> float:
        """Time spent waiting on upstreams (their answers, the backoffs their failures called
        for) and on approvers: what the gateway does not spend itself."""
        outcome = self.outcome
        return outcome.upstream_s + outcome.backoff_s + self.upstream_wait_s + self.approval_wait_s

    def overhead(self, elapsed: float | None = None) -> float:
        """Time in the gateway itself: everything but `waited()`."""
        return max(0.0, (self.elapsed() if elapsed is None else elapsed) - self.waited())

    def headers(self) -> dict[str, str]:
        headers = {"X-Request-Id": self.request_id}
        target = self.outcome.target
        if target is not None:
            headers["X-Lockgate-Provider"] = target.provider.name
            headers["X-Lockgate-Model"] = target.model
        if self.outcome.attempts:
            headers["X-Lockgate-Attempts"] = str(self.outcome.attempts)
        if self.decisions:
            headers["X-Lockgate-Policies"] = ",".join(self.decisions)
        headers["X-Lockgate-Overhead-Ms"] = f"{self.overhead() * 1000:.3f}"
        return headers
