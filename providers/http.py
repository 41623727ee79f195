"""Upstream I/O shared by the HTTP adapters: pooled sessions, timeouts, error mapping.

Every adapter posts through `post()` and reads through `read_body()` / `stream_events()`,
so connection errors, resets, timeouts (connect, first token, idle, total) and error
statuses all surface the same way: as an `UpstreamError` that says whether a retry can
succeed.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import math
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from urllib.parse import urlsplit

import aiohttp
import orjson

from providers.base import UpstreamCall, UpstreamError
from providers.sse import SSEEvent, SSEParseError, SSEParser

MAX_ERROR_BODY = 64 * 1024
MAX_RESPONSE_BODY = 64 * 1024 * 1024
RETRYABLE_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529})

ErrorMapper = Callable[[int, bytes, Mapping[str, str]], UpstreamError]


def new_session(max_connections: int = 1000) -> aiohttp.ClientSession:
    """One pooled session per provider; timeouts are set per request."""
    connector = aiohttp.TCPConnector(
        limit=max_connections, limit_per_host=max_connections, ttl_dns_cache=300,
        keepalive_timeout=30,
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None),
        skip_auto_headers=("User-Agent",),
        auto_decompress=True,
    )


@functools.lru_cache(maxsize=64)
def _connect_timeout(connect_s: float) -> aiohttp.ClientTimeout:
    """aiohttp's timeout for a connect bound: a handful of distinct ones, built once each."""
    return aiohttp.ClientTimeout(total=None, connect=connect_s)


def remaining(call: UpstreamCall) -> float:
    return max(0.0, call.deadline - time.monotonic())


def _first_wait(call: UpstreamCall) -> float:
    wait = remaining(call)
    if call.timeouts.first_token_s is not None:
        wait = min(wait, call.timeouts.first_token_s)
    return wait


async def post(session: aiohttp.ClientSession, url: str, body: bytes, headers: Mapping[str, str],
               call: UpstreamCall, map_error: ErrorMapper) -> aiohttp.ClientResponse:
    """Send the request and wait for the response head; errors become `UpstreamError`."""
    try:
        async with asyncio.timeout(_first_wait(call)):
            # Never follow a redirect: it would carry the provider's credentials (and the
            # prompt) wherever the upstream points, and aiohttp strips only Authorization.
            response = await session.post(url, data=body, headers=headers, allow_redirects=False,
                                          timeout=_connect_timeout(call.timeouts.connect_s))
    except TimeoutError:
        raise UpstreamError("the upstream did not answer in time", kind="timeout", retryable=True) from None
    except aiohttp.ClientConnectorError as exc:
        raise UpstreamError(f"cannot connect to the upstream: {exc.strerror or type(exc).__name__}",
                            kind="connect", retryable=True) from None
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, aiohttp.ClientPayloadError) as exc:
        raise UpstreamError(f"the upstream closed the connection: {type(exc).__name__}",
                            kind="reset", retryable=True) from None
    except aiohttp.ClientError as exc:
        raise UpstreamError(f"upstream request failed: {type(exc).__name__}", kind="reset",
                            retryable=True) from None
    if 300 <= response.status < 400:
        response.release()
        where = urlsplit(response.headers.get("Location", "")).netloc or "elsewhere"
        raise UpstreamError(f"the upstream redirected (HTTP {response.status}) to {where}; set the provider's "
                            "base_url to the address that answers", kind="http", retryable=False)
    if response.status >= 400:
        try:
            body_bytes = await _read_capped(response, call, MAX_ERROR_BODY)
        except UpstreamError:
            body_bytes = b""
        finally:
            response.release()
        raise map_error(response.status, body_bytes, response.headers)
    return response


async def read_body(response: aiohttp.ClientResponse, call: UpstreamCall) -> bytes:
    """The whole response body, within the attempt's deadline."""
    try:
        return await _read_capped(response, call, MAX_RESPONSE_BODY)
    finally:
        response.release()


