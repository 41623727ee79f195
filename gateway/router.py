"""Aliases -> targets: ordering, retry with backoff, failover, circuit breaking.

`Router.call` makes the attempts for one request. Per target it retries what can
succeed on retry (connection errors, timeouts, 408, 429, 5xx) with exponential
backoff and jitter, honouring a longer `Retry-After` up to `retry.max_wait_s`; then it
fails over to the next target. A stream counts as answered only when its first
content event arrives: events before it (a role-only chunk, `response.created`) are
held, so an error right after them still fails over.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from gateway import errors
from gateway.circuit import OPEN, CircuitBreaker
from gateway.config import ModelConfig, RetryConfig, TargetConfig
from gateway.errors import GatewayError
from gateway.metrics import Metrics
from providers.base import (
    Provider,
    Timeouts,
    UnsupportedRequest,
    UpstreamCall,
    UpstreamError,
    UpstreamReply,
    scrub,
)
from providers.sse import SSEEvent

log = logging.getLogger("lockgate.router")

# Upstream statuses that describe the client's request, not the upstream's health:
# the client gets them as they are, and no other target is tried.
CLIENT_FAULT_STATUSES = frozenset({400, 413, 422})
EWMA_ALPHA = 0.2
NO_SLOT: AbstractAsyncContextManager[None] = nullcontext()
"""The slot of a target without `max_concurrent` (one object for every request)."""


@dataclass(eq=False)
class Target:
    provider: Provider
    config: TargetConfig
    timeouts: Timeouts
    breaker: CircuitBreaker
    in_flight: int = 0
    latency_ewma_s: float = 0.0
    slots: asyncio.Semaphore | None = field(default=None, repr=False)


    @property
    def model(self) -> str:
        return self.config.model

    @property
    def key(self) -> tuple[str, str]:
        return (self.provider.name, self.config.model)

    def at_capacity(self) -> bool:
        return self.slots is not None and self.slots.locked()

    def slot(self, wait_s: float | None) -> AbstractAsyncContextManager[None]:
        """Hold one of the target's `max_concurrent` slots, waiting up to `wait_s` for one."""
        # A reload may replace the cap: the slot given back is the one that was taken.
        return NO_SLOT if self.slots is None else self._held_slot(self.slots, wait_s)

    @asynccontextmanager
    async def _held_slot(self, slots: asyncio.Semaphore, wait_s: float | None) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(wait_s):
                await slots.acquire()
        except TimeoutError:
            raise errors.rate_limited(
                f"Every target is at its concurrency cap ({self.provider.name}/{self.model}: "
                f"{self.config.max_concurrent}); waited {wait_s:g}s. Retry shortly.", retry_after=1.0) from None
        try:
            yield
        finally:
            slots.release()

    def observe_latency(self, seconds: float) -> None:
        if self.latency_ewma_s == 0.0:
            self.latency_ewma_s = seconds
        else:
            self.latency_ewma_s += EWMA_ALPHA * (seconds - self.latency_ewma_s)


@dataclass(eq=False)
class Route:
    alias: str
    targets: list[Target]
    retry: RetryConfig
    strategy: str

    def order(self) -> list[Target]:
        """The failover order for one request."""
        if self.strategy == "weighted" and len(self.targets) > 1:
            return _weighted_order(self.targets)
        if self.strategy == "least_busy":
            return sorted(self.targets, key=lambda target: target.in_flight)
        if self.strategy == "latency":
            return sorted(self.targets, key=lambda target: target.latency_ewma_s)
        return self.targets


def _weighted_order(targets: list[Target]) -> list[Target]:
    """A random order where each next target is drawn with probability ~ weight."""
    keyed = [(random.random() ** (1.0 / target.config.weight) if target.config.weight > 0 else 0.0, target)
             for target in targets]
    return [target for _, target in sorted(keyed, key=lambda pair: pair[0], reverse=True)]


def target_timeouts(model: ModelConfig, target: TargetConfig) -> Timeouts:
    return Timeouts(
        total_s=target.timeout_s or model.timeout_s,
        connect_s=target.connect_timeout_s or model.connect_timeout_s,
        first_token_s=target.first_token_timeout_s or model.first_token_timeout_s,
        idle_s=target.idle_timeout_s or model.idle_timeout_s,
    )


