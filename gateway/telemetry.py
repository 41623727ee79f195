"""Wiring the `telemetry:` section into a running gateway: request logs, traces, usage export.

`install_telemetry(runtime)` is called once by `Runtime.start()`. It adds the request
observers (the request log always, the trace observer when `telemetry.traces` is set)
and one usage exporter per `telemetry.usage_export` entry, listening to the ledger. It
returns the shutdown coroutine function, which `Runtime.stop()` awaits after the ledger's
last flush, so the final rows are exported too.

The request log reads its settings on every request, so a reload changes `format: off`
and `content` at once; traces and usage export are set up here, at start.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from gateway.config.model import TracesConfig
from gateway.request_log import RequestLog
from gateway.usage_export import UsageExporter

if TYPE_CHECKING:
    from gateway.runtime import Runtime
    from gateway.tracing import TraceObserver

log = logging.getLogger("lockgate.telemetry")
Shutdown = Callable[[], Awaitable[None]]


def install_telemetry(runtime: Runtime) -> Shutdown:
    telemetry = runtime.snapshot.config.telemetry
    observers: list[Callable[[Any], None]] = [RequestLog(lambda: runtime.snapshot.config.telemetry.logs)]
    tracer = _tracer(runtime, telemetry.traces) if telemetry.traces is not None else None
    if tracer is not None:
        observers.append(tracer)
    exporters = [UsageExporter(sink, runtime.metrics) for sink in telemetry.usage_export]
    runtime.observers.extend(observers)
    for exporter in exporters:
        exporter.start()
        runtime.ledger.listeners.append(exporter.offer)

    async def shutdown() -> None:
        for observer in observers:
            runtime.observers.remove(observer)
        for exporter in exporters:
            runtime.ledger.listeners.remove(exporter.offer)
        await asyncio.gather(*(exporter.stop() for exporter in exporters),
                             *([tracer.shutdown()] if tracer is not None else []))

    return shutdown


def _tracer(runtime: Runtime, config: TracesConfig) -> TraceObserver | None:
    """The trace observer; the OpenTelemetry packages are imported here and only here."""
    try:
        from gateway.tracing import TraceObserver
    except ImportError as exc:
        log.error("telemetry.traces is set but OpenTelemetry is not installed (%s): "
                  "pip install 'lockgate[otel]'. Running without traces.", exc)
        return None

    def provider_kind(name: str) -> str | None:
        spec = runtime.snapshot.config.providers.get(name)
        return spec.type if spec is not None else None

    return TraceObserver(config, provider_kind)
