"""Prometheus metrics: the names of DESIGN.md §3, with label children cached.

Label values are bounded: tenants and models come from config (never from raw request
input), statuses and error types from closed sets. Looking up a labelled child in
prometheus_client takes a lock and validates the labels each time, so hot paths keep
their children in plain dicts keyed by the label tuple.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# `_created` series double the exposition size and no dashboard reads them.
disable_created_metrics()

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
UNKNOWN = "unknown"


class _Children:
    """`metric.labels(*key)` memoized per label tuple."""

    __slots__ = ("_cache", "_metric")

    def __init__(self, metric: Any) -> None:
        self._metric = metric
        self._cache: dict[tuple[str, ...], Any] = {}

    def __call__(self, *key: str) -> Any:
        child = self._cache.get(key)
        if child is None:
            child = self._cache[key] = self._metric.labels(*key)
        return child

    def remove(self, *key: str) -> None:
        """Stop exporting this label set (what it measured is gone from the config)."""
        if self._cache.pop(key, None) is not None:
            self._metric.remove(*key)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = _Children(Counter(
            "lockgate_requests", "Requests by tenant, served model, provider and HTTP status.",
            ["tenant", "model", "provider", "status"], registry=r))
        self.duration = _Children(Histogram(
            "lockgate_request_duration_seconds", "Total request time, streams included.",
            ["tenant", "model"], buckets=LATENCY_BUCKETS, registry=r))
        self.ttft = _Children(Histogram(
            "lockgate_time_to_first_token_seconds", "Time to the first streamed content.",
            ["model", "provider"], buckets=LATENCY_BUCKETS, registry=r))
        self.overhead = Histogram(
            "lockgate_overhead_seconds", "Time spent in the gateway itself (excluding the upstream).",
            buckets=OVERHEAD_BUCKETS, registry=r)
        self.tokens = _Children(Counter(
            "lockgate_tokens", "Tokens by kind: input, output, cached, cache_write, reasoning.",
            ["tenant", "model", "kind"], registry=r))
        self.cost = _Children(Counter(
            "lockgate_cost_usd", "Cost in USD.", ["tenant", "model"], registry=r))
        self.unpriced = _Children(Counter(
            "lockgate_unpriced_requests", "Requests to a model with no known price.", ["model"], registry=r))
        self.errors = _Children(Counter(
            "lockgate_errors", "Errors by type.", ["tenant", "type"], registry=r))
        self.failovers = _Children(Counter(
            "lockgate_failovers", "Moves to the next target after one failed.",
            ["model", "from_provider", "to_provider", "reason"], registry=r))
        self.retries = _Children(Counter(
            "lockgate_retries", "Retries of a target after a retryable failure.",
            ["provider", "model", "reason"], registry=r))
        self.policy_decisions = _Children(Counter(
            "lockgate_policy_decisions", "Policy rule decisions.", ["policy", "rule", "action"], registry=r))
        self.policy_errors = _Children(Counter(
            "lockgate_policy_errors", "Policy conditions that failed at run time (failed closed).",
            ["policy", "rule"], registry=r))
        self.approvals_pending = Gauge(
            "lockgate_approvals_pending", "Approvals waiting for a decision.", registry=r,
            multiprocess_mode="livemax")
        self.approvals_overdue = Gauge(
            "lockgate_approvals_overdue", "Pending approvals past their expiry (the expiry sweep is behind).",
            registry=r, multiprocess_mode="livemax")
        self.circuit_open = _Children(Gauge(
            "lockgate_circuit_open", "1 while a target's circuit is open.", ["provider", "model"],
            registry=r, multiprocess_mode="livemax"))
        self.budget_used = _Children(Gauge(
            "lockgate_budget_used_ratio", "Spend / budget in the current period.", ["tenant", "period"],
            registry=r, multiprocess_mode="livemax"))
        self.reload_failures = Counter(
            "lockgate_config_reload_failures", "Config or policy reloads refused.", registry=r)
        self.usage_export_dropped = _Children(Counter(
            "lockgate_usage_export_dropped", "Usage rows a usage exporter gave up on: queue full, refused by the "
            "receiver, or still unsent at shutdown.", ["sink", "reason"], registry=r))
        self.in_flight = Gauge(
            "lockgate_in_flight_requests", "Requests being served now.", registry=r,
            multiprocess_mode="livesum")

    def render(self) -> tuple[bytes, str]:
        """The exposition text; in multiprocess mode, summed over every worker."""
        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if directory:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=directory)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def bounded(value: str | None, allowed: Callable[[str], bool]) -> str:
    """A label value from config, or `unknown` for anything else."""
    return value if value is not None and allowed(value) else UNKNOWN