@dataclass(slots=True)
class Attempt:
    """One try on one target (wall-clock times, for traces and logs)."""

    provider: str
    model: str
    started: float
    ended: float = 0.0
    error: str | None = None
    """None on success, else the failure's reason (http_503, timeout, ...)."""
    failure_event: dict[str, Any] | None = None
    """The answer or event that reported the failure (`UpstreamError.event`), usage included:
    providers bill some failures (a Gemini answer that broke off, a `response.failed`)."""
    reported_usage: dict[str, Any] | None = None
    """A failed translated stream's usage as reported before the failure (`UpstreamError.usage`)."""


@dataclass(slots=True)
class Outcome:
    """What the attempts produced, for headers, metering and logs."""

    attempts: int = 0
    target: Target | None = None
    upstream_s: float = 0.0
    backoff_s: float = 0.0
    """Time spent waiting between retries: the upstream's failure, not the gateway's overhead."""
    failovers: list[str] = field(default_factory=list)
    tries: list[Attempt] = field(default_factory=list)
    uncovered: list[Attempt] = field(default_factory=list)
    """Failed attempts that reported something (usage, perhaps) and that no budget
    reservation has looked at yet (`cover`)."""
    abandoned_in_flight: bool = False
    """The request was cancelled (the client left) while an attempt was at the upstream:
    the prompt may be billed, so it is metered (estimated)."""
    stopped_usage: dict[str, Any] | None = None
    """What a translated stream the gateway stopped reading (the client left, before or after
    its first content; a policy ended it) had reported: the provider bills it
    (`UpstreamReply.reported_usage`)."""


CallFactory = Callable[[Target], UpstreamCall]
CoverAttempt = Callable[["Attempt"], Awaitable[None]]
"""Reserves on the request's budget what a billed failed attempt spent, or raises its 429
(`limits.admission.Reservation`)."""
ContentTest = Callable[[SSEEvent], bool]


