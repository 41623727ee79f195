"""Build a validated `Config` from `gateway.yaml`, collecting every problem on the way."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from gateway.config.model import (
    PROVIDER_KINDS,
    STRATEGIES,
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
    TenantConfig,
)
from gateway.config.reader import Reader
from gateway.config.telemetry import read_telemetry
from gateway.yamlsrc import Problem, YamlError, line_of, load_yaml

TOP_KEYS = ("server", "storage", "admin_keys", "policies_dir", "providers", "models", "tenants",
            "pricing", "telemetry")
SERVER_KEYS = ("host", "port", "max_body_bytes", "max_json_depth", "max_messages", "max_tools",
               "max_header_bytes", "header_timeout_s", "body_timeout_s", "drain_timeout_s",
               "max_concurrent", "queue_timeout_s", "cors_origins", "auth_failures_per_minute")
PROVIDER_KEYS = ("type", "api_key", "base_url", "api_version", "headers", "max_connections")
TIMEOUT_KEYS = ("timeout_s", "connect_timeout_s", "first_token_timeout_s", "idle_timeout_s")
TARGET_KEYS = ("provider", "model", "weight", "max_concurrent", *TIMEOUT_KEYS)
MODEL_KEYS = ("targets", "retry", "strategy", "circuit", *TIMEOUT_KEYS)
RETRY_KEYS = ("attempts", "backoff_ms", "max_backoff_ms", "max_wait_s")
CIRCUIT_KEYS = ("failures", "failure_rate", "window_s", "min_requests", "cooldown_s")
TENANT_KEYS = ("keys", "budget", "limits", "policies", "models")
DEFAULT_BASE_URLS = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
    "gemini": "https://generativelanguage.googleapis.com",
}
_SHA256 = re.compile(r"^sha256:[0-9a-f]{64}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")


def hash_key(key: str) -> str:
    """The stored form of a key: `sha256:<hex>`."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def load_config(path: Path, *, environ: dict[str, str] | None = None
                ) -> tuple[Config | None, list[Problem]]:
    """Load and validate a config file. Returns the config, or None and the problems."""
    config, problems = read_config(path, environ=environ)
    return (None, problems) if problems else (config, [])


def read_config(path: Path, *, environ: dict[str, str] | None = None
                ) -> tuple[Config | None, list[Problem]]:
    """Load a config file for checking: as much of it as could be read, and every problem.

    Unlike `load_config`, the config comes back even when there are problems (each wrong
    value replaced by its default, a missing `policies_dir` or `pricing.file` by None), so
    a check can go on to what the file names: its policies, its prices, the policies its
    tenants list. Such a draft is for reporting only and must never be run. It is None
    only when the file is not YAML, or not a mapping of sections.
    """
    try:
        raw = load_yaml(path)
    except YamlError as exc:
        return None, [exc.problem]
    builder = _Builder(str(path), os.environ if environ is None else environ)
    return builder.build(raw, path, False), builder.problems


def build_config(raw: Any, path: Path | None, *, environ: Any, quickstart: bool = False
                 ) -> tuple[Config | None, list[Problem]]:
    builder = _Builder(str(path) if path else "<config>", environ)
    config = builder.build(raw, path, quickstart)
    if builder.problems:
        return None, builder.problems
    return config, []


