"""Usage -> cost -> ledger row and metrics, for every request.

The meter reads usage from what the upstream reported (JSON body, or the stream as it
passes), prices it, and records one ledger row per authenticated request. When the
upstream reported nothing (a cut stream, a client that left), tokens are estimated
and the row is marked `estimated`. A stream that stops after the upstream reported part
of its usage (an Anthropic or Gemini stream reports the prompt long before its end) is
metered from that report, only what it did not report yet estimated (`usage_so_far`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from gateway.batch import BatchWriter
from gateway.events import checked_payload
from gateway.exchange import Exchange
from gateway.metrics import UNKNOWN, Metrics
from gateway.pricing import PriceTable
from gateway.router import Attempt
from gateway.store import LedgerRow
from gateway.tokens import count_request_tokens, tokens_for_bytes
from gateway.usage import (
    ChatStreamUsage,
    ResponsesStreamUsage,
    Usage,
    usage_from_chat,
    usage_from_embeddings,
    usage_from_responses,
    usage_reported_by,
)
from providers.base import CHAT, EMBEDDINGS, RESPONSES, UpstreamError
from providers.sse import SSEEvent

log = logging.getLogger("lockgate.metering")

_EXTRACTORS = {CHAT: usage_from_chat, RESPONSES: usage_from_responses, EMBEDDINGS: usage_from_embeddings}


class UsageWatch:
    """A stream stage: reads usage as events pass; drops the usage chunk if we asked for it."""

    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange
        self.tracker: ChatStreamUsage | ResponsesStreamUsage = (
            ChatStreamUsage() if exchange.api == CHAT else ResponsesStreamUsage())
        self.strip = exchange.strip_usage  # only ever set for chat streams

    def feed(self, event: SSEEvent) -> list[SSEEvent]:
        payload = checked_payload(event)
        if payload is None:
            return [event]
        tracker = self.tracker
        tracker.feed(payload)
        self.exchange.usage = tracker.usage
        self.exchange.stream_text_bytes = tracker.text_bytes
        if self.strip and payload.get("usage") is not None:
            if not payload.get("choices"):
                return []
            return [event.replace({**payload, "usage": None})]
        return [event]

    def finish(self) -> list[SSEEvent]:
        return []

    def failed(self, exc: UpstreamError) -> None:
        """The stream failed: the usage its failure event carries (a `response.failed` has it)
        counts, else what the provider had reported before the failure."""
        if exc.event is not None:
            self.tracker.feed(exc.event)
            self.exchange.usage = self.tracker.usage
        if self.tracker.usage is None and exc.usage is not None:
            self.exchange.usage = usage_so_far(exc.usage, self.tracker.text_bytes)


def usage_so_far(reported: dict[str, Any], text_bytes: int) -> Usage | None:
    """The usage of a stream that stopped early, from the Chat-shaped usage its provider had
    reported (`UpstreamError.usage`): the prompt counts as reported (its cached part priced
    as such); the output too, unless the provider had not counted it yet
    (`completion_tokens` None): then it is estimated from the `text_bytes` relayed, as for
    a stream without any report, and the usage is marked `estimated`."""
    usage = usage_from_chat(reported)
    if usage is not None and reported.get("completion_tokens") is None:
        usage.output_tokens, usage.reasoning_tokens = tokens_for_bytes(text_bytes), 0
        usage.estimated = True
    return usage


class Meter:
    def __init__(self, metrics: Metrics, prices: PriceTable, ledger: BatchWriter[LedgerRow]) -> None:
        self.metrics = metrics
        self.prices = prices
        self.ledger = ledger
        self._warned_unpriced: set[str] = set()

    def capture_json(self, exchange: Exchange, payload: Any) -> None:
        usage = payload.get("usage") if isinstance(payload, dict) else None
        exchange.usage = _EXTRACTORS[exchange.api](usage)

    def record(self, exchange: Exchange) -> None:
        try:
            self._record(exchange)
        except Exception:  # metering must never break a response
            log.exception("metering failed for %s", exchange.request_id)

    @staticmethod
    def needs_estimate(exchange: Exchange) -> bool:
        """The upstream was reached (or left mid-attempt) and reported no usage."""
        return (not exchange.finalized and exchange.usage is None
                and (exchange.reached_upstream or exchange.outcome.abandoned_in_flight))

    async def estimate_off_loop(self, exchange: Exchange) -> None:
        """Estimate a request's usage in a thread: counting a large prompt with its tokenizer
        takes milliseconds (a 100 KB prompt ~7 ms) that the event loop must not lose."""
        if self.needs_estimate(exchange):
            exchange.usage = await asyncio.to_thread(self.estimate, exchange)

    def finalize(self, exchange: Exchange) -> tuple[Usage | None, float | None]:
        """The request's usage (estimated if the upstream reported none) and its cost. Idempotent."""
        if not exchange.finalized:
            if self.needs_estimate(exchange):
                exchange.usage = self.estimate(exchange)
            exchange.finalized = True
            answered = exchange.usage is not None and exchange.model_name
            answer = [(exchange.model_name, exchange.usage)] if answered else []
            billed = _billed_failures(exchange)
            for _, usage in billed:
                exchange.usage = usage if exchange.usage is None else exchange.usage + usage
            for model, usage in [*billed, *answer]:  # each part at its own model's price
                cost = self.prices.cost(model, usage)
                if cost is None:
                    exchange.unpriced_models.append(model)
                else:  # the priced parts' sum; null only when no part has a price
                    exchange.cost_usd = (exchange.cost_usd or 0.0) + cost
        return exchange.usage, exchange.cost_usd

    def _record(self, exchange: Exchange) -> None:
        tenant = exchange.tenant.name if exchange.tenant is not None else UNKNOWN
        model = exchange.model_name or exchange.alias_label
        provider = exchange.provider_name or ""
        elapsed = exchange.elapsed()
        overhead = exchange.overhead(elapsed)
        m = self.metrics
        m.requests(tenant, model, provider, str(exchange.status)).inc()
        m.duration(tenant, model).observe(elapsed)
        m.overhead.observe(overhead)
        if exchange.error_type:
            m.errors(tenant, exchange.error_type).inc()
        if exchange.ttft_s is not None and exchange.model_name:
            m.ttft(exchange.model_name, provider).observe(exchange.ttft_s)
        if exchange.tenant is None:
            return
        usage, cost = self.finalize(exchange)
        for unpriced in exchange.unpriced_models:
            self._unpriced(unpriced)
        if usage is not None and exchange.model_name:
            self._count_tokens(tenant, model, usage, cost)
        self.ledger.append(self.row(exchange, usage, cost, elapsed, overhead))

    def _count_tokens(self, tenant: str, model: str, usage: Usage, cost: float | None) -> None:
        tokens = self.metrics.tokens
        for kind, count in (("input", usage.input_tokens), ("output", usage.output_tokens),
                            ("cached", usage.cached_tokens), ("cache_write", usage.cache_write_tokens),
                            ("reasoning", usage.reasoning_tokens)):
            if count:
                tokens(tenant, model, kind).inc(count)
        if cost:
            self.metrics.cost(tenant, model).inc(cost)

    def estimate(self, exchange: Exchange) -> Usage:
        """Tokens when the upstream reported none: the prompt counted, the output from what passed.

        A translated stream the gateway stopped reading (the client left) had no usage chunk
        yet, but its provider may have reported the prompt: that report wins over a count.
        """
        reported = exchange.outcome.stopped_usage
        usage = usage_so_far(reported, exchange.stream_text_bytes) if reported is not None else None
        if usage is not None:
            return usage
        body = exchange.body or {}
        input_tokens = count_request_tokens(exchange.api, body, exchange.model_name)
        output_tokens = tokens_for_bytes(exchange.stream_text_bytes) if exchange.stream else 0
        return Usage(input_tokens=input_tokens, output_tokens=output_tokens, estimated=True)

    def _unpriced(self, model: str) -> None:
        self.metrics.unpriced(model).inc()
        if model not in self._warned_unpriced:
            self._warned_unpriced.add(model)
            log.warning("model %s has no price: its cost is recorded as null; add it under pricing.models", model)

    @staticmethod
    def row(exchange: Exchange, usage: Usage | None, cost: float | None, elapsed: float, overhead: float
            ) -> LedgerRow:
        assert exchange.tenant is not None
        usage = usage or Usage()
        return LedgerRow(
            ts=exchange.wall_start, request_id=exchange.request_id, tenant=exchange.tenant.name,
            agent=exchange.agent, alias=exchange.alias_label, provider=exchange.provider_name,
            model=exchange.model_name, api=exchange.api, stream=exchange.stream, status=exchange.status,
            error_type=exchange.error_type, input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
            cached_tokens=usage.cached_tokens, cache_write_tokens=usage.cache_write_tokens,
            reasoning_tokens=usage.reasoning_tokens, cost_usd=cost, latency_ms=elapsed * 1000,
            ttft_ms=exchange.ttft_s * 1000 if exchange.ttft_s is not None else None,
            upstream_ms=(exchange.outcome.upstream_s + exchange.upstream_wait_s) * 1000,
            overhead_ms=overhead * 1000, attempts=exchange.outcome.attempts, decisions=exchange.decisions,
            estimated=usage.estimated,
        )


def _billed_failures(exchange: Exchange) -> list[tuple[str, Usage]]:
    """(model, usage) of the attempts that failed with a usage report: they were billed."""
    return [(attempt.model, usage) for attempt in exchange.outcome.tries
            if (usage := billed_usage(attempt)) is not None]


def billed_usage(attempt: Attempt) -> Usage | None:
    """What a failed attempt was billed for, from the usage it reported (None: nothing)."""
    usage = usage_reported_by(attempt.failure_event) if attempt.failure_event is not None else None
    if usage is None and attempt.reported_usage is not None:
        usage = usage_so_far(attempt.reported_usage, 0)  # nothing of it was relayed
    return usage