async def _read_capped(response: aiohttp.ClientResponse, call: UpstreamCall, cap: int) -> bytes:
    content = response.content
    if content.is_eof() and not content.exception():
        # The whole body came with the head (most JSON answers): nothing to wait for.
        body = content.read_nowait()
        if len(body) > cap:
            raise _too_large(response, cap)
        return body
    parts: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(remaining(call)):
            async for chunk in response.content.iter_any():
                size += len(chunk)
                if size > cap:
                    raise _too_large(response, cap)
                parts.append(chunk)
    except TimeoutError:
        response.close()
        raise UpstreamError("the upstream response did not complete in time", kind="timeout",
                            retryable=True) from None
    except aiohttp.ClientError as exc:
        response.close()
        raise UpstreamError(f"the upstream connection broke: {type(exc).__name__}", kind="reset",
                            retryable=True) from None
    return b"".join(parts)


def _too_large(response: aiohttp.ClientResponse, cap: int) -> UpstreamError:
    response.close()
    return UpstreamError(f"the upstream response is larger than {cap} bytes", kind="malformed")


class _Stalled(Exception):
    """Set on a stream's reader by `_StallWatch`: the pending read waited past its bound."""


class _StallWatch:
    """The bounds on a stream's waits for its next chunk (first token, idle, total), kept
    by one timer that re-arms itself lazily rather than a timer per chunk.

    A read only notes when it began. When the timer fires it ends the pending read if that
    read has waited past its bound, and otherwise moves itself to that bound. Time spent
    between reads (the relay writing, a human approving a held tool call) never counts:
    the upstream is not being waited for then.
    """

    __slots__ = ("_began", "_call", "_content", "_first", "_loop", "_timer", "_wait_s", "waiting_for")

    def __init__(self, content: aiohttp.StreamReader, call: UpstreamCall) -> None:
        self._loop = asyncio.get_running_loop()
        self._content = content
        self._call = call
        self._wait_s = call.timeouts.first_token_s
        self._began: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._first = True
        self.waiting_for = "the first chunk"

    def reading(self) -> None:
        self._began = time.monotonic()
        if self._timer is None:
            self._arm(self._began)

    def received(self) -> None:
        self._began = None
        if self._first:
            # From now on the idle bound applies; a timer set for the first-token bound
            # may be later than the next read's, so the next read sets its own.
            self._first = False
            self._wait_s = self._call.timeouts.idle_s
            self.waiting_for = "the next chunk"
            self.stop()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _bound(self, began: float) -> float:
        deadline = self._call.deadline
        return deadline if self._wait_s is None else min(deadline, began + self._wait_s)

    def _arm(self, now: float) -> None:
        assert self._began is not None
        self._timer = self._loop.call_later(max(0.0, self._bound(self._began) - now), self._fire)

    def _fire(self) -> None:
        self._timer = None
        if self._began is None:
            return  # no read is waiting: the next one arms the timer again
        now = time.monotonic()
        if now >= self._bound(self._began):
            self._content.set_exception(_Stalled())
        else:
            self._arm(now)


async def stream_chunks(response: aiohttp.ClientResponse, call: UpstreamCall) -> AsyncIterator[bytes]:
    """Body chunks as they arrive, bounded by the first-token, idle and total timeouts."""
    content = response.content
    watch = _StallWatch(content, call)
    done = False
    try:
        while True:
            watch.reading()
            try:
                chunk = await content.readany()
            except _Stalled:
                raise UpstreamError(f"the upstream stream stalled waiting for {watch.waiting_for}",
                                    kind="timeout", retryable=True) from None
            except aiohttp.ClientError as exc:
                raise UpstreamError(f"the upstream stream broke: {type(exc).__name__}", kind="reset",
                                    retryable=True) from None
            watch.received()
            if not chunk:
                done = True
                return
            yield chunk
    finally:
        watch.stop()
        if done:
            response.release()
        else:
            response.close()


