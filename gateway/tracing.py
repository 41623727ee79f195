"""Traces: each finished request as an OpenTelemetry span, each upstream attempt as a child.

Imported only when `telemetry.traces` is configured (`gateway.telemetry` imports it
lazily), so without it the OpenTelemetry packages are neither needed nor loaded.

Spans are built after the request is over, from its `Exchange`: the request span starts
at the exchange's wall-clock start and lasts its elapsed time; every `Attempt` in
`exchange.outcome.tries` becomes a client span with its own start, end and error. The
pipeline therefore carries no tracing context and does no tracing work while it serves.
Finished spans go to a `BatchSpanProcessor`, which exports them (OTLP over HTTP,
protobuf) from its own thread and drops spans rather than wait when its queue is full.

Attribute names follow the OpenTelemetry GenAI semantic conventions (`gen_ai.*`, both
`gen_ai.provider.name` and the older `gen_ai.system`), HTTP conventions for the status,
and `lockgate.*` for what only the gateway knows (tenant, agent, cost, policy decisions,
failovers).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from gateway.config.model import TracesConfig
from gateway.exchange import Exchange
from gateway.router import Attempt
from providers.base import CHAT, EMBEDDINGS, RESPONSES

log = logging.getLogger("lockgate.tracing")

EXPORT_TIMEOUT_S = 10.0
SHUTDOWN_TIMEOUT_S = 5.0
LABEL_LIMIT = 128
OPERATIONS = {CHAT: "chat", RESPONSES: "chat", EMBEDDINGS: "embeddings"}
ROUTES = {CHAT: "/v1/chat/completions", RESPONSES: "/v1/responses", EMBEDDINGS: "/v1/embeddings"}
# Provider kinds (config `type:`) -> `gen_ai.provider.name` well-known values.
PROVIDER_NAMES = {"openai": "openai", "azure": "azure.ai.openai", "anthropic": "anthropic", "gemini": "gcp.gemini"}
ProviderKind = Callable[[str], str | None]


class TraceObserver:
    """The request observer that records spans; `shutdown()` flushes what is still queued."""

    def __init__(self, config: TracesConfig, provider_kind: ProviderKind) -> None:
        self._provider_kind = provider_kind
        # A provider of our own, not the global one: several gateways (tests) or an
        # embedding application may each trace to a different place.
        self.provider = TracerProvider(resource=Resource.create({SERVICE_NAME: config.service_name}),
                                       sampler=TraceIdRatioBased(config.sample_ratio))
        exporter = OTLPSpanExporter(endpoint=config.endpoint, headers=dict(config.headers),
                                    timeout=EXPORT_TIMEOUT_S)
        self.provider.add_span_processor(BatchSpanProcessor(exporter))
        self.tracer = self.provider.get_tracer("lockgate")

    def __call__(self, exchange: Exchange) -> None:
        start = _nanos(exchange.wall_start)
        end = start + int(exchange.elapsed() * 1e9)
        span = self.tracer.start_span(f"{OPERATIONS[exchange.api]} {exchange.alias_label}", kind=SpanKind.SERVER,
                                      start_time=start)
        if not span.is_recording():  # sampled out: nothing more to build
            return
        span.set_attributes(self.request_attributes(exchange))
        if exchange.status >= 500:
            span.set_status(Status(StatusCode.ERROR, exchange.error_type))
        parent = trace.set_span_in_context(span)
        tries = exchange.outcome.tries
        for number, attempt in enumerate(tries, start=1):
            # The router's clock for an attempt stops at the first content; the attempt
            # that serves a stream goes on until the stream ends, with the request.
            streaming = exchange.stream and exchange.reached_upstream and attempt is tries[-1]
            self._attempt_span(exchange, attempt, number, parent,
                               end if streaming or not attempt.ended else _nanos(attempt.ended))
        span.end(end_time=end)

    def _attempt_span(self, exchange: Exchange, attempt: Attempt, number: int, parent: Any, end: int) -> None:
        span: Span = self.tracer.start_span(
            f"{OPERATIONS[exchange.api]} {attempt.model}", context=parent, kind=SpanKind.CLIENT,
            start_time=_nanos(attempt.started), attributes=self.attempt_attributes(exchange, attempt, number))
        if attempt.error:
            span.set_status(Status(StatusCode.ERROR, attempt.error))
        span.end(end_time=end)

    def request_attributes(self, exchange: Exchange) -> dict[str, Any]:
        usage = exchange.usage
        served = exchange.provider_name
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": OPERATIONS[exchange.api],
            "gen_ai.request.model": _clip(exchange.alias),
            "gen_ai.request.stream": exchange.stream,
            "gen_ai.response.model": exchange.model_name,
            "gen_ai.response.time_to_first_chunk": exchange.ttft_s,
            "http.request.method": "POST",
            "http.route": ROUTES[exchange.api],
            "http.response.status_code": exchange.status,
            "error.type": exchange.error_type,
            "lockgate.request_id": exchange.request_id,
            "lockgate.tenant": exchange.tenant.name if exchange.tenant is not None else None,
            "lockgate.agent": _clip(exchange.agent),
            "lockgate.provider": served,
            "lockgate.cost_usd": exchange.cost_usd,
            "lockgate.attempts": exchange.outcome.attempts,
            "lockgate.failovers": len(exchange.outcome.failovers),
            "lockgate.policy.decisions": list(exchange.decisions),
            "lockgate.overhead_ms": exchange.overhead() * 1000,
            **(self._provider_attributes(served) if served else {}),
        }
        if usage is not None:
            attributes.update({
                "gen_ai.usage.input_tokens": usage.input_tokens,
                "gen_ai.usage.output_tokens": usage.output_tokens,
                "gen_ai.usage.cache_read.input_tokens": usage.cached_tokens,
                "gen_ai.usage.cache_creation.input_tokens": usage.cache_write_tokens,
                "gen_ai.usage.reasoning.output_tokens": usage.reasoning_tokens,
                "lockgate.usage.estimated": usage.estimated,
            })
        return _present(attributes)

    def attempt_attributes(self, exchange: Exchange, attempt: Attempt, number: int) -> dict[str, Any]:
        return _present({
            "gen_ai.operation.name": OPERATIONS[exchange.api],
            "gen_ai.request.model": attempt.model,
            "lockgate.provider": attempt.provider,
            "lockgate.attempt": number,
            "error.type": attempt.error,
            **self._provider_attributes(attempt.provider),
        })

    def _provider_attributes(self, provider: str) -> dict[str, Any]:
        kind = self._provider_kind(provider)
        if kind is None:
            return {}
        name = PROVIDER_NAMES.get(kind, kind)
        return {"gen_ai.provider.name": name, "gen_ai.system": name}

    async def shutdown(self) -> None:
        """Export what is queued (from a thread: the exporter's HTTP client blocks), then stop."""
        try:
            await asyncio.wait_for(asyncio.to_thread(self.provider.shutdown), SHUTDOWN_TIMEOUT_S)
        except TimeoutError:
            log.warning("traces: the collector did not take the last spans within %.0fs", SHUTDOWN_TIMEOUT_S)


def _nanos(seconds: float) -> int:
    return int(seconds * 1e9)


def _clip(value: str | None) -> str | None:
    return value[:LABEL_LIMIT] if value is not None else None


def _present(attributes: dict[str, Any]) -> dict[str, Any]:
    """OpenTelemetry attributes cannot be None."""
    return {key: value for key, value in attributes.items() if value is not None}