class Router:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    async def call(self, route: Route, make_call: CallFactory, is_content: ContentTest,
                   outcome: Outcome, queue_timeout_s: float = 5.0, cover: CoverAttempt | None = None
                   ) -> UpstreamReply:
        """Serve the request from the route's targets. `cover` is awaited, before the next
        attempt, for each failed attempt the provider billed (it reported usage)."""
        failures: list[UpstreamError] = []
        saturated: list[Target] = []
        tried = 0
        previous: Target | None = None
        for target in route.order():
            if not target.breaker.allow():
                continue
            if target.at_capacity():
                target.breaker.release_probe()
                saturated.append(target)
                continue
            failed_before = len(failures)
            reply = await self._try_target(route, target, make_call, is_content, outcome, failures, cover=cover)
            if len(failures) == failed_before + 1 and failures[-1].kind == "unsupported" and reply is None:
                continue  # the target cannot express this request: skipped, not failed over to
            # Counted once the target was really tried (its attempt is over by now), for why
            # the target tried before it failed.
            if previous is not None:
                reason = next((failure.reason for failure in reversed(failures[:failed_before])
                               if failure.kind != "unsupported"), "unavailable")
                self._count_failover(route, previous, target, reason, outcome)
            previous = target
            tried += 1
            if reply is not None:
                return reply
        # Every target that could still serve it is at its concurrency cap (the others failed,
        # are open or cannot express it): queue on the first one whose circuit still lets it
        # (it may have opened during the attempts before).
        waiting_for = next((target for target in saturated if target.breaker.allow()), None)
        if waiting_for is not None:
            tried += 1
            reply = await self._try_target(route, waiting_for, make_call, is_content, outcome, failures,
                                           wait_s=queue_timeout_s, cover=cover)
            if reply is not None:
                return reply
        raise final_error(route, failures, tried)

    def _count_failover(self, route: Route, previous: Target, target: Target, reason: str,
                        outcome: Outcome) -> None:
        self.metrics.failovers(route.alias, previous.provider.name, target.provider.name, reason).inc()
        log.warning("failover for %s from %s/%s to %s/%s: %s", route.alias, previous.provider.name,
                    previous.model, target.provider.name, target.model, reason)
        outcome.failovers.append(reason)

    async def _try_target(self, route: Route, target: Target, make_call: CallFactory, is_content: ContentTest,
                          outcome: Outcome, failures: list[UpstreamError], wait_s: float = 0.0,
                          cover: CoverAttempt | None = None) -> UpstreamReply | None:
        """Up to `retry.attempts` tries on one target; None when they are spent."""
        # perf_counter, not loop.time(): uvloop's clock moves in whole milliseconds, which
        # would put sub-millisecond upstream calls down as 0 or 1 ms (and skew the overhead).
        clock = time.perf_counter
        served_before = outcome.target
        for attempt in range(route.retry.attempts):
            if attempt and target.at_capacity():
                # Others took the target's slots while this request backed off: the next
                # target serves it sooner than a wait here would.
                return None
            while outcome.uncovered and cover is not None:
                await cover(outcome.uncovered.pop())  # a 429 when the budget cannot take it
            outcome.attempts += 1
            outcome.target = target
            started = clock()
            record = Attempt(target.provider.name, target.model, time.time())
            outcome.tries.append(record)
            target.in_flight += 1
            sent = False
            try:
                async with target.slot(wait_s):
                    sent = True
                    reply = await self._send(target, make_call(target), is_content, outcome)
            except UnsupportedRequest as exc:
                # This target cannot express the request (a 400 if no other target can): no
                # upstream attempt was made. Not a verdict on its health either: a half-open
                # circuit's probe goes to the next request.
                target.breaker.release_probe()
                outcome.attempts -= 1
                outcome.target = served_before
                record.ended, record.error = time.time(), "unsupported"
                failures.append(UpstreamError(exc.message, kind="unsupported", error_code=exc.param))
                return None
            except UpstreamError as exc:
                outcome.upstream_s += clock() - started
                record.ended, record.error = time.time(), exc.reason
                record.failure_event, record.reported_usage = exc.event, exc.usage
                if exc.event is not None or exc.usage is not None:
                    outcome.uncovered.append(record)  # perhaps billed: `cover` prices what it reported
                exc.message = scrub(exc.message, target.provider.secrets)
                if exc.error_code is not None:
                    exc.error_code = scrub(exc.error_code, target.provider.secrets)
                failures.append(exc)
                record_failure(target, exc)
                if exc.status in CLIENT_FAULT_STATUSES:
                    raise client_fault(exc, target) from None
                wait = self._retry_wait(route.retry, attempt, exc)
                if wait is None:
                    return None
                self.metrics.retries(target.provider.name, target.model, exc.reason).inc()
                backing_off = clock()
                await asyncio.sleep(wait)
                outcome.backoff_s += clock() - backing_off
                continue
            except BaseException:
                outcome.upstream_s += clock() - started
                record.ended, record.error = time.time(), "cancelled"
                outcome.abandoned_in_flight = sent
                target.breaker.release_probe()
                raise
            finally:
                target.in_flight -= 1
            elapsed = clock() - started
            record.ended = time.time()
            outcome.upstream_s += elapsed
            target.observe_latency(elapsed)
            if not reply.is_stream:
                # A stream's verdict waits for its end (`stream_ended`): a target that drops
                # its streams part-way must open its circuit too.
                target.breaker.record_success()
            return reply
        return None

    async def _send(self, target: Target, call: UpstreamCall, is_content: ContentTest, outcome: Outcome
                    ) -> UpstreamReply:
        began = asyncio.get_running_loop().time()
        reply = await target.provider.send(call)
        if reply.events is None:
            # A body that does not parse, or is not a JSON object, is a failed attempt, not
            # the client's problem.
            if not isinstance(reply.json(), dict):
                raise UpstreamError("the upstream answered JSON that is not an object", kind="malformed",
                                    retryable=True)
            return reply
        first_token_s = target.timeouts.first_token_s
        try:
            # The first-token bound runs until the first content event, not the first chunk:
            # Anthropic sends `message_start` (and pings) at once, whatever the model does.
            async with asyncio.timeout_at(None if first_token_s is None else began + first_token_s):
                return await _hold_until_content(reply, is_content)
        except BaseException as exc:
            # What the provider reported so far is billed whatever ended the wait.
            usage = reply.reported_usage() if reply.reported_usage is not None else None
            await reply.close()
            if isinstance(exc, TimeoutError):
                raise UpstreamError(f"no content within first_token_timeout_s ({first_token_s:g} s)",
                                    kind="timeout", retryable=True, usage=usage) from None
            if not isinstance(exc, UpstreamError):  # the client left before the stream started
                outcome.stopped_usage = usage
            raise

    @staticmethod
    def _retry_wait(retry: RetryConfig, attempt: int, exc: UpstreamError) -> float | None:
        """Seconds to wait before retrying the same target, or None to move on."""
        if not exc.retryable or attempt + 1 >= retry.attempts:
            return None
        backoff = min(retry.backoff_ms * (2 ** attempt), retry.max_backoff_ms) / 1000.0
        backoff *= random.uniform(0.8, 1.2)
        if exc.retry_after is not None and exc.retry_after > backoff:
            if exc.retry_after > retry.max_wait_s:
                return None
            return exc.retry_after
        return backoff