async def stream_events(response: aiohttp.ClientResponse, call: UpstreamCall) -> AsyncIterator[SSEEvent]:
    """SSE events as they arrive. A stream that ends mid-event or is not SSE is malformed."""
    parser = SSEParser()
    chunks = stream_chunks(response, call)
    try:
        async for chunk in chunks:
            try:
                events = parser.feed(chunk)
            except SSEParseError as exc:
                raise UpstreamError(str(exc), kind="malformed") from None
            for event in events:
                yield event
        for event in parser.finish():
            yield event
    finally:
        await chunks.aclose()


def ensure_event_stream(response: aiohttp.ClientResponse) -> None:
    content_type = response.headers.get("Content-Type", "")
    if "text/event-stream" not in content_type:
        response.close()
        raise UpstreamError(f"asked for a stream, the upstream answered {content_type or 'no content type'}",
                            kind="malformed", retryable=True)


def json_error_fields(body: bytes) -> tuple[str | None, str | None, str | None]:
    """(message, type, code) from an OpenAI-style or similar JSON error body."""
    try:
        payload = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None, None, None
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        message = error.get("message")
        code = error.get("code")
        return (str(message)[:500] if message else None, _str(error.get("type") or error.get("status")),
                _code(code))
    if isinstance(error, str):
        return error[:500], None, None
    return None, None, None


def _str(value: object) -> str | None:
    return None if value is None else str(value)


_ERROR_CODE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def _code(value: object) -> str | None:
    """An upstream's error code, passed on to the client only when it looks like one (a short
    identifier): anything else is text the upstream chose, and may quote what it was sent."""
    text = _str(value) if isinstance(value, str | int) and not isinstance(value, bool) else None
    return text if text is not None and _ERROR_CODE.fullmatch(text) else None


def openai_error(status: int, body: bytes, headers: Mapping[str, str]) -> UpstreamError:
    message, error_type, code = json_error_fields(body)
    return UpstreamError(
        message or f"the upstream answered HTTP {status}",
        status=status,
        retryable=status in RETRYABLE_STATUSES,
        retry_after=retry_after_seconds(headers, rate_limited=status == 429),
        error_type=error_type,
        error_code=code,
    )


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def retry_after_seconds(headers: Mapping[str, str], *, rate_limited: bool = False) -> float | None:
    """How long the upstream asks us to wait: Retry-After(-Ms), and for a rate-limited
    answer (429) the reset time of the limit it ran out of. Unreadable values count as absent.

    The reset headers come with every answer, errors included; on a 5xx they describe
    limits that were not the problem, and waiting for them would only delay the retry.
    """
    value = headers.get("retry-after-ms")
    if value:
        seconds = _seconds(value, scale=0.001)
        if seconds is not None:
            return seconds
    value = headers.get("retry-after")
    if value:
        seconds = _retry_after_value(value)
        if seconds is not None:
            return seconds
    if not rate_limited:
        return None
    resets = {kind: _duration(headers.get(f"x-ratelimit-reset-{kind}", "")) for kind in ("requests", "tokens")}
    exhausted = [wait for kind, wait in resets.items()
                 if wait is not None and headers.get(f"x-ratelimit-remaining-{kind}") == "0"]
    if exhausted:
        return max(exhausted)
    # Without a limit marked as spent, the earliest reset is a lower bound of the wait.
    known = [wait for wait in resets.values() if wait is not None]
    return min(known) if known else None


def _retry_after_value(value: str) -> float | None:
    """Retry-After as seconds or as an HTTP date (RFC 9110 10.2.3); None when it is neither."""
    seconds = _seconds(value)
    if seconds is not None:
        return seconds
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        return None
    return max(0.0, parsed.timestamp() - time.time())


def _seconds(text: str, *, scale: float = 1.0) -> float | None:
    """A number of seconds, at least 0; None for text that is not a finite number.

    "inf" and "nan" parse as floats but are no wait: they would end up in the client's
    Retry-After header, which cannot say them.
    """
    try:
        seconds = float(text) * scale
    except ValueError:
        return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _duration(text: str) -> float | None:
    """'6m0s', '1.5s', '20ms' -> seconds."""
    matches = _DURATION.findall(text)
    if not matches:
        return None
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in matches)
