"""`lockgate serve --workers N`: N processes sharing one port (SO_REUSEPORT).

The parent only supervises: it starts the workers, restarts one that dies unexpectedly,
and passes SIGTERM/SIGINT/SIGHUP on. Metrics use Prometheus multiprocess mode, so
`/metrics` on any worker sums every worker. Counters that limits and budgets keep in
memory are per worker: with several workers, set `storage.redis_url` so they are shared.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

log = logging.getLogger("lockgate.workers")
RESTART_BACKOFF_S = 1.0
MAX_RESTART_BACKOFF_S = 30.0
QUICK_EXIT_S = 10.0
"""A worker that dies sooner than this after its start failed to start (config, store)."""
GIVE_UP_AFTER = 3
"""When every worker has failed to start this many times in a row, the supervisor exits 1
(an orchestrator then restarts it with its own backoff) instead of looping forever."""


def _worker(config_path: str | None, host: str, port: int, log_level: str) -> None:
    from gateway.bundle import load_bundle
    from gateway.logsetup import configure_logging, stop_logging
    from gateway.server import run

    bundle, problems = load_bundle(Path(config_path) if config_path else None)
    if bundle is None:
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        raise SystemExit(1)
    writer = configure_logging(log_level, bundle.config.telemetry.logs.format)
    try:
        code = run(bundle, host, port, reuse_port=True)
    finally:
        stop_logging(writer)
    raise SystemExit(code)


def supervise(config_path: Path | None, host: str, port: int, workers: int, log_level: str = "INFO") -> int:
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        directory = tempfile.mkdtemp(prefix="lockgate-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    for stale in Path(directory).glob("*.db"):
        stale.unlink()  # a previous run's values must not be summed in
    context = multiprocessing.get_context("spawn")
    arguments = (str(config_path) if config_path else None, host, port, log_level)
    processes = [context.Process(target=_worker, args=arguments, name=f"lockgate-{i}") for i in range(workers)]
    stopping = False

    def forward(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        if signum != signal.SIGHUP:
            stopping = True
        for process in processes:
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)  # before any worker starts: no signal may end the supervisor early
    started = [time.monotonic()] * workers
    quick_failures = [0] * workers
    for process in processes:
        if not stopping:  # a SIGTERM during start-up: start no more (they would never get it)
            process.start()
    gave_up = False
    restarting: set[int] = set()  # workers that died and wait out their backoff
    while not stopping:
        time.sleep(0.2)
        for index, process in enumerate(processes):
            if process.exitcode is None or stopping:
                continue
            quick = time.monotonic() - started[index] < QUICK_EXIT_S
            restarting.add(index)
            quick_failures[index] = quick_failures[index] + 1 if quick else 0
            _mark_dead(process.pid)
            if min(quick_failures) >= GIVE_UP_AFTER:
                log.error("every worker failed to start %d times in a row; giving up", GIVE_UP_AFTER)
                gave_up = stopping = True
                forward(signal.SIGTERM, None)
                break
            backoff = min(MAX_RESTART_BACKOFF_S, RESTART_BACKOFF_S * 2 ** max(0, quick_failures[index] - 1))
            log.error("worker %s exited with %s; restarting it in %.0fs", process.pid, process.exitcode, backoff)
            time.sleep(backoff)
            if stopping:
                break  # a signal came during the backoff: a new worker would never get it
            processes[index] = context.Process(target=_worker, args=arguments, name=process.name)
            processes[index].start()
            restarting.discard(index)
            started[index] = time.monotonic()
    codes = [1] if gave_up else []
    for index, process in enumerate(processes):
        if process.pid is None or index in restarting:
            continue  # never started, or died before the stop (logged then; it was to be restarted)
        process.join()
        _mark_dead(process.pid)
        codes.append(_exit_code(process.exitcode))
    return max(codes, default=0)


def _exit_code(code: int | None) -> int:
    """A stopped worker's exit as the supervisor reports it: ended by the signal it was sent
    (still starting, it had no handler yet) is a clean stop; an error or any other signal
    (the OOM killer's SIGKILL) is a failure."""
    if not code or code in (-signal.SIGTERM, -signal.SIGINT):
        return 0
    return 1


def _mark_dead(pid: int | None) -> None:
    if pid is None:
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)
