"""The load generator: closed loop, constant rate, streams, and many held streams.

    closed  C connections, each sending the next request as soon as the last answer is
            in: the target's maximum throughput (and its latency at that load).
    rate    a constant request rate, open loop: request i is due at start + i / rate
            whether or not earlier ones were answered, and its latency is measured from
            that intended send time. A target that stalls is charged for every request
            it delayed (no coordinated omission), so queueing shows up in p99/p99.9.
            Timers have ~1 ms granularity, the same for every target: the send lag
            (actual minus intended send time) is reported so it can be checked.
    stream  C concurrent streaming requests, one after another: time to the first event
            (TTFB), total time, and how the body arrived (reads, the most SSE events
            seen in one read: more than one means a proxy coalesced what the upstream
            sent apart).
    hold    N streaming requests opened together and held while the upstream trickles
            its chunks (for memory under many open streams); reports how many were open
            at once.

Every mode is bounded by --seconds (and --requests) and prints one line, RESULT {json}.

    python bench/load.py rate --url http://127.0.0.1:19110/v1/chat/completions \\
        --body bench/bodies/chat.json --rate 1000 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from http1 import Connection, Response, prepare

BENCH_KEY = "sk-bench-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile, q in [0, 100]."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[rank]


def summary(values: list[float]) -> dict[str, float | None]:
    return {"p50": percentile(values, 50), "p90": percentile(values, 90), "p99": percentile(values, 99),
            "p999": percentile(values, 99.9), "max": max(values, default=None),
            "mean": sum(values) / len(values) if values else None}


class _Reopen(Exception):
    """A pooled connection died while a request waited for one: open another."""


class Pool:
    """Keep-alive connections to one target, opened on demand up to `limit`."""

    def __init__(self, host: str, port: int, limit: int) -> None:
        self.host, self.port, self.limit = host, port, limit
        self.opened = 0
        self._idle: list[Connection] = []
        self._waiting: deque[asyncio.Future[Connection]] = deque()
        self.all: list[Connection] = []

    async def acquire(self) -> Connection:
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed:
                return connection
        if self.opened < self.limit:
            self.opened += 1
            try:
                connection = await Connection.open(self.host, self.port)
            except OSError:
                self.opened -= 1
                raise
            self.all.append(connection)
            return connection
        waiter: asyncio.Future[Connection] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        return await waiter

    def release(self, connection: Connection, reusable: bool) -> None:
        if not reusable or connection.closed:
            connection.close()
            self.opened -= 1
            if self._waiting:  # let a waiter open a fresh one in its place
                self._waiting.popleft().set_exception(_Reopen())
            return
        if self._waiting:
            self._waiting.popleft().set_result(connection)
        else:
            self._idle.append(connection)

    def close(self) -> None:
        for connection in self.all:
            connection.close()


async def exchange(pool: Pool, request: bytes, sent: float | None = None) -> Response | None:
    """One request on a pooled connection; None if it failed at the transport level."""
    while True:
        try:
            connection = await pool.acquire()
        except _Reopen:
            continue
        except OSError:
            return None
        try:
            response = await connection.send(request, sent)
        except ConnectionError:
            pool.release(connection, reusable=False)
            return None
        pool.release(connection, reusable=not response.close)
        return response


def good(response: Response | None) -> bool:
    if response is None or response.status != 200:
        return False
    return not response.sse or (response.saw_done and not response.error_event)


def statuses(responses: list[Response | None]) -> dict[str, int]:
    return dict(Counter(str(r.status) if r is not None else "transport_error" for r in responses))


async def closed_loop(pool: Pool, request: bytes, args: argparse.Namespace
                      ) -> tuple[list[Response | None], float]:
    """`--connections` clients, each sending its next request when its last one is answered."""
    deadline = time.perf_counter() + args.seconds
    budget = [args.requests]
    responses: list[Response | None] = []

    async def client() -> None:
        while budget[0] > 0 and time.perf_counter() < deadline:
            budget[0] -= 1
            responses.append(await exchange(pool, request))

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(args.connections)))
    return responses, time.perf_counter() - started


def counts(responses: list[Response | None], wall: float) -> dict[str, Any]:
    ok = sum(1 for r in responses if good(r))
    return {"requests": len(responses), "ok": ok, "errors": len(responses) - ok, "wall_s": wall,
            "rps": ok / wall if wall else 0.0, "statuses": statuses(responses)}


async def run_closed(pool: Pool, request: bytes, args: argparse.Namespace) -> dict[str, Any]:
    responses, wall = await closed_loop(pool, request, args)
    latencies = [(r.done - r.sent) * 1e3 for r in responses if good(r) and r is not None and r.done]
    return counts(responses, wall) | {"latency_ms": summary(latencies)}


async def run_stream(pool: Pool, request: bytes, args: argparse.Namespace) -> dict[str, Any]:
    responses, wall = await closed_loop(pool, request, args)
    return counts(responses, wall) | stream_stats(responses)


def stream_stats(responses: list[Response | None]) -> dict[str, Any]:
    ok = [r for r in responses if r is not None and good(r) and r.first_body is not None and r.done is not None]
    first = [(r.first_body - r.sent) * 1e3 for r in ok]  # type: ignore[operator]
    token = [(r.first_token - r.sent) * 1e3 for r in ok if r.first_token is not None]
    total = [(r.done - r.sent) * 1e3 for r in ok]  # type: ignore[operator]
    spread = [(r.done - r.first_body) * 1e3 for r in ok]  # type: ignore[operator]
    return {"ttfb_ms": summary(first), "ttft_ms": summary(token), "total_ms": summary(total),
            "spread_ms": summary(spread),
            "reads_p50": percentile([r.reads for r in ok], 50),
            "events_p50": percentile([r.events for r in ok], 50),
            "most_events_in_a_read_p50": percentile([r.most_events_in_a_read for r in ok], 50),
            "most_events_in_a_read_max": max((r.most_events_in_a_read for r in ok), default=None)}


async def run_rate(pool: Pool, request: bytes, args: argparse.Namespace) -> dict[str, Any]:
    count = min(args.requests, int(args.rate * args.seconds))
    warm = int(args.rate * args.warmup_seconds)
    latencies: list[float] = []
    lags: list[float] = []
    failures: list[Response | None] = []
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    async def one(index: int, intended: float) -> None:
        lags.append((time.perf_counter() - intended) * 1e3)
        response = await exchange(pool, request, sent=intended)
        if index < warm:
            return
        if response is not None and good(response) and response.done is not None:
            latencies.append((response.done - intended) * 1e3)
        else:
            failures.append(response)

    start = time.perf_counter() + 0.05
    for index in range(count):
        intended = start + index / args.rate
        delay = intended - time.perf_counter()
        if delay > 0.0005:
            await asyncio.sleep(delay)
        task = loop.create_task(one(index, intended))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    send_wall = time.perf_counter() - start
    if tasks:
        await asyncio.wait(set(tasks), timeout=args.timeout)
    return {"target_rate": args.rate, "requests": count, "measured": max(1, count - warm), "ok": len(latencies),
            "errors": len(failures) + len(tasks), "unanswered": len(tasks),
            "statuses": statuses(failures) | {"200": len(latencies)},
            "achieved_rps": count / send_wall if send_wall else 0.0, "connections": pool.opened,
            "latency_ms": summary(latencies), "send_lag_ms": summary(lags)}


async def run_hold(pool: Pool, request: bytes, args: argparse.Namespace) -> dict[str, Any]:
    """Open `--connections` streams over `--ramp-seconds` and keep them until they end."""
    loop = asyncio.get_running_loop()
    deadline = time.perf_counter() + args.seconds
    tasks = []
    for index in range(args.connections):
        tasks.append(loop.create_task(exchange(pool, request)))
        if args.ramp_seconds:
            await asyncio.sleep(args.ramp_seconds / args.connections)
        if index % 100 == 0:
            await asyncio.sleep(0)
    peak = 0
    all_open_at: float | None = None
    started = time.perf_counter()
    while time.perf_counter() < deadline and not all(task.done() for task in tasks):
        open_now = sum(1 for c in pool.all if c.current is not None and c.current.first_body is not None
                       and c.current.done is None)
        peak = max(peak, open_now)
        if all_open_at is None and open_now >= args.connections:
            all_open_at = time.perf_counter() - started
        await asyncio.sleep(0.05)
    for task in tasks:
        task.cancel()
    responses = [task.result() if task.done() and not task.cancelled() else None for task in tasks]
    return counts(responses, time.perf_counter() - started) | {
        "streams": args.connections, "peak_open": peak, "all_open_after_s": all_open_at}


MODES: dict[str, Callable[[Pool, bytes, argparse.Namespace], Awaitable[dict[str, Any]]]] = {
    "closed": run_closed, "rate": run_rate, "stream": run_stream, "hold": run_hold,
}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    url = urlsplit(args.url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {args.api_key}"}
    for header in args.header or []:
        name, _, value = header.partition(":")
        headers[name.strip()] = value.strip()
    request = prepare("POST", host, port, url.path, headers, Path(args.body).read_bytes())
    limit = args.connections if args.mode != "rate" else args.max_connections
    pool = Pool(host, port, limit)
    try:
        result = await MODES[args.mode](pool, request, args)
    finally:
        pool.close()
    return {"mode": args.mode, "url": args.url} | result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=sorted(MODES))
    parser.add_argument("--url", required=True)
    parser.add_argument("--body", required=True, help="file with the JSON request body")
    parser.add_argument("--header", action="append", help="extra header 'Name: value' (repeatable)")
    parser.add_argument("--api-key", default=BENCH_KEY)
    parser.add_argument("--connections", type=int, default=1, help="closed/stream: clients; hold: streams")
    parser.add_argument("--rate", type=float, default=100.0, help="rate: requests per second")
    parser.add_argument("--max-connections", type=int, default=64,
                        help="rate: connection cap, as wrk2's -c (a request due while all are busy waits, "
                             "its latency still counted from its intended send time)")
    parser.add_argument("--seconds", type=float, default=10.0, help="upper bound on the run")
    parser.add_argument("--requests", type=int, default=10**9, help="upper bound on requests")
    parser.add_argument("--warmup-seconds", type=float, default=1.0, help="rate: first seconds not counted")
    parser.add_argument("--ramp-seconds", type=float, default=2.0, help="hold: spread the opening over this")
    parser.add_argument("--timeout", type=float, default=30.0, help="rate: wait for stragglers at the end")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    import uvloop

    result = uvloop.run(main_async(parse_args(argv)))
    print("RESULT " + orjson.dumps(result).decode(), flush=True)


if __name__ == "__main__":
    main()
