"""A circuit breaker per target: stop sending to what keeps failing, probe it later.

Closed: requests flow; the circuit opens after `failures` consecutive failures, or
when the failure rate over the last `window_s` passes `failure_rate` (with at least
`min_requests` seen). Open: the target is skipped until `cooldown_s` has passed.
Half-open: one probe request is let through; its success closes the circuit, its
failure opens it again.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from gateway.config import CircuitConfig

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(self, config: CircuitConfig, on_change: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.state = CLOSED
        self._consecutive = 0
        self._outcomes: deque[tuple[float, bool]] = deque()
        self._failures_in_window = 0
        self._opened_at = 0.0
        self._probing = False
        self._on_change = on_change
        self._clock = clock

    def allow(self) -> bool:
        if self.state == CLOSED:
            return True
        if self.state == OPEN:
            if self._clock() - self._opened_at < self.config.cooldown_s:
                return False
            self._set(HALF_OPEN)
        if self._probing:
            return False
        self._probing = True
        return True

    def retry_after(self) -> float:
        """Seconds until an open circuit lets a probe through."""
        if self.state != OPEN:
            return 0.0
        return max(0.0, self.config.cooldown_s - (self._clock() - self._opened_at))

    def record_success(self) -> None:
        self._consecutive = 0
        self._observe(False)
        if self.state != CLOSED:
            self._probing = False
            self._outcomes.clear()
            self._failures_in_window = 0
            self._set(CLOSED)

    def record_failure(self) -> None:
        self._consecutive += 1
        self._observe(True)
        if self.state == HALF_OPEN:
            self._probing = False
            self._open()
        elif self.state == CLOSED and (self._consecutive >= self.config.failures or self._rate_exceeded()):
            self._open()

    def release_probe(self) -> None:
        """The probe ended without a verdict (e.g. the client left): let another one try."""
        self._probing = False

    def _observe(self, failed: bool) -> None:
        now = self._clock()
        self._outcomes.append((now, failed))
        self._failures_in_window += failed
        horizon = now - self.config.window_s
        while self._outcomes and self._outcomes[0][0] < horizon:
            _, old_failed = self._outcomes.popleft()
            self._failures_in_window -= old_failed

    def _rate_exceeded(self) -> bool:
        seen = len(self._outcomes)
        return seen >= self.config.min_requests and self._failures_in_window / seen >= self.config.failure_rate

    def _open(self) -> None:
        self._opened_at = self._clock()
        self._set(OPEN)

    def _set(self, state: str) -> None:
        if state != self.state:
            self.state = state
            if self._on_change is not None:
                self._on_change(state)
