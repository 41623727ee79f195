"""Abuse limits below the application: slow clients and failed-auth floods.

`HeaderDeadline` wraps each connection's protocol: a client that has not finished
sending a request head within `server.header_timeout_s` of starting it (a slowloris) gets
a 408 and the connection closes; on a kept-alive connection the clock starts again with
the first byte of each new request. `AuthFailures` counts failed authentications per client address
and answers 429 to further wrong keys from an address that keeps guessing (a right key always passes).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from gateway import errors
from gateway.exchange import new_request_id

HEAD_END = b"\r\n\r\n"
_TIMEOUT_BODY = errors.GatewayError(
    408, "invalid_request_error", "request_timeout",
    "The request head did not arrive in time (server.header_timeout_s); send the whole request promptly.").body()
_TIMEOUT_HEAD = (b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Type: application/json\r\n"
                 b"Content-Length: " + str(len(_TIMEOUT_BODY)).encode() + b"\r\nX-Request-Id: ")


def timeout_response() -> bytes:
    """The 408 for a slow request head, with its own request id like every answer."""
    return _TIMEOUT_HEAD + new_request_id().encode() + b"\r\n\r\n" + _TIMEOUT_BODY


class HeaderDeadline(asyncio.Protocol):
    """A protocol in front of aiohttp's: closes connections whose first request head is too slow."""

    def __init__(self, inner: Any, timeout_s: float) -> None:
        self._inner = inner
        self._timeout_s = timeout_s
        self._timer: asyncio.TimerHandle | None = None
        self._transport: asyncio.Transport | None = None
        self._tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._timer = asyncio.get_running_loop().call_later(self._timeout_s, self._expire)
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._timer is None and self._between_requests():
            # A new request head begins on a kept-alive connection: it gets the same deadline.
            self._tail = b""
            self._timer = asyncio.get_running_loop().call_later(self._timeout_s, self._expire)
        if self._timer is not None:
            window = self._tail + data  # the end of the head may straddle two reads
            if HEAD_END in window:
                self._timer.cancel()
                self._timer = None
            else:
                self._tail = window[-(len(HEAD_END) - 1):]
        self._inner.data_received(data)

    def _between_requests(self) -> bool:
        """aiohttp's handler is idle, waiting for the next request's head (its private
        `_waiter`; without it, as in other aiohttp versions, only first heads are timed)."""
        waiter = getattr(self._inner, "_waiter", None)
        return waiter is not None and not waiter.done()

    def _expire(self) -> None:
        self._timer = None
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(timeout_response())
            self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._inner.connection_lost(exc)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


class EnvelopeRequestHandler(RequestHandler):
    """aiohttp's connection handler, answering requests it cannot parse (a bad request
    line, an oversized header) with the error envelope and a request id, like every other
    answer, instead of aiohttp's plain text."""

    def handle_error(self, request: BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        super().handle_error(request, status, exc, message)  # logs; refuses once output has started
        request_id = new_request_id()
        if status < 500:
            error = errors.GatewayError(status, "invalid_request_error", "bad_http_request",
                                        f"The HTTP request could not be read ({message or 'malformed'}); "
                                        "send a well-formed HTTP/1.1 request.")
        else:
            error = errors.internal_error(request_id)
        response = web.Response(status=status, body=error.body(), content_type="application/json",
                                headers={"X-Request-Id": request_id})
        response.force_close()
        return response


class GuardedRunner(web.AppRunner):
    """An AppRunner whose connections go through `HeaderDeadline` and `EnvelopeRequestHandler`."""

    def __init__(self, app: web.Application, header_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._header_timeout_s = header_timeout_s

    def close_idle_connections(self) -> None:
        """Keep-alive connections close after their current request (the drain has begun)."""
        if self._server is not None:
            self._server.pre_shutdown()

    @property
    def server(self) -> Callable[[], HeaderDeadline] | None:  # type: ignore[override]
        factory = super().server
        if factory is None:
            return None
        timeout = self._header_timeout_s
        # web.Server's own factory, with our handler class (same arguments).
        return lambda: HeaderDeadline(EnvelopeRequestHandler(factory, loop=factory._loop, **factory._kwargs),
                                      timeout)


class AuthFailures:
    """At most `limit` failed authentications per client address per `window_s`."""

    def __init__(self, limit: int = 30, window_s: float = 60.0, max_addresses: int = 100_000) -> None:
        self.limit = limit
        self.window_s = window_s
        self._max = max_addresses
        self._failures: dict[str, tuple[float, int]] = {}

    def check(self, address: str | None) -> None:
        """Refuse an address over its budget of failures (429); called only for keys that failed."""
        if not self.limit:
            return
        entry = self._failures.get(address or "")
        if entry is None:
            return
        started, count = entry
        now = time.monotonic()
        if now - started > self.window_s:
            del self._failures[address or ""]
        elif count >= self.limit:
            raise errors.rate_limited("Too many failed authentications from this address; wait before retrying.",
                                      retry_after=self.window_s - (now - started))

    def failed(self, address: str | None) -> None:
        key = address or ""
        now = time.monotonic()
        started, count = self._failures.get(key, (now, 0))
        if now - started > self.window_s:
            started, count = now, 0
        if len(self._failures) >= self._max and key not in self._failures:
            self._failures.clear()  # bounded memory under a spray of addresses
        self._failures[key] = (started, count + 1)
