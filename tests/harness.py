"""Real servers for the tests: fake upstreams and the gateway, on real ports.

They run on an event loop in a background thread, so that the official SDKs, sync and
async, talk to them over real HTTP exactly as an application would.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from aiohttp import web

from gateway.app import create_app
from gateway.bundle import load_bundle
from gateway.runtime import Runtime
from gateway.server import make_runner
from tests.fakes import openai_server
from tests.fakes.openai_server import State

T = TypeVar("T")
TENANT_KEY = "lg-test-acme-key"
OTHER_TENANT_KEY = "lg-test-globex-key"
ADMIN_KEY = "lg-test-admin-key"


def sha(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


class BackgroundLoop:
    """An event loop on its own thread; `run()` executes a coroutine there and waits."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-servers", daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def call(self, function: Callable[[], Any]) -> None:
        self.loop.call_soon_threadsafe(function)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@dataclass
class Server:
    url: str
    runner: web.AppRunner

    @property
    def app(self) -> web.Application:
        return self.runner.app


async def start_app(app: web.Application, **runner_options: Any) -> Server:
    # Handlers die with their connection, and shutdown does not wait on a hanging one.
    runner_options = {"handler_cancellation": True, "shutdown_timeout": 1.0, **runner_options}
    return await start_runner(web.AppRunner(app, access_log=None, **runner_options))


def serving(bg: BackgroundLoop, app: web.Application) -> Iterator[Server]:
    """For a fixture: `app` served for the test's duration (`yield from serving(bg, app)`)."""
    server = bg.run(start_app(app))
    yield server
    bg.run(server.runner.cleanup())


async def start_runner(runner: web.AppRunner) -> Server:
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return Server(url=f"http://127.0.0.1:{port}", runner=runner)


@dataclass
class Pair:
    primary: State
    backup: State
    primary_server: Server
    backup_server: Server


TIMEOUT_S = 2.0
FIRST_TOKEN_S = 0.5


def fault_config(pair: Pair, *, with_backup: bool = True, **model: Any) -> dict[str, Any]:
    config = base_config(pair.primary_server.url)
    config["providers"]["backup"] = {"type": "openai", "base_url": f"{pair.backup_server.url}/v1",
                                     "api_key": openai_server.API_KEY}
    targets = [{"provider": "upstream", "model": "primary-model"}]
    if with_backup:
        targets.append({"provider": "backup", "model": "backup-model"})
    config["models"]["gpt-test"] = {"targets": targets, "retry": {"attempts": 2, "backoff_ms": 10},
                                    "timeout_s": TIMEOUT_S, "first_token_timeout_s": FIRST_TOKEN_S,
                                    "idle_timeout_s": FIRST_TOKEN_S, **model}
    return config


def base_config(upstream_url: str, **overrides: Any) -> dict[str, Any]:
    """A gateway.yaml (as a dict) with one OpenAI-compatible upstream and two tenants."""
    config: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": 0, "drain_timeout_s": 1},
        "admin_keys": [sha(ADMIN_KEY)],
        "providers": {"upstream": {"type": "openai", "base_url": f"{upstream_url}/v1",
                                   "api_key": openai_server.API_KEY}},
        "models": {
            "gpt-test": {"targets": [{"provider": "upstream", "model": "gpt-test-upstream"}]},
            "embed-test": {"targets": [{"provider": "upstream", "model": "text-embedding-test"}]},
        },
        "tenants": {
            "acme": {"keys": [sha(TENANT_KEY)]},
            "globex": {"keys": [sha(OTHER_TENANT_KEY)], "models": ["gpt-test"]},
        },
    }
    for key, value in overrides.items():
        config[key] = value
    return config


@dataclass
class Gateway:
    url: str
    runtime: Runtime
    server: Server
    config_path: Path

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"


async def start_gateway(config: dict[str, Any], directory: Path) -> Gateway:
    directory.mkdir(parents=True, exist_ok=True)
    config.setdefault("storage", {}).setdefault("url", f"sqlite:///{directory / 'lockgate.db'}")
    path = directory / "gateway.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    loaded, problems = load_bundle(path)
    assert loaded is not None, problems
    runtime = Runtime(loaded)
    runner = make_runner(create_app(runtime), loaded.config.server)
    server = await start_runner(runner)
    return Gateway(url=server.url, runtime=runtime, server=server, config_path=path)


def ledger_row(gateway: Gateway, bg: BackgroundLoop, timeout_s: float = 5.0) -> dict[str, Any]:
    """The gateway's one ledger row, read from its SQLite file once the request was metered."""
    deadline = time.monotonic() + timeout_s
    while True:
        bg.run(gateway.runtime.ledger_settled())
        with sqlite3.connect(gateway.config_path.parent / "lockgate.db") as db:
            db.row_factory = sqlite3.Row
            rows = [dict(row) for row in db.execute("select * from ledger")]
        if rows or time.monotonic() > deadline:
            assert len(rows) == 1, rows
            return rows[0]
        time.sleep(0.05)


def in_thread(work: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    """Run a blocking client call in a daemon thread; its result or exception lands in the box."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = work()
        except Exception as exc:
            box["error"] = exc
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box
