"""A real PostgreSQL for the tests: a throwaway cluster on a free port of 127.0.0.1.

The server binaries come from Debian's `postgresql` package (/usr/lib/postgresql/<N>/bin)
or from PATH; without them the PostgreSQL tests skip. PostgreSQL refuses to run as root,
so under root the cluster belongs to the `postgres` OS user the package creates. It uses
trust authentication and no fsync (the data is thrown away), and lives in a temporary
directory that is removed, with the server stopped, when the session ends or start-up fails.

Use it with `pytest_plugins = ("tests.pg",)`: `postgres_server` is the session's server,
`postgres_url` a fresh, empty database on it for one test.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

DEBIAN_BINARIES = Path("/usr/lib/postgresql")
NEEDED = ("initdb", "postgres", "pg_isready")
SUPERUSER = "postgres"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
START_ATTEMPTS = 3  # a free port can be taken by someone else before the server binds it
SERVER_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
                   "max_connections": "100"}


@dataclass(frozen=True, slots=True)
class PostgresServer:
    port: int
    host: str = "127.0.0.1"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{database}"

    async def create_database(self) -> str:
        """A new, empty database; its URL."""
        name = f"lockgate_{uuid.uuid4().hex[:16]}"
        connection = await asyncpg.connect(self.url())
        try:
            await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()
        return self.url(name)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with running_postgres() as server:
        yield server


@pytest.fixture
async def postgres_url(postgres_server: PostgresServer) -> str:
    return await postgres_server.create_database()


@contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """Initialise a cluster, start it, yield it; stop it and delete its files however we leave."""
    binaries = server_binaries()
    if binaries is None:
        pytest.skip("PostgreSQL server binaries not found: apt-get install postgresql")
    owner = cluster_owner()
    workdir = Path(tempfile.mkdtemp(prefix="lockgate-pg-"))
    try:
        if owner is not None:
            shutil.chown(workdir, user=owner, group=owner)
        _initdb(binaries, workdir, owner)
        server, port = _start(binaries, workdir, owner)
        try:
            yield PostgresServer(port=port)
        finally:
            _stop(server)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def server_binaries() -> Path | None:
    """The directory holding initdb, postgres and pg_isready: PATH first, else Debian's newest."""
    on_path = shutil.which("postgres")
    debian = sorted(DEBIAN_BINARIES.glob("*/bin"), key=lambda bindir: _major(bindir.parent.name))
    # PATH may hold only symlinks to some of them; the real directory has them all.
    candidates = [*([Path(on_path).resolve().parent] if on_path else []), *reversed(debian)]
    return next((bindir for bindir in candidates if all((bindir / name).is_file() for name in NEEDED)), None)


def _major(version: str) -> int:
    return int(version) if version.isdigit() else 0


def cluster_owner() -> str | None:
    """The OS user to run the server as: `postgres` under root (which PostgreSQL refuses), else us."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SUPERUSER)
    except KeyError:
        pytest.skip("running as root without a 'postgres' OS user: apt-get install postgresql creates it")
    return SUPERUSER


def _initdb(binaries: Path, workdir: Path, owner: str | None) -> None:
    command = [str(binaries / "initdb"), "-D", str(workdir / "data"), "-U", SUPERUSER, "--auth=trust",
               "--encoding=UTF8", "--locale=C", "--no-sync"]
    done = subprocess.run(command, user=owner, cwd=workdir, capture_output=True, text=True, timeout=120,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"initdb failed ({done.returncode}):\n{done.stdout}{done.stderr}")


def _start(binaries: Path, workdir: Path, owner: str | None) -> tuple[subprocess.Popen[bytes], int]:
    log = workdir / "server.log"
    for attempt in range(1, START_ATTEMPTS + 1):
        port = _free_port()
        command = [str(binaries / "postgres"), "-D", str(workdir / "data"), "-p", str(port), "-h", "127.0.0.1",
                   "-k", str(workdir)]
        for name, value in SERVER_SETTINGS.items():
            command += ["-c", f"{name}={value}"]
        with log.open("ab") as output:
            # Started directly (not through runuser) so that this pid is the postmaster we stop.
            server = subprocess.Popen(command, user=owner, cwd=workdir, stdout=output, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL)
        try:
            if _wait_ready(binaries, server, port):
                return server, port
        except BaseException:
            _stop(server)
            raise
        if attempt == START_ATTEMPTS or "could not bind" not in log.read_text(errors="replace"):
            raise RuntimeError(f"PostgreSQL did not start:\n{_tail(log)}")
    raise AssertionError("unreachable")


def _wait_ready(binaries: Path, server: subprocess.Popen[bytes], port: int) -> bool:
    """True once the server accepts connections; False if it exited; TimeoutError if neither in time."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            return False
        probe = subprocess.run([str(binaries / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port),
                                "-U", SUPERUSER, "-d", "postgres", "-t", "1"], check=False)
        if probe.returncode == 0:
            return True
        time.sleep(0.1)
    raise TimeoutError(f"PostgreSQL was not ready within {START_TIMEOUT_S:.0f}s")


def _stop(server: subprocess.Popen[bytes]) -> None:
    """Fast shutdown (SIGINT); immediate (SIGQUIT) if that hangs; SIGKILL as the last resort."""
    for stop_signal, patience in ((signal.SIGINT, STOP_TIMEOUT_S), (signal.SIGQUIT, 5.0)):
        if server.poll() is not None:
            return
        server.send_signal(stop_signal)
        try:
            server.wait(patience)
            return
        except subprocess.TimeoutExpired:
            continue
    server.kill()
    server.wait()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