def record_failure(target: Target, exc: UpstreamError) -> None:
    if exc.status in CLIENT_FAULT_STATUSES or exc.status == 429:
        # The client's request or a rate limit: not a sign the target is unhealthy.
        target.breaker.release_probe()
        return
    was_open = target.breaker.state == OPEN
    target.breaker.record_failure()
    if target.breaker.state == OPEN and not was_open:
        log.warning("circuit opened for %s/%s after %s", target.provider.name, target.model, exc.reason)


def stream_ended(target: Target | None, *, complete: bool, failure: UpstreamError | None) -> None:
    """A relayed stream's verdict on the target that served it: healthy once it completed,
    failed if the upstream broke it off; neither when it ended for another reason (the
    client left, a policy ended it)."""
    if target is None:
        return
    if failure is not None:
        record_failure(target, failure)
    elif complete:
        target.breaker.record_success()
    else:
        target.breaker.release_probe()


async def _hold_until_content(reply: UpstreamReply, is_content: ContentTest) -> UpstreamReply:
    """Read events until the first content one; give back a reply that opens with them."""
    assert reply.events is not None
    events = reply.events
    held: list[SSEEvent] = []
    async for event in events:
        held.append(event)
        if is_content(event):
            break
    else:
        raise UpstreamError("the upstream stream ended before any content", kind="reset", retryable=True)
    return UpstreamReply(status=reply.status, headers=reply.headers, events=events, opening=tuple(held),
                         closer=reply.close, reported_usage=reply.reported_usage)


def client_fault(exc: UpstreamError, target: Target) -> GatewayError:
    code = exc.error_code or ("request_too_large" if exc.status == 413 else None)
    return GatewayError(
        exc.status or 400, "invalid_request_error", code,
        f"{target.provider.name} rejected the request: {exc.message}",
    )


def final_error(route: Route, failures: list[UpstreamError], tried: int) -> GatewayError:
    """The client's error once every target is spent."""
    unsupported = [failure for failure in failures if failure.kind == "unsupported"]
    failures = [failure for failure in failures if failure.kind != "unsupported"]
    if unsupported and not failures:
        first = unsupported[0]
        return errors.invalid_request(f"Model '{route.alias}' cannot serve this request: {first.message}",
                                      param=first.error_code)
    if not failures:
        waits = [target.breaker.retry_after() for target in route.targets]
        return errors.no_healthy_target(route.alias, max(1.0, min(waits, default=1.0)))
    if all(failure.status == 429 for failure in failures):
        waits = [failure.retry_after for failure in failures if failure.retry_after is not None]
        return GatewayError(
            429, "rate_limit_error", "rate_limit_exceeded",
            f"Every target of model '{route.alias}' is rate limited upstream; retry later.",
            metric=errors.METRIC_RATE_LIMIT, retry_after=min(waits) if waits else 1.0,
        )
    last = failures[-1]
    detail = f"after {len(failures)} attempt(s) on {tried} target(s); last error: {last.message}"
    if last.kind == "timeout":
        return errors.upstream_timeout(f"Model '{route.alias}' timed out {detail}")
    status = 503 if last.status in (503, 529) else 502  # 529: Anthropic overloaded, a 503 by another name
    return errors.upstream_error(f"Model '{route.alias}' failed {detail}", status)
