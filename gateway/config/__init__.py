"""Gateway configuration: `gateway.yaml` loaded, validated and typed.

`load_config` returns the config or every problem found (file, line, key, fix hint);
`quickstart_config` is what `lockgate serve` runs when given no file.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from gateway.config.model import (
    BudgetConfig,
    CircuitConfig,
    Config,
    LimitsConfig,
    ModelConfig,
    PricingConfig,
    ProviderConfig,
    RetryConfig,
    Secret,
    ServerConfig,
    StorageConfig,
    TargetConfig,
    TelemetryConfig,
    TenantConfig,
    TracesConfig,
    UsageExportConfig,
)
from gateway.config.parse import build_config, hash_key, load_config
from gateway.yamlsrc import Problem, load_yaml

QUICKSTART_FILE = Path(__file__).resolve().parent.parent / "quickstart.yaml"
SAMPLE_POLICIES = QUICKSTART_FILE.parent / "sample_policies"
"""Shipped inside the package, so an installed gateway (or the Docker image) has them too."""
DEMO_TENANT_KEY = "lg-demo-key"
DEMO_ADMIN_KEY = "lg-demo-admin-key"

__all__ = [
    "DEMO_ADMIN_KEY",
    "DEMO_TENANT_KEY",
    "BudgetConfig",
    "CircuitConfig",
    "Config",
    "LimitsConfig",
    "ModelConfig",
    "PricingConfig",
    "Problem",
    "ProviderConfig",
    "RetryConfig",
    "Secret",
    "ServerConfig",
    "StorageConfig",
    "TargetConfig",
    "TelemetryConfig",
    "TenantConfig",
    "TracesConfig",
    "UsageExportConfig",
    "hash_key",
    "load_config",
    "quickstart_config",
]


def quickstart_config() -> Config:
    """The bundled config: mock provider, SQLite in the working directory, sample policies."""
    config, problems = build_config(load_yaml(QUICKSTART_FILE), None, environ=os.environ, quickstart=True)
    if config is None:  # pragma: no cover - the bundled file is tested
        raise RuntimeError("the bundled quickstart config is invalid: " + "; ".join(map(str, problems)))
    return replace(config, policies_dir=_sample_policies())


def _sample_policies() -> Path | None:
    """`./policies` if present (your own, tried on the quickstart), else the bundled samples."""
    for candidate in (Path.cwd() / "policies", SAMPLE_POLICIES):
        if candidate.is_dir():
            return candidate
    return None
