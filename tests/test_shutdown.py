"""Graceful shutdown and workers, on a real `lockgate serve` process: SIGTERM lets streams
finish (or ends them with an error event after the drain timeout), loses no ledger row,
and exits 0; `--workers 2` shares one port and sums its metrics."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import OpenAI

from gateway.exchange import Exchange, new_request_id
from tests.fakes.openai_server import Script, State
from tests.harness import ADMIN_KEY, TENANT_KEY, BackgroundLoop, Gateway, Server, base_config
from tests.policy_setup import policy_config


def stream(url: str, results: list[list[str]]) -> None:
    lines: list[str] = []
    try:
        with httpx.stream("POST", f"{url}/v1/chat/completions", timeout=60,
                          headers={"Authorization": f"Bearer {TENANT_KEY}"},
                          json={"model": "gpt-test", "stream": True, "messages": [{"role": "user", "content": "x"}]}
                          ) as response:
            lines.extend(line for line in response.iter_lines() if line.startswith("data:"))
    except httpx.HTTPError as exc:
        lines.append(f"transport error: {exc!r}")
    results.append(lines)


def start_streams(url: str, count: int) -> tuple[list[threading.Thread], list[list[str]]]:
    results: list[list[str]] = []
    threads = [threading.Thread(target=stream, args=(url, results)) for _ in range(count)]
    for thread in threads:
        thread.start()
    return threads, results


def test_sigterm_lets_streams_finish_and_loses_no_row(process_factory: Any, openai_upstream: Server,
                                                      upstream_state: State) -> None:
    config = base_config(openai_upstream.url)
    config["server"]["drain_timeout_s"] = 20
    gateway = process_factory(config)
    upstream_state.queue += [Script(content=" ".join(["word"] * 20), text_pieces=20, chunk_delay_s=0.05)
                             for _ in range(8)]
    threads, results = start_streams(gateway.url, 8)
    time.sleep(0.4)
    assert gateway.stop() == 0
    for thread in threads:
        thread.join(30)
    assert len(results) == 8
    assert all(lines[-1] == "data: [DONE]" for lines in results), [lines[-2:] for lines in results]
    assert gateway.ledger_rows() == len(upstream_state.requests) == 8


def test_streams_past_the_drain_timeout_end_with_an_error_event(process_factory: Any, openai_upstream: Server,
                                                                upstream_state: State) -> None:
    config = base_config(openai_upstream.url)
    config["server"]["drain_timeout_s"] = 0.5
    gateway = process_factory(config)
    upstream_state.queue += [Script(content=" ".join(["word"] * 40), text_pieces=40, chunk_delay_s=0.2)
                             for _ in range(3)]
    threads, results = start_streams(gateway.url, 3)
    time.sleep(0.6)
    assert gateway.stop() == 0
    for thread in threads:
        thread.join(30)
    for lines in results:
        assert "shutting down" in lines[-1] and '"error"' in lines[-1], lines[-2:]
    assert gateway.ledger_rows() == len(upstream_state.requests) == 3


def test_sigterm_under_load_loses_no_ledger_row(process_factory: Any, openai_upstream: Server,
                                                upstream_state: State) -> None:
    config = base_config(openai_upstream.url)
    config["server"]["drain_timeout_s"] = 10
    gateway = process_factory(config)
    upstream_state.queue += [Script(content="ok", delay_s=0.05) for _ in range(400)]
    statuses: list[int] = []

    def hammer() -> None:
        with httpx.Client(timeout=30) as http:
            for _ in range(100):
                try:
                    statuses.append(http.post(f"{gateway.url}/v1/chat/completions",
                                              headers={"Authorization": f"Bearer {TENANT_KEY}"},
                                              json={"model": "gpt-test", "messages": [{"role": "user",
                                                                                       "content": "x"}]}
                                              ).status_code)
                except httpx.HTTPError:
                    return  # the gateway stopped accepting
    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    assert gateway.stop() == 0
    for thread in threads:
        thread.join(30)
    assert statuses.count(200) > 0
    # Every request that reached the upstream is in the ledger. (A request the shutdown caught
    # before its attempt has a row too, without one: the two counts may differ by those.)
    assert gateway.ledger_rows(attempted=True) >= len(upstream_state.requests) > 0
    assert gateway.ledger_rows(attempted=True) <= len(upstream_state.requests) + 4  # at most one per client


def test_two_workers_share_the_port_and_sum_metrics(process_factory: Any, openai_upstream: Server,
                                                    tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))
    gateway = process_factory(base_config(openai_upstream.url), "--workers", "2")
    with httpx.Client(timeout=30) as http:  # new connections, spread over the workers by the kernel
        for _ in range(40):
            response = httpx.post(f"{gateway.url}/v1/chat/completions",
                                  headers={"Authorization": f"Bearer {TENANT_KEY}", "Connection": "close"},
                                  json={"model": "gpt-test", "messages": [{"role": "user", "content": "x"}]})
            assert response.status_code == 200
        text = http.get(f"{gateway.url}/metrics").text
    total = sum(float(line.split()[-1]) for line in text.splitlines()
                if line.startswith("lockgate_requests_total{") and 'tenant="acme"' in line)
    assert total == 40
    writers = {path.name.split("_")[-1] for path in metrics_dir.glob("counter_*.db")}
    assert len(writers) >= 2  # both workers served requests
    assert gateway.stop() == 0


def test_sigterm_during_a_worker_restart_still_stops_everything(process_factory: Any, openai_upstream: Server,
                                                                tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                ) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    gateway = process_factory(base_config(openai_upstream.url), "--workers", "2")
    children = subprocess.run(["pgrep", "-P", str(gateway.popen.pid)], capture_output=True, text=True).stdout.split()
    # The workers, not multiprocessing's resource tracker.
    workers = [int(pid) for pid in children if "resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_text()]
    assert len(workers) == 2
    os.kill(workers[0], signal.SIGKILL)  # a worker dies: the supervisor waits a moment to restart it ...
    time.sleep(0.5)
    assert gateway.stop() == 0  # ... and a SIGTERM meanwhile ends the supervisor, with no new worker
    time.sleep(1.5)
    with pytest.raises(httpx.ConnectError):  # nobody is left listening
        httpx.get(f"{gateway.url}/healthz", timeout=2)


def test_a_failing_last_ledger_flush_still_closes_everything(gateway_factory: Any, openai_upstream: Server,
                                                              bg: BackgroundLoop, tmp_path: Path) -> None:
    gateway = gateway_factory(base_config(openai_upstream.url), name="doomed")
    OpenAI(base_url=gateway.base_url, api_key=TENANT_KEY, max_retries=0).chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "x"}])
    provider = gateway.runtime.snapshot.routes["gpt-test"].targets[0].provider
    gateway.runtime.ledger.append(gateway.runtime.meter.row(_finished(gateway), None, None, 0.0, 0.0))
    bg.run(gateway.runtime.store.close())
    shutil.rmtree(tmp_path / "doomed")  # the database is gone: the last flush fails
    bg.run(gateway.runtime.stop())  # ... and the rest of the shutdown still runs
    assert provider._session is None or provider._session.closed  # type: ignore[attr-defined]


def _finished(gateway: Gateway) -> Exchange:
    exchange = Exchange(request_id=new_request_id(), api="chat")
    exchange.tenant = gateway.runtime.snapshot.config.tenants["acme"]
    return exchange


def test_a_hold_ended_by_the_drain_timeout_says_so(process_factory: Any, openai_upstream: Server,
                                                   tmp_path: Path) -> None:
    config = policy_config(openai_upstream.url, tmp_path / "config")
    config["server"]["drain_timeout_s"] = 0.5
    gateway = process_factory(config)
    answers: list[httpx.Response] = []
    asking = threading.Thread(target=lambda: answers.append(httpx.post(
        f"{gateway.url}/v1/chat/completions", headers={"Authorization": f"Bearer {TENANT_KEY}"}, timeout=30,
        json={"model": "gpt-test", "messages": [{"role": "user", "content": "reset my password"}]})))
    asking.start()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not httpx.get(
            f"{gateway.url}/admin/approvals", headers={"Authorization": f"Bearer {ADMIN_KEY}"}).json()["data"]:
        time.sleep(0.05)
    assert gateway.stop() == 0
    asking.join(30)
    assert answers[0].status_code == 503  # the shutdown, not a human, ended it ...
    with sqlite3.connect(gateway.db) as db:
        status, by, reason = db.execute("SELECT status, decided_by, reason FROM approvals").fetchone()
    assert (status, by) == ("expired", "lockgate")
    assert "shut down" in reason and "client" not in reason  # ... and the approval says so
