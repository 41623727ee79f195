"""The processes a benchmark starts: launched in their own session, measured, always stopped.

Each process is started in a new session, so that its whole tree (a gateway's workers
included) can be found in /proc by session id, measured (CPU seconds, RSS, peak RSS)
and stopped by process group, and nothing else. `Processes` remembers everything it
started and stops it all on exit, on an error, and on SIGINT/SIGTERM/SIGHUP.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Everything is local: never go through a proxy from the environment.
LOCAL_ONLY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True, slots=True)
class Usage:
    cpu_s: float
    """User + system CPU seconds of the whole tree so far."""
    rss_mb: float
    peak_rss_mb: float
    """Sum over the tree of each process's peak RSS (VmHWM)."""


def session_pids(session: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[3]) == session:  # field 6 of stat: the session id
            pids.append(int(entry))
    return pids


def tree_usage(session: int) -> Usage:
    ticks = rss_kb = peak_kb = 0
    for pid in session_pids(session):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue  # exited meanwhile
        fields = stat[stat.rindex(")") + 2:].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                rss_kb += int(line.split()[1])
            elif line.startswith("VmHWM:"):
                peak_kb += int(line.split()[1])
    return Usage(cpu_s=ticks / CLOCK_TICKS, rss_mb=rss_kb / 1024, peak_rss_mb=peak_kb / 1024)


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def answers(url: str, body: bytes | None, headers: dict[str, str], timeout: float = 5.0) -> bool:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST" if body else "GET")
    try:
        with LOCAL_ONLY.open(request, timeout=timeout) as response:
            response.read()
            return response.status == 200
    except Exception:
        return False


class Proc:
    def __init__(self, name: str, argv: list[str], *, cpus: str | None, log: Path, cwd: Path | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self.log = log
        if cpus is not None:
            argv = ["taskset", "-c", cpus, *argv]  # taskset execs: the pid stays the process's own
        self._log_file = log.open("wb")
        self.popen = subprocess.Popen(argv, stdout=self._log_file, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True, cwd=cwd,
                                      env={**os.environ, **(env or {})})
        self.pid = self.popen.pid  # also its session id and process group id

    def alive(self) -> bool:
        return self.popen.poll() is None

    def usage(self) -> Usage:
        return tree_usage(self.pid)

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_ready(self, url: str, body: bytes | None, headers: dict[str, str], timeout: float = 60) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited while starting:\n{self.tail()}")
            if answers(url, body, headers):
                return time.monotonic() - started
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not answer {url} within {timeout:g} s:\n{self.tail()}")

    def stop(self) -> None:
        """SIGTERM to the group, then SIGKILL; also any leftover of the session."""
        for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                continue
            if not session_pids(self.pid):
                break
            time.sleep(0.3)
        for pid in session_pids(self.pid):  # a child that left the group but not the session
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._log_file.close()


class Interrupted(Exception):
    pass


class Processes:
    """Everything a run started; `with Processes(...) as procs:` stops it all, whatever happens."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.running: list[Proc] = []
        logs.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, argv: list[str], *, cpus: str | None = None, cwd: Path | None = None,
              env: dict[str, str] | None = None) -> Proc:
        proc = Proc(name, argv, cpus=cpus, log=self.logs / f"{name}.log", cwd=cwd, env=env)
        self.running.append(proc)
        return proc

    def stop(self, proc: Proc) -> None:
        if proc in self.running:
            self.running.remove(proc)
            proc.stop()

    def stop_all(self) -> None:
        for proc in reversed(list(self.running)):
            self.stop(proc)

    def __enter__(self) -> Processes:
        def interrupt(signum: int, frame: FrameType | None) -> None:
            raise Interrupted(f"signal {signal.Signals(signum).name}")

        self._previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM,
                                                                         signal.SIGHUP)}
        return self

    def __exit__(self, *exc: object) -> None:
        # Signals are ignored while stopping: a second Ctrl-C must not leave orphans.
        for sig in self._previous:
            signal.signal(sig, signal.SIG_IGN)
        try:
            self.stop_all()
        finally:
            for sig, handler in self._previous.items():
                signal.signal(sig, handler)