def _storage_url_problem(url: str, environ: Any) -> str | None:
    """What is wrong with a `storage.url` (never quoting it: it may hold a password), or None."""
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        if not path or path.endswith("/") or Path(path).is_dir():
            return ("needs a database file after sqlite:///, e.g. sqlite:///lockgate.db (relative to the "
                    "working directory) or sqlite:////var/lib/lockgate/lockgate.db (absolute)")
        return None
    if not url.startswith(("postgresql://", "postgres://")):
        return "must start with sqlite:/// (a file) or postgresql:// (a server)"
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed [ of an IPv6 address
        return "is not a valid URL; write postgresql://USER:PASSWORD@HOST:5432/DATABASE"
    # libpq and asyncpg also take the server from `?host=` (a Unix socket directory) or PGHOST.
    if not parts.hostname and not parse_qs(parts.query).get("host") and not environ.get("PGHOST"):
        return ("names no server; write postgresql://USER:PASSWORD@HOST:5432/DATABASE "
                "(a Unix socket: postgresql:///DATABASE?host=/var/run/postgresql)")
    return None


class _Builder(Reader):
    def __init__(self, file: str, environ: Any) -> None:
        super().__init__(file)
        self.environ = environ
        self.lines: dict[str, int] = {}
        self.key_owners: dict[str, tuple[str, str]] = {}
        """Each key hash seen so far -> (who it authenticates as, where it was listed)."""

    def build(self, raw: Any, path: Path | None, quickstart: bool) -> Config | None:
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            self.problem(raw, None, "", "the config file must be a mapping of sections (server:, "
                                        "providers:, models:, tenants:, ...)")
            return None
        self.check_keys(raw, TOP_KEYS, "")
        base_dir = path.parent if path else Path.cwd()
        providers = self.providers(raw)
        models = self.models(raw, providers)
        return Config(
            path=path,
            server=self.server(raw),
            storage=self.storage(raw, base_dir),
            admin_key_hashes=tuple(self.admin_keys(raw)),
            policies_dir=self.policies_dir(raw, base_dir),
            providers=providers,
            models=models,
            tenants=self.tenants(raw, models),
            pricing=self.pricing(raw, base_dir),
            telemetry=read_telemetry(self, raw),
            quickstart=quickstart,
            lines=self.lines,
        )

    # -- sections ------------------------------------------------------------------------

    def server(self, raw: dict) -> ServerConfig:
        section = self.mapping(raw, "server", "server")
        self.check_keys(section, SERVER_KEYS, "server")
        defaults = ServerConfig()
        values: dict[str, Any] = {}
        for key in SERVER_KEYS:
            default = getattr(defaults, key)
            if key == "cors_origins":
                origins = self.string_list(section, key, "server.cors_origins")
                values[key] = tuple(origins or ())
            elif isinstance(default, bool):
                values[key] = self.get(section, key, f"server.{key}", bool, default)
            elif isinstance(default, int):
                values[key] = self.get(section, key, f"server.{key}", int, default, minimum=0)
            elif isinstance(default, float):
                values[key] = self.get(section, key, f"server.{key}", float, default, minimum=0)
            else:
                values[key] = self.get(section, key, f"server.{key}", str, default)
        if not 0 <= values["port"] <= 65535:
            self.problem(section, "port", "server.port", "must be a TCP port between 0 and 65535")
        return ServerConfig(**values)

    def storage(self, raw: dict, base_dir: Path) -> StorageConfig:
        section = self.mapping(raw, "storage", "storage")
        self.check_keys(section, ("url", "redis_url"), "storage")
        url = self.get(section, "url", "storage.url", str, "sqlite:///lockgate.db")
        url = self.secret(section, "url", "storage.url", url) or ""
        if (wrong := _storage_url_problem(url, self.environ)) is not None:
            self.problem(section, "url", "storage.url", wrong)
        redis_url = self.get(section, "redis_url", "storage.redis_url", str, "")
        redis_url = (self.secret(section, "redis_url", "storage.redis_url", redis_url) if redis_url else None) or None
        if redis_url and not redis_url.startswith(("redis://", "rediss://", "unix://")):
            self.problem(section, "redis_url", "storage.redis_url", "must start with redis:// or rediss://")
        return StorageConfig(url=url, redis_url=redis_url)

    def admin_keys(self, raw: dict) -> list[str]:
        keys = self.string_list(raw, "admin_keys", "admin_keys") or []
        hashes = []
        for index, key in enumerate(keys):
            where = f"admin_keys[{index}]"
            if key.startswith("sha256:"):
                if not _SHA256.match(key):
                    self.problem(raw, "admin_keys", where, "a hashed key is 'sha256:' + 64 lowercase hex digits")
                else:
                    hashes.append(self.claim_key(key, "an admin key", raw, "admin_keys", where))
                continue
            value = self.secret(raw, "admin_keys", where, key)
            if value:
                hashes.append(self.claim_key(hash_key(value), "an admin key", raw, "admin_keys", where))
        return hashes

    def policies_dir(self, raw: dict, base_dir: Path) -> Path | None:
        if raw.get("policies_dir") is None:
            default = base_dir / "policies"
            return default if default.is_dir() else None
        value = self.get(raw, "policies_dir", "policies_dir", str, "")
        directory = (base_dir / value).resolve()
        if value and not directory.is_dir():
            self.problem(raw, "policies_dir", "policies_dir",
                         f"directory {directory} does not exist; create it or fix the path "
                         "(it is relative to the config file)")
            return None
        return directory if value else None

    def providers(self, raw: dict) -> dict[str, ProviderConfig]:
        section = self.mapping(raw, "providers", "providers", required=True)
        result: dict[str, ProviderConfig] = {}
        for name, spec in section.items():
            path = f"providers.{name}"
            if not isinstance(spec, dict):
                self.problem(section, name, path, "must be a mapping like {type: openai, api_key: env:OPENAI_API_KEY}")
                continue
            self.check_keys(spec, PROVIDER_KEYS, path)
            kind = self.get(spec, "type", f"{path}.type", str, "", required=True, choices=PROVIDER_KINDS)
            if not kind:
                continue
            base_url = self.get(spec, "base_url", f"{path}.base_url", str, "") or DEFAULT_BASE_URLS.get(kind)
            if kind == "azure" and not base_url:
                self.problem(spec, "type", path, "an azure provider needs base_url, "
                                                 "e.g. https://RESOURCE.openai.azure.com/openai")
            if base_url and not base_url.startswith(("http://", "https://")):
                self.problem(spec, "base_url", f"{path}.base_url", "must be an http:// or https:// URL")
            api_key = None
            if spec.get("api_key") is not None:
                text = self.get(spec, "api_key", f"{path}.api_key", str, "")
                api_key = self.secret(spec, "api_key", f"{path}.api_key", text) if text else None
            elif kind in ("anthropic", "gemini", "azure") or (
                    kind == "openai" and base_url == DEFAULT_BASE_URLS["openai"]):
                self.problem(spec, "type", path, f"a {kind} provider needs api_key, e.g. api_key: "
                                                 f"env:{kind.upper()}_API_KEY")
            result[name] = ProviderConfig(
                name=name, type=kind, api_key=Secret(api_key) if api_key else None,  # type: ignore[arg-type]
                base_url=base_url.rstrip("/") if base_url else None,
                api_version=self.get(spec, "api_version", f"{path}.api_version", str, "") or None,
                headers=self.headers(spec, f"{path}.headers"),
                max_connections=self.get(spec, "max_connections", f"{path}.max_connections", int, 1000,
                                         minimum=1),
            )
        return result

    def models(self, raw: dict, providers: dict[str, ProviderConfig]) -> dict[str, ModelConfig]:
        section = self.mapping(raw, "models", "models", required=True)
        result: dict[str, ModelConfig] = {}
        for alias, spec in section.items():
            path = f"models.{alias}"
            if not isinstance(alias, str) or not _NAME.match(alias):
                self.problem(section, alias, path, "a model alias is letters, digits and . _ : / -")
                continue
            if not isinstance(spec, dict):
                self.problem(section, alias, path, "must be a mapping with 'targets:'")
                continue
            self.check_keys(spec, MODEL_KEYS, path)
            targets = self.targets(spec, path, providers)
            retry_raw = self.mapping(spec, "retry", f"{path}.retry")
            self.check_keys(retry_raw, RETRY_KEYS, f"{path}.retry")
            retry = RetryConfig(
                attempts=self.get(retry_raw, "attempts", f"{path}.retry.attempts", int, 2, minimum=1),
                backoff_ms=self.get(retry_raw, "backoff_ms", f"{path}.retry.backoff_ms", float, 100.0, minimum=0),
                max_backoff_ms=self.get(retry_raw, "max_backoff_ms", f"{path}.retry.max_backoff_ms", float,
                                        2000.0, minimum=0),
                max_wait_s=self.get(retry_raw, "max_wait_s", f"{path}.retry.max_wait_s", float, 5.0, minimum=0),
            )
            circuit_raw = self.mapping(spec, "circuit", f"{path}.circuit")
            self.check_keys(circuit_raw, CIRCUIT_KEYS, f"{path}.circuit")
            circuit = CircuitConfig(
                failures=self.get(circuit_raw, "failures", f"{path}.circuit.failures", int, 5, minimum=1),
                failure_rate=self.get(circuit_raw, "failure_rate", f"{path}.circuit.failure_rate", float,
                                      0.5, minimum=0),
                window_s=self.get(circuit_raw, "window_s", f"{path}.circuit.window_s", float, 30.0, minimum=1),
                min_requests=self.get(circuit_raw, "min_requests", f"{path}.circuit.min_requests", int, 20,
                                      minimum=1),
                cooldown_s=self.get(circuit_raw, "cooldown_s", f"{path}.circuit.cooldown_s", float, 15.0,
                                    minimum=0),
            )
            result[alias] = ModelConfig(
                alias=alias, targets=tuple(targets), retry=retry, circuit=circuit,
                strategy=self.get(spec, "strategy", f"{path}.strategy", str, "ordered", choices=STRATEGIES),
                timeout_s=self.get(spec, "timeout_s", f"{path}.timeout_s", float, 600.0, minimum=0.001),
                connect_timeout_s=self.get(spec, "connect_timeout_s", f"{path}.connect_timeout_s", float, 10.0,
                                           minimum=0.001),
                first_token_timeout_s=self.optional_number(spec, "first_token_timeout_s",
                                                           f"{path}.first_token_timeout_s", minimum=0.001),
                idle_timeout_s=self.optional_number(spec, "idle_timeout_s", f"{path}.idle_timeout_s",
                                                    minimum=0.001),
            )
        return result

    def targets(self, spec: dict, path: str, providers: dict[str, ProviderConfig]) -> list[TargetConfig]:
        targets_raw = spec.get("targets")
        if not isinstance(targets_raw, list) or not targets_raw:
            self.problem(spec, "targets", f"{path}.targets",
                         "needs at least one target, e.g. targets: [{provider: openai, model: gpt-4o}]")
            return []
        targets = []
        for index, target in enumerate(targets_raw):
            where = f"{path}.targets[{index}]"
            if not isinstance(target, dict):
                self.problem(targets_raw, index, where, "must be a mapping {provider: NAME, model: MODEL}")
                continue
            self.check_keys(target, TARGET_KEYS, where)
            provider = self.get(target, "provider", f"{where}.provider", str, "", required=True)
            if provider and provider not in providers:
                known = ", ".join(providers) or "none defined"
                self.problem(target, "provider", f"{where}.provider",
                             f"unknown provider '{provider}'; define it under providers: (known: {known})")
            targets.append(TargetConfig(
                provider=provider,
                model=self.get(target, "model", f"{where}.model", str, "", required=True),
                weight=self.get(target, "weight", f"{where}.weight", float, 1.0, minimum=0),
                max_concurrent=self.get(target, "max_concurrent", f"{where}.max_concurrent", int, 0,
                                        minimum=1) or None,
                **{key: self.optional_number(target, key, f"{where}.{key}", minimum=0.001)
                   for key in TIMEOUT_KEYS},
            ))
        return targets

    def tenants(self, raw: dict, models: dict[str, ModelConfig]) -> dict[str, TenantConfig]:
        section = self.mapping(raw, "tenants", "tenants")
        result: dict[str, TenantConfig] = {}
        for name, spec in section.items():
            path = f"tenants.{name}"
            if not isinstance(name, str) or not _NAME.match(name):
                self.problem(section, name, path, "a tenant name is letters, digits and . _ : / -")
                continue
            spec = spec or {}
            if not isinstance(spec, dict):
                self.problem(section, name, path, "must be a mapping (keys:, budget:, limits:, policies:)")
                continue
            self.check_keys(spec, TENANT_KEYS, path)
            budget_raw = self.mapping(spec, "budget", f"{path}.budget")
            self.check_keys(budget_raw, ("usd_per_day", "usd_per_month"), f"{path}.budget")
            limits_raw = self.mapping(spec, "limits", f"{path}.limits")
            self.check_keys(limits_raw, ("rpm", "tpm", "max_concurrent", "models"), f"{path}.limits")
            self.lines[f"{path}.policies"] = line_of(spec, "policies")
            allowed_models = self.string_list(spec, "models", f"{path}.models")
            for alias in allowed_models or ():
                if alias not in models:
                    self.problem(spec, "models", f"{path}.models", f"unknown model alias '{alias}'")
            result[name] = TenantConfig(
                name=name,
                key_hashes=tuple(self.tenant_keys(spec, path)),
                budget=BudgetConfig(
                    usd_per_day=self.optional_number(budget_raw, "usd_per_day", f"{path}.budget.usd_per_day"),
                    usd_per_month=self.optional_number(budget_raw, "usd_per_month",
                                                       f"{path}.budget.usd_per_month"),
                ),
                limits=LimitsConfig(**{
                    key: self.get(limits_raw, key, f"{path}.limits.{key}", int, 0, minimum=1) or None
                    for key in ("rpm", "tpm", "max_concurrent")
                }),
                policies=tuple(self.string_list(spec, "policies", f"{path}.policies") or ()),
                models=tuple(allowed_models) if allowed_models is not None else None,
                model_limits=self.model_limits(limits_raw, f"{path}.limits.models", models),
            )
        return result

    def model_limits(self, limits_raw: dict, path: str, models: dict[str, ModelConfig]
                     ) -> dict[str, LimitsConfig]:
        section = self.mapping(limits_raw, "models", path)
        result = {}
        for alias, spec in section.items():
            where = f"{path}.{alias}"
            if alias not in models:
                self.problem(section, alias, where, f"unknown model alias '{alias}'")
                continue
            if not isinstance(spec, dict):
                self.problem(section, alias, where, "must be {rpm: N, tpm: N}")
                continue
            self.check_keys(spec, ("rpm", "tpm"), where)
            result[alias] = LimitsConfig(**{key: self.get(spec, key, f"{where}.{key}", int, 0, minimum=1) or None
                                            for key in ("rpm", "tpm")})
        return result

    def tenant_keys(self, spec: dict, path: str) -> list[str]:
        hashes = []
        owner = f"a key of tenant '{path.removeprefix('tenants.')}'"
        for index, key in enumerate(self.string_list(spec, "keys", f"{path}.keys") or []):
            where = f"{path}.keys[{index}]"
            if _SHA256.match(key):
                hashes.append(self.claim_key(key, owner, spec, "keys", where))
            elif key.startswith("env:"):
                value = self.secret(spec, "keys", where, key)
                if value:
                    hashes.append(self.claim_key(hash_key(value), owner, spec, "keys", where))
            else:
                self.problem(spec, "keys", where, "tenant keys are stored hashed: write 'sha256:<hex>' "
                                                  "(printf %s KEY | sha256sum) or mint one with "
                                                  "'lockgate keys create --tenant NAME'")
        return hashes

    def pricing(self, raw: dict, base_dir: Path) -> PricingConfig:
        section = self.mapping(raw, "pricing", "pricing")
        self.check_keys(section, ("file", "models"), "pricing")
        file_name = self.get(section, "file", "pricing.file", str, "")
        file = (base_dir / file_name).resolve() if file_name else None
        if file is not None and not file.is_file():
            self.problem(section, "file", "pricing.file", f"file {file} does not exist")
            file = None
        # Validated where prices are read (gateway.pricing), with the lines kept.
        prices = self.mapping(section, "models", "pricing.models")
        return PricingConfig(file=file, models=prices)

    # -- helpers -------------------------------------------------------------------------

    def claim_key(self, key_hash: str, owner: str, container: Any, key: str, where: str) -> str:
        """`key_hash`, recorded as `owner`'s; a problem if someone else listed it first.

        A key authenticates as exactly one identity: shared by two tenants it would silently
        become the last one's, and an admin key that is also a tenant key mixes both roles.
        """
        first = self.key_owners.setdefault(key_hash, (owner, where))
        if first[0] != owner:
            self.problem(container, key, where, f"the same key is already {first[0]} ({first[1]}); a key must "
                                                "belong to one tenant or be an admin key: give each its own")
        return key_hash


    def headers(self, spec: dict, path: str) -> tuple[tuple[str, str], ...]:
        """A `headers:` mapping of names to values (each value may be `env:NAME`)."""
        headers = self.mapping(spec, "headers", path)
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
            self.problem(spec, "headers", path, "must map header names to strings")
            return ()
        return tuple((key, self.secret(headers, key, f"{path}.{key}", value) or "") for key, value in headers.items())

    def secret(self, container: Any, key: Any, path: str, value: str) -> str | None:
        """Resolve `env:NAME` from the environment; other values are literal."""
        if not value.startswith("env:"):
            return value
        name = value[4:]
        resolved = self.environ.get(name)
        if not resolved:
            self.problem(container, key, path, f"environment variable {name} is not set; "
                                               f"export {name}=... before starting the gateway")
            return None
        return resolved
