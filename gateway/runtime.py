"""The running gateway: the current config snapshot and the long-lived services.

A `Snapshot` is everything derived from one version of the config (key ring, routes,
prices, policies); a reload builds a complete new one and swaps it in one assignment,
so a request sees one version from start to end and a bad reload changes nothing.
Services that outlive snapshots (provider connection pools, circuit breakers, the
store, the ledger, metrics) are kept and reused across reloads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from aiohttp import web

from gateway import errors
from gateway.approval_bus import RedisApprovalBus
from gateway.approvals import Approvals
from gateway.auth import KeyRing, digest, presented_key
from gateway.batch import BatchWriter
from gateway.bundle import Bundle, load_bundle
from gateway.circuit import OPEN, CircuitBreaker
from gateway.config import Config, ProviderConfig, TenantConfig
from gateway.exchange import Exchange
from gateway.guard import AuthFailures
from gateway.limits import Admission, Quotas, open_backend
from gateway.metering import Meter
from gateway.metrics import Metrics
from gateway.policy import PolicySet
from gateway.pricing import PriceTable
from gateway.reloader import watch
from gateway.router import Route, Router, Target, target_timeouts
from gateway.store import AuditEvent, LedgerRow, Store, open_store
from gateway.telemetry import install_telemetry
from gateway.yamlsrc import Problem
from providers.base import Provider
from providers.registry import build_provider

log = logging.getLogger("lockgate.runtime")
KEY_REFRESH_S = 5.0
KEY_MISS_TTL_S = 1.0
MAX_REMEMBERED_MISSES = 10_000


@dataclass(frozen=True, slots=True)
class ReloadResult:
    ok: bool
    version: str
    problems: list[Problem]
    warnings: list[str] = field(default_factory=list)
    """Accepted, but worth a look (e.g. a policy every tenant relied on is gone)."""

    def as_json(self) -> dict[str, Any]:
        return {"status": "ok" if self.ok else "error", "version": self.version,
                "errors": [{"file": p.file, "line": p.line, "rule": p.rule, "key": p.key, "message": p.message}
                           for p in self.problems], "warnings": self.warnings}


def lost_policies(old: PolicySet, new: PolicySet, config: Config) -> list[str]:
    """Policies the running set has and the new one lacks while tenants still rely on them: a
    renamed or deleted file silently leaves those tenants with fewer rules."""
    relied = {"default", *(name for tenant in config.tenants.values() for name in tenant.policies)}
    return [f"policy '{name}' is gone (tenants relied on it); their requests now pass without its rules"
            for name in sorted(set(old.names()) - set(new.names())) if name in relied]


def restart_only_changes(old: Config, new: Config) -> list[str]:
    """Settings a running process cannot change (the socket and its HTTP parser, the storage)."""
    changed = []
    for name in ("host", "port", "header_timeout_s", "max_header_bytes"):
        if getattr(old.server, name) != getattr(new.server, name):
            changed.append(f"server.{name}")
    if old.storage != new.storage:
        changed.append("storage")
    for name in ("traces", "usage_export"):
        if getattr(old.telemetry, name) != getattr(new.telemetry, name):
            changed.append(f"telemetry.{name}")
    return changed


@dataclass(frozen=True, slots=True)
class Snapshot:
    config: Config
    keyring: KeyRing
    routes: dict[str, Route]
    prices: PriceTable
    policies: PolicySet
    version: str
    """The bundle's version (config, policies and prices); approvals record the policy
    set's own version."""


