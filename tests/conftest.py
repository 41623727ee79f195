"""Shared fixtures: a background loop with real servers, the fake OpenAI upstream, gateways."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from agents import set_tracing_disabled

from tests.fakes import openai_server, scripted_server
from tests.harness import BackgroundLoop, Gateway, Pair, Server, base_config, serving, start_app, start_gateway

pytest_plugins = ("tests.pg", "tests.services", "tests.processes")
set_tracing_disabled(True)  # the Agents SDK would try to export traces to OpenAI


@pytest.fixture(scope="session")
def bg() -> Iterator[BackgroundLoop]:
    loop = BackgroundLoop()
    yield loop
    loop.stop()


@pytest.fixture
def openai_upstream(bg: BackgroundLoop) -> Iterator[Server]:
    yield from serving(bg, openai_server.create_app())


@pytest.fixture
def scripted_upstream(bg: BackgroundLoop) -> Iterator[Server]:
    """`tests.fakes.scripted_server`: replies exactly as queued in `.app[QUEUE]`."""
    yield from serving(bg, scripted_server.create_app())


@pytest.fixture
def upstream_state(openai_upstream: Server) -> openai_server.State:
    return openai_upstream.app[openai_server.STATE]


@pytest.fixture
def gateway_factory(bg: BackgroundLoop, tmp_path: Path) -> Iterator[Callable[..., Gateway]]:
    started: list[Gateway] = []

    def factory(config: dict[str, Any], name: str = "gateway") -> Gateway:
        gateway = bg.run(start_gateway(config, tmp_path / name))
        started.append(gateway)
        return gateway

    yield factory
    for gateway in started:
        bg.run(gateway.server.runner.cleanup())


@pytest.fixture
def pair(bg: BackgroundLoop) -> Iterator[Pair]:
    primary = bg.run(start_app(openai_server.create_app()))
    backup = bg.run(start_app(openai_server.create_app()))
    yield Pair(primary.app[openai_server.STATE], backup.app[openai_server.STATE], primary, backup)
    for server in (primary, backup):
        bg.run(server.runner.cleanup())


@pytest.fixture
def gateway(gateway_factory: Callable[..., Gateway], openai_upstream: Server) -> Gateway:
    return gateway_factory(base_config(openai_upstream.url))
