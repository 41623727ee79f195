"""The `telemetry:` section: traces (OTLP), request logs, usage export."""

from __future__ import annotations

from typing import Any

from gateway.config.model import LogsConfig, Secret, TelemetryConfig, TracesConfig, UsageExportConfig
from gateway.config.reader import Reader

EXPORT_TYPES = ("webhook", "elasticsearch")


def read_telemetry(reader: Any, raw: dict) -> TelemetryConfig:
    """`reader` is the config builder (a `Reader` that also resolves `env:` secrets)."""
    section = reader.mapping(raw, "telemetry", "telemetry")
    reader.check_keys(section, ("traces", "logs", "usage_export"), "telemetry")
    return TelemetryConfig(traces=_traces(reader, section), logs=_logs(reader, section),
                           usage_export=tuple(_exports(reader, section)))


def _url(reader: Reader, spec: dict, path: str) -> str:
    url = reader.get(spec, "url" if "url" in spec else "endpoint", path, str, "", required=True)
    if url and not url.startswith(("http://", "https://")):
        reader.problem(spec, "url" if "url" in spec else "endpoint", path, "must be an http:// or https:// URL")
    return url


def _traces(reader: Any, section: dict) -> TracesConfig | None:
    if section.get("traces") is None:
        return None
    spec = reader.mapping(section, "traces", "telemetry.traces")
    reader.check_keys(spec, ("endpoint", "service_name", "headers", "sample_ratio"), "telemetry.traces")
    ratio = reader.get(spec, "sample_ratio", "telemetry.traces.sample_ratio", float, 1.0, minimum=0)
    if ratio > 1:
        reader.problem(spec, "sample_ratio", "telemetry.traces.sample_ratio", "must be between 0 and 1")
    return TracesConfig(endpoint=_url(reader, spec, "telemetry.traces.endpoint"),
                        service_name=reader.get(spec, "service_name", "telemetry.traces.service_name", str,
                                                "lockgate"),
                        headers=reader.headers(spec, "telemetry.traces.headers"), sample_ratio=min(ratio, 1.0))


def _logs(reader: Any, section: dict) -> LogsConfig:
    spec = reader.mapping(section, "logs", "telemetry.logs")
    reader.check_keys(spec, ("format", "content"), "telemetry.logs")
    if spec.get("format") is False:
        log_format = "off"  # YAML 1.1 reads a bare `off` as false
    else:
        log_format = reader.get(spec, "format", "telemetry.logs.format", str, "json", choices=("json", "text", "off"))
    return LogsConfig(format=log_format,
                      content=reader.get(spec, "content", "telemetry.logs.content", bool, False))


def _exports(reader: Any, section: dict) -> list[UsageExportConfig]:
    raw = section.get("usage_export")
    if raw is None:
        return []
    if not isinstance(raw, list):
        reader.problem(section, "usage_export", "telemetry.usage_export",
                       "must be a list like [{type: webhook, url: https://...}]")
        return []
    exports = []
    for index, spec in enumerate(raw):
        path = f"telemetry.usage_export[{index}]"
        if not isinstance(spec, dict):
            reader.problem(raw, index, path, "must be a mapping {type: webhook|elasticsearch, url: ...}")
            continue
        reader.check_keys(spec, ("type", "url", "index", "api_key", "headers", "batch_size", "interval_s"), path)
        api_key = reader.get(spec, "api_key", f"{path}.api_key", str, "")
        exports.append(UsageExportConfig(
            type=reader.get(spec, "type", f"{path}.type", str, "webhook", required=True, choices=EXPORT_TYPES),
            url=_url(reader, spec, f"{path}.url"),
            index=reader.get(spec, "index", f"{path}.index", str, "agent-metrics"),
            api_key=Secret(resolved) if api_key and (resolved := reader.secret(spec, "api_key", f"{path}.api_key",
                                                                               api_key)) else None,
            headers=reader.headers(spec, f"{path}.headers"),
            batch_size=reader.get(spec, "batch_size", f"{path}.batch_size", int, 500, minimum=1),
            interval_s=reader.get(spec, "interval_s", f"{path}.interval_s", float, 5.0, minimum=0.01)))
    return exports