class Runtime:
    def __init__(self, bundle: Bundle, *, metrics: Metrics | None = None, store: Store | None = None) -> None:
        config = bundle.config
        self.metrics = metrics or Metrics()
        self.store = store or open_store(config.storage.url)
        self.router = Router(self.metrics)
        self.ledger: BatchWriter[LedgerRow] = BatchWriter(self.store.write_ledger, "ledger")
        self.audit: BatchWriter[AuditEvent] = BatchWriter(self.store.write_audit, "audit")
        self.approvals = Approvals(self.store, self.metrics)
        self.approval_bus = RedisApprovalBus(config.storage.redis_url) if config.storage.redis_url else None
        self._providers: dict[str, tuple[ProviderConfig, Provider]] = {}
        self._retired: set[Provider] = set()
        """Providers a reload replaced, closed once no request can still be using them."""
        self._targets: dict[tuple[str, str], Target] = {}
        self._stored_keys: dict[str, str] = {}
        self._misses: dict[str, float] = {}
        self._tasks: list[asyncio.Task[Any]] = []
        self.snapshot = self.build_snapshot(bundle)
        self.meter = Meter(self.metrics, self.snapshot.prices, self.ledger)
        self.limit_backend = open_backend(config.storage.redis_url)
        self.admission = Admission(self, Quotas(self.limit_backend, self.metrics, self._ledger_spend))
        self.started_at = time.time()
        self.auth_failures = AuthFailures(config.server.auth_failures_per_minute)
        self._reload_lock = asyncio.Lock()
        self._background: set[asyncio.Task[Any]] = set()
        self._estimating: set[asyncio.Task[None]] = set()
        self._requests: set[asyncio.Task[Any]] = set()
        self._stopped = False
        self.observers: list[Callable[[Exchange], None]] = []
        """Called with every finished request (request logs, traces); must be cheap and never raise."""
        self.draining = False
        self.drain_expired = False
        """The drain timeout passed: requests still in flight are being ended (cancelled)."""

    # -- snapshots -----------------------------------------------------------------------

    def build_snapshot(self, bundle: Bundle) -> Snapshot:
        config = bundle.config
        for gone in [name for name in self._providers if name not in config.providers]:
            self._retire(self._providers.pop(gone)[1])  # removed from the config: closed once unused
        providers = {name: self._provider(spec) for name, spec in config.providers.items()}
        routes = {alias: Route(alias=alias, targets=[self._target(model, target, providers[target.provider])
                                                      for target in model.targets],
                               retry=model.retry, strategy=model.strategy)
                  for alias, model in config.models.items()}
        used = {target.key for route in routes.values() for target in route.targets}
        for key in [key for key in self._targets if key not in used]:
            del self._targets[key]
            self.metrics.circuit_open.remove(*key)  # no stale circuit in /metrics or alerts
        keyring = KeyRing(config.tenants, config.admin_key_hashes, self._stored_keys)
        return Snapshot(config=config, keyring=keyring, routes=routes, prices=bundle.prices,
                        policies=bundle.policies, version=bundle.version)

    def _provider(self, spec: ProviderConfig) -> Provider:
        known = self._providers.get(spec.name)
        if known is not None and known[0] == spec:
            return known[1]
        if known is not None:
            self._retire(known[1])
        provider = build_provider(spec)
        self._providers[spec.name] = (spec, provider)
        return provider

    def _retire(self, provider: Provider) -> None:
        """A reload replaced this provider: close its connection pool once the requests
        still using it are done (no attempt outlives the longest attempt timeout)."""
        longest = max((target.timeouts.total_s for target in self.targets()), default=600.0)
        self._retired.add(provider)

        async def close_later() -> None:
            await asyncio.sleep(longest + 5)
            if provider in self._retired:
                self._retired.discard(provider)
                await provider.close()
        # Not `background()`: a shutdown must not wait for this timer (`stop` closes them all).
        task = asyncio.get_running_loop().create_task(close_later(), name="lockgate-retire")
        self._tasks.append(task)
        task.add_done_callback(lambda done: self._tasks.remove(done) if done in self._tasks else None)

    def _target(self, model: Any, spec: Any, provider: Provider) -> Target:
        key = (provider.name, spec.model)
        known = self._targets.get(key)
        if known is not None and known.provider is provider:
            # The same target keeps its state (circuit, latency, requests in flight) and takes
            # the new settings: requests holding a slot of an old cap release that one.
            if spec.max_concurrent != known.config.max_concurrent:
                known.slots = asyncio.Semaphore(spec.max_concurrent) if spec.max_concurrent else None
            known.config, known.timeouts = spec, target_timeouts(model, spec)
            known.breaker.config = model.circuit
            return known
        gauge = self.metrics.circuit_open(provider.name, spec.model)
        breaker = CircuitBreaker(model.circuit, on_change=lambda state: gauge.set(1 if state == OPEN else 0))
        gauge.set(0)
        target = Target(provider=provider, config=spec, timeouts=target_timeouts(model, spec), breaker=breaker,
                        slots=asyncio.Semaphore(spec.max_concurrent) if spec.max_concurrent else None)
        self._targets[key] = target
        return target

    def apply(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self.meter.prices = snapshot.prices
        self.auth_failures.limit = snapshot.config.server.auth_failures_per_minute

    async def reload(self) -> ReloadResult:
        """Load and validate everything again; swap it in only if all of it is valid."""
        async with self._reload_lock:
            bundle, problems = await asyncio.to_thread(load_bundle, self.snapshot.config.path)
            if bundle is None:
                self.metrics.reload_failures.inc()
                for problem in problems:
                    log.error("reload refused, keeping version %s: %s", self.snapshot.version, problem)
                return ReloadResult(False, self.snapshot.version, problems)
            for setting in restart_only_changes(self.snapshot.config, bundle.config):
                log.warning("%s changed: it takes effect after a restart", setting)
            warnings = lost_policies(self.snapshot.policies, bundle.policies, bundle.config)
            for warning in warnings:
                log.warning("reloaded, but %s", warning)
            self.apply(self.build_snapshot(bundle))
            await self.admission.quotas.seed(bundle.config.tenants, self.store, time.time())
            log.info("reloaded: version %s", bundle.version)
            return ReloadResult(True, bundle.version, [], warnings)

    def targets(self) -> Iterable[Target]:
        seen: set[int] = set()
        for route in self.snapshot.routes.values():
            for target in route.targets:
                if id(target) not in seen:
                    seen.add(id(target))
                    yield target

    # -- per request ---------------------------------------------------------------------

    async def authenticate(self, request: web.Request) -> TenantConfig:
        key = presented_key(request.headers)
        tenant = self.snapshot.keyring.tenant(key)
        if tenant is not None:
            return tenant
        # Only what fails is throttled: behind a proxy every client shares its address, and
        # one client with a wrong key must not lock out the rest (guessing a 256-bit key is
        # hopeless either way). A throttled address gets no store lookups.
        self.auth_failures.check(request.remote)
        if key:
            try:
                tenant = await self._minted_since_refresh(key)
            except Exception as exc:
                # A key minted since the last refresh cannot be looked up: unknown, not a bug.
                log.warning("key store unavailable: %s", exc)
                raise errors.service_unavailable("Keys cannot be checked right now (the store is unavailable); "
                                                 "retry shortly.", code="store_unavailable") from None
        if tenant is None:
            self.auth_failures.failed(request.remote)
            raise errors.invalid_api_key()
        return tenant

    async def _minted_since_refresh(self, key: str) -> TenantConfig | None:
        """A key minted by `lockgate keys create` after the last refresh works at once."""
        key_hash = digest(key)
        now = time.monotonic()
        if self._misses.get(key_hash, 0.0) > now:
            return None
        record = await self.store.find_key(key_hash)
        if record is None or record.revoked_at is not None or record.tenant not in self.snapshot.config.tenants:
            if len(self._misses) > MAX_REMEMBERED_MISSES:
                self._misses.clear()
            self._misses[key_hash] = now + KEY_MISS_TTL_S
            return None
        self._use_stored_keys({**self._stored_keys, key_hash: record.tenant})
        return self.snapshot.keyring.tenant(key)

    def require_admin(self, request: web.Request) -> None:
        """Admin endpoints: 401 without a valid key, 403 for a tenant key."""
        key = presented_key(request.headers)
        keyring = self.snapshot.keyring
        if keyring.is_admin(key):
            return
        self.auth_failures.check(request.remote)
        self.auth_failures.failed(request.remote)
        if keyring.tenant(key) is not None:
            raise errors.admin_only()
        raise errors.invalid_api_key("This endpoint needs an admin key: send 'Authorization: Bearer <admin key>'.")

    def track(self, task: asyncio.Task[Any] | None) -> None:
        """Remember a request's task, so a drain that runs out of time can end it cleanly."""
        if task is not None:
            self._requests.add(task)
            task.add_done_callback(self._requests.discard)

    async def drain(self, timeout_s: float) -> None:
        """Let in-flight requests finish for up to `timeout_s`, then end the rest with an error."""
        self.draining = True
        deadline = time.monotonic() + timeout_s
        while self._requests and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self._requests:
            log.warning("drain timeout: ending %d requests still in flight", len(self._requests))
            self.drain_expired = True
            for task in list(self._requests):
                task.cancel()
            await asyncio.wait(list(self._requests), timeout=5)

    def finished(self, exchange: Exchange) -> None:
        """A request is over: meter it, then tell the observers (after estimating its usage
        in a thread when the upstream reported none)."""
        if exchange.finished is None:
            exchange.finished = time.perf_counter()  # one end time for metrics, ledger, logs and traces
        if self.meter.needs_estimate(exchange):
            task = asyncio.ensure_future(self._finish_estimated(exchange))
            self._estimating.add(task)
            task.add_done_callback(self._estimating.discard)
        else:
            self._report(exchange)

    async def _finish_estimated(self, exchange: Exchange) -> None:
        try:
            await self.meter.estimate_off_loop(exchange)
        finally:
            self._report(exchange)

    async def metered(self) -> None:
        """Wait until every finished request is in the ledger's buffer (estimates take a thread)."""
        if self._estimating:
            await asyncio.gather(*self._estimating, return_exceptions=True)

    async def _ledger_spend(self, tenant: str, since: float) -> float:
        """What the ledger says `tenant` spent since `since`, this process's last rows included."""
        await self.ledger_settled()
        return await self.store.spend_since(tenant, since)

    async def ledger_settled(self) -> None:
        """Every finished request is in the store: for readers of the ledger (usage, requests)."""
        await self.metered()
        await self.ledger.flush()

    def _report(self, exchange: Exchange) -> None:
        self.meter.record(exchange)
        for observer in self.observers:
            try:
                observer(exchange)
            except Exception:
                log.exception("a request observer failed")

    def background(self, coroutine: Any) -> None:
        """Run work that must not delay the request (reviews, notifications); errors are logged."""
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background work failed: %r", task.exception())

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        await self.store.open()
        await self.refresh_keys()
        await self.admission.quotas.seed(self.snapshot.config.tenants, self.store, time.time())
        self._stop_telemetry = install_telemetry(self)
        self.ledger.start()
        self.audit.start()
        await self.approvals.start()
        if self.approval_bus is not None:
            bus = self.approval_bus
            self.approvals.on_decided.append(lambda record: bus.publish(record.id))
            bus.listen(self.approvals.wake)
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._refresh_keys_forever(), name="lockgate-keys"))
        self._tasks.append(loop.create_task(watch(self), name="lockgate-reload"))

    async def stop(self) -> None:
        """Flush and release everything; a second call does nothing."""
        if self._stopped:
            return
        self._stopped = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.metered()
        await self.approvals.stop()
        if self.approval_bus is not None:
            await self.approval_bus.close()
        try:
            await self.ledger.stop()
        except Exception:  # the store is down: still drain exports, traces and the audit log
            log.exception("the ledger's last flush failed; %d rows not stored", self.ledger.pending)
        await self._stop_telemetry()  # after the ledger's last flush, so its rows are exported too
        await self.audit.stop()
        await self.limit_backend.close()
        for provider in [*self._retired, *(provider for _, provider in self._providers.values())]:
            await provider.close()
        self._retired.clear()
        await self.store.close()

    async def refresh_keys(self) -> None:
        records = await self.store.list_keys()
        self._use_stored_keys({record.key_hash: record.tenant for record in records if record.revoked_at is None})

    def _use_stored_keys(self, stored: dict[str, str]) -> None:
        if stored != self._stored_keys:
            self._stored_keys = stored
            config = self.snapshot.config
            keyring = KeyRing(config.tenants, config.admin_key_hashes, stored)
            self.snapshot = replace(self.snapshot, keyring=keyring)

    async def _refresh_keys_forever(self) -> None:
        while True:
            await asyncio.sleep(KEY_REFRESH_S)
            try:
                await self.refresh_keys()
            except Exception:
                log.exception("refreshing stored keys failed")
