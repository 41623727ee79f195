"""The validated configuration, as immutable dataclasses.

`gateway.config.parse` builds these from `gateway.yaml`; everything else in the gateway
reads only these types, never raw YAML.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

ProviderKind = Literal["openai", "azure", "anthropic", "gemini", "mock"]
PROVIDER_KINDS: tuple[str, ...] = ("openai", "azure", "anthropic", "gemini", "mock")
Strategy = Literal["ordered", "weighted", "least_busy", "latency"]
STRATEGIES: tuple[str, ...] = ("ordered", "weighted", "least_busy", "latency")


class Secret(str):
    """A string that never shows itself in reprs, logs or tracebacks."""

    def __repr__(self) -> str:
        return "Secret('***')"


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "0.0.0.0"
    port: int = 8080
    max_body_bytes: int = 10 * 1024 * 1024
    max_json_depth: int = 64
    max_messages: int = 2048
    max_tools: int = 512
    max_header_bytes: int = 16 * 1024
    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    drain_timeout_s: float = 30.0
    max_concurrent: int = 4096
    """Global cap on in-flight upstream requests."""
    queue_timeout_s: float = 5.0
    cors_origins: tuple[str, ...] = ()
    auth_failures_per_minute: int = 30
    """Failed authentications allowed per client address per minute; then 429 (0 = no limit)."""


@dataclass(frozen=True, slots=True)
class StorageConfig:
    url: str = "sqlite:///lockgate.db"
    redis_url: str | None = None


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    name: str
    type: ProviderKind
    api_key: Secret | None = None
    base_url: str | None = None
    api_version: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    max_connections: int = 1000

    @property
    def secrets(self) -> tuple[str, ...]:
        """What this provider sends as credentials (never repeated to a client or a log)."""
        return tuple(value for value in (self.api_key, *(value for _, value in self.headers)) if value)


@dataclass(frozen=True, slots=True)
class TargetConfig:
    provider: str
    model: str
    weight: float = 1.0
    timeout_s: float | None = None
    connect_timeout_s: float | None = None
    first_token_timeout_s: float | None = None
    idle_timeout_s: float | None = None
    max_concurrent: int | None = None


@dataclass(frozen=True, slots=True)
class RetryConfig:
    attempts: int = 2
    """Total tries on one target, the first included."""
    backoff_ms: float = 100.0
    max_backoff_ms: float = 2000.0
    max_wait_s: float = 5.0
    """A 429's Retry-After longer than this moves on to the next target at once."""


@dataclass(frozen=True, slots=True)
class CircuitConfig:
    failures: int = 5
    """Consecutive failures that open the circuit."""
    failure_rate: float = 0.5
    window_s: float = 30.0
    min_requests: int = 20
    cooldown_s: float = 15.0


@dataclass(frozen=True, slots=True)
class ModelConfig:
    alias: str
    targets: tuple[TargetConfig, ...]
    retry: RetryConfig = field(default_factory=RetryConfig)
    strategy: Strategy = "ordered"
    timeout_s: float = 600.0
    connect_timeout_s: float = 10.0
    first_token_timeout_s: float | None = None
    idle_timeout_s: float | None = None
    circuit: CircuitConfig = field(default_factory=CircuitConfig)


@dataclass(frozen=True, slots=True)
class BudgetConfig:
    usd_per_day: float | None = None
    usd_per_month: float | None = None


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    rpm: int | None = None
    tpm: int | None = None
    max_concurrent: int | None = None


@dataclass(frozen=True, slots=True)
class TenantConfig:
    name: str
    key_hashes: tuple[str, ...] = ()
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    policies: tuple[str, ...] = ()
    models: tuple[str, ...] | None = None
    """Aliases this tenant may use; None means all."""
    model_limits: dict[str, LimitsConfig] = field(default_factory=dict)
    """Per alias rate limits (`limits.models: {alias: {rpm, tpm}}`), on top of the tenant's."""

    def may_use(self, alias: str) -> bool:
        return self.models is None or alias in self.models


@dataclass(frozen=True, slots=True)
class PricingConfig:
    file: Path | None = None
    models: dict[str, dict[str, float]] = field(default_factory=dict)
    """Per-model overrides as written (validated by `gateway.pricing.PriceTable.load`)."""


@dataclass(frozen=True, slots=True)
class TracesConfig:
    """OpenTelemetry export (OTLP over HTTP, protobuf); absent means no tracing at all."""

    endpoint: str
    """e.g. http://otel-collector:4318/v1/traces"""
    service_name: str = "lockgate"
    headers: tuple[tuple[str, str], ...] = ()
    sample_ratio: float = 1.0


@dataclass(frozen=True, slots=True)
class LogsConfig:
    format: str = "json"
    """json: one JSON line per request; text: a readable line; off: no request log."""
    content: bool = False
    """Include message content (prompts and answers) in request logs. Off by default."""


@dataclass(frozen=True, slots=True)
class UsageExportConfig:
    """Where finished ledger rows are also sent, in batches, off the request path."""

    type: str
    """webhook or elasticsearch (also OpenSearch)"""
    url: str
    index: str = "agent-metrics"
    api_key: Secret | None = None
    headers: tuple[tuple[str, str], ...] = ()
    batch_size: int = 500
    interval_s: float = 5.0


@dataclass(frozen=True, slots=True)
class TelemetryConfig:
    traces: TracesConfig | None = None
    logs: LogsConfig = field(default_factory=LogsConfig)
    usage_export: tuple[UsageExportConfig, ...] = ()


@dataclass(frozen=True, slots=True)
class Config:
    path: Path | None
    server: ServerConfig
    storage: StorageConfig
    admin_key_hashes: tuple[str, ...]
    policies_dir: Path | None
    providers: dict[str, ProviderConfig]
    models: dict[str, ModelConfig]
    tenants: dict[str, TenantConfig]
    pricing: PricingConfig
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)
    quickstart: bool = False
    lines: dict[str, int] = field(default_factory=dict)
    """Line numbers of some settings (by dotted path), for problems found after parsing."""
