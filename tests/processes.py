"""Gateways in their own processes, for tests of signals, workers and replicas."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class GatewayProcess:
    """`python -m gateway serve` in its own process, on a free port, with its own SQLite ledger."""

    def __init__(self, config: dict[str, Any], directory: Path, *extra: str) -> None:
        self.port = free_port()
        self.db = directory / "ledger.db"
        config.setdefault("storage", {}).setdefault("url", f"sqlite:///{self.db}")
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "gateway.yaml"
        path.write_text(yaml.safe_dump(config))
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = directory / "gateway.log"
        self.popen = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--config", str(path), "--port",
                                       str(self.port), *extra], stdout=self.log.open("w"), stderr=subprocess.STDOUT,
                                      text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        self.popen.kill()
        raise AssertionError(self.log.read_text())

    def ledger_rows(self, *, attempted: bool = False) -> int:
        """Rows in the ledger (`attempted`: only those of requests that made an upstream attempt)."""
        with sqlite3.connect(self.db) as db:
            where = " WHERE attempts > 0" if attempted else ""
            return db.execute(f"SELECT COUNT(*) FROM ledger{where}").fetchone()[0]

    def stop(self) -> int:
        self.popen.send_signal(signal.SIGTERM)
        code = self.popen.wait(timeout=60)
        if code != 0:  # pytest shows it with the failure: why the process did not exit cleanly
            print(f"exit code {code}; the end of {self.log}:\n{self.log.read_text()[-4000:]}")
        return code


@pytest.fixture
def process_factory(tmp_path: Path) -> Iterator[Any]:
    started: list[GatewayProcess] = []

    def start(config: dict[str, Any], *extra: str, name: str = "process") -> GatewayProcess:
        process = GatewayProcess(config, tmp_path / name, *extra)
        started.append(process)
        return process
    yield start
    for process in started:
        if process.popen.poll() is None:
            process.popen.kill()
            process.popen.wait()
