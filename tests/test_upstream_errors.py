"""Upstream error answers -> `UpstreamError`: whether and when to retry, and whose fault it is.

The router retries a retryable error on the same target when its `retry_after` fits
under `retry.max_wait_s` and fails over otherwise; it answers a 400 / 413 / 422 to the
client as the client's own mistake, without trying another target. So a `retry_after`
that is too long forgoes a retry that would have worked, and a provider's account
problem reported as a 400 blocks failover. Both are checked on the error mappers and end
to end, through a gateway in front of the fake upstreams.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import openai
import orjson
import pytest
from multidict import CIMultiDict, CIMultiDictProxy
from openai import OpenAI

from gateway.config import ProviderConfig
from providers.base import CHAT, UpstreamCall, UpstreamError, scrub
from providers.gemini import gemini_error
from providers.gemini.adapter import GeminiDialect, GeminiStream
from providers.http import openai_error
from providers.sse import SSEEvent
from tests.fakes import anthropic_server, gemini_server, openai_server
from tests.fakes.gemini_server import google_error_body
from tests.harness import TENANT_KEY, BackgroundLoop, Gateway, Pair, Server, base_config, start_app
from tests.providers_matrix import FakeProvider, make_fake

Mapper = Callable[[int, bytes, Mapping[str, str]], UpstreamError]
MAPPERS: dict[str, Mapper] = {"openai": openai_error, "gemini": gemini_error}
GOOGLE_STATUS = {429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
MESSAGES = [{"role": "user", "content": "hi"}]


def mapped(kind: str, status: int, headers: dict[str, str]) -> UpstreamError:
    """What the mapper makes of an error answer in the provider's own shape, with no wait in
    its body; the headers are case-insensitive, as aiohttp hands them over."""
    if kind == "gemini":
        body = orjson.dumps(google_error_body(status, GOOGLE_STATUS[status], "Try again later."))
    else:
        body = orjson.dumps({"error": {"message": "Try again later.", "type": "server_error", "code": None}})
    return MAPPERS[kind](status, body, CIMultiDictProxy(CIMultiDict(headers)))


# --- Retry-After: a value that is not a wait counts as absent --------------------------------


@pytest.mark.parametrize("kind", MAPPERS)
@pytest.mark.parametrize(("headers", "expected"), [
    ({"Retry-After": "soon"}, None),
    ({"Retry-After": "1.5s"}, None),
    ({"Retry-After": "Thu, 01 Jan 2026"}, None),
    ({"Retry-After": "inf"}, None),
    ({"Retry-After": "nan"}, None),
    ({"retry-after-ms": "nan", "Retry-After": "2"}, 2.0),
], ids=["word", "unit", "date without time", "inf", "nan", "bad ms falls back"])
def test_an_unreadable_retry_after_counts_as_absent(kind: str, headers: dict[str, str],
                                                    expected: float | None) -> None:
    # Before, "soon" raised ValueError out of the mapper: a 500 from the gateway.
    error = mapped(kind, 503, headers)
    assert (error.status, error.retryable, error.retry_after) == (503, True, expected)


# --- rate-limit reset headers: the wait of a 429 only -----------------------------------------

RESETS = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "6m0s",
          "x-ratelimit-remaining-tokens": "15000", "x-ratelimit-reset-tokens": "1.5s"}


@pytest.mark.parametrize("kind", MAPPERS)
@pytest.mark.parametrize("status", [500, 503])
def test_reset_headers_are_no_wait_for_a_server_error(kind: str, status: int) -> None:
    # They come with every answer; a 503 with them once got retry_after=360 and no retry.
    error = mapped(kind, status, RESETS)
    assert (error.retryable, error.retry_after) == (True, None)


@pytest.mark.parametrize("kind", MAPPERS)
@pytest.mark.parametrize(("headers", "expected"), [
    (RESETS, 360.0),
    ({**RESETS, "x-ratelimit-remaining-requests": "7", "x-ratelimit-remaining-tokens": "0"}, 1.5),
    ({"x-ratelimit-reset-requests": "6m0s", "x-ratelimit-reset-tokens": "20ms"}, 0.02),
    ({**RESETS, "Retry-After": "4"}, 4.0),
], ids=["requests spent", "tokens spent", "none marked spent: the earliest", "retry-after wins"])
def test_a_429_waits_for_the_limit_it_ran_out_of(kind: str, headers: dict[str, str], expected: float) -> None:
    error = mapped(kind, 429, headers)
    assert (error.status, error.retryable) == (429, True)
    assert error.retry_after == pytest.approx(expected)


# --- Gemini: an error event inside a stream carries its own status ---------------------------


def gemini_stream() -> GeminiStream:
    return GeminiDialect(ProviderConfig(name="gemini", type="gemini", base_url="http://gemini.invalid")).stream(
        UpstreamCall(api=CHAT, body={"messages": MESSAGES}, model="gemini-2.5-flash", stream=True))


@pytest.mark.parametrize(("error", "status", "retryable", "error_type"), [
    ({"code": 429, "message": "Quota exceeded.", "status": "RESOURCE_EXHAUSTED"}, 429, True, "rate_limit_error"),
    ({"code": 400, "message": "Bad schema.", "status": "INVALID_ARGUMENT"}, 400, False, "invalid_request_error"),
    ({"code": 503, "message": "Overloaded.", "status": "UNAVAILABLE"}, 503, True, "upstream_error"),
    ({"message": "Internal error.", "status": "INTERNAL"}, 500, True, "upstream_error"),
    ({"code": "oops", "message": "?"}, 500, True, "upstream_error"),
], ids=["429", "400", "503", "no code", "code not a status"])
def test_a_stream_error_event_keeps_its_status(error: dict[str, Any], status: int, retryable: bool,
                                               error_type: str) -> None:
    with pytest.raises(UpstreamError) as raised:
        gemini_stream().feed(SSEEvent(orjson.dumps({"error": error})))
    assert (raised.value.status, raised.value.retryable, raised.value.error_type) == (status, retryable, error_type)


# --- account problems sent as 400s are not the client's fault ---------------------------------


def key_problem(reason: str) -> bytes:
    return orjson.dumps(google_error_body(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.",
                                          [{"@type": ERROR_INFO, "reason": reason, "domain": "googleapis.com"}]))


@pytest.mark.parametrize(("body", "status", "error_type", "says"), [
    (key_problem("API_KEY_INVALID"), 401, "authentication_error", "API_KEY_INVALID"),
    (key_problem("API_KEY_EXPIRED"), 401, "authentication_error", "API_KEY_EXPIRED"),
    (orjson.dumps(google_error_body(400, "FAILED_PRECONDITION", "User location is not supported for the API use.")),
     403, "permission_error", "User location is not supported"),
    (orjson.dumps(google_error_body(400, "FAILED_PRECONDITION", "Gemini API free tier is not available in your "
                                    "country. Please enable billing on your project in Google AI Studio.")),
     403, "permission_error", "enable billing"),
    (orjson.dumps(google_error_body(400, "INVALID_ARGUMENT", "Request contains an invalid argument.")),
     400, "invalid_request_error", "invalid argument"),
], ids=["key invalid", "key expired", "region", "billing", "a bad request stays one"])
def test_gemini_account_problems_are_not_bad_requests(body: bytes, status: int, error_type: str, says: str) -> None:
    error = gemini_error(400, body, {})
    assert (error.status, error.retryable, error.error_type) == (status, False, error_type)
    assert says in error.message


def test_a_gemini_key_problem_inside_a_stream_is_not_a_bad_request() -> None:
    with pytest.raises(UpstreamError) as raised:
        gemini_stream().feed(SSEEvent(key_problem("API_KEY_INVALID")))
    assert (raised.value.status, raised.value.retryable) == (401, False)


# --- end to end: the router fails over, or retries, as the mapped error says ------------------

CREDIT = "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade."


def break_gemini_key(fake: FakeProvider, config: dict[str, Any]) -> None:
    config["api_key"] = "AIzaSy-revoked-key-0123456789abcdefghij"  # the fake answers 400 API_KEY_INVALID


def gemini_region(fake: FakeProvider, config: dict[str, Any]) -> None:
    fake.app[gemini_server.STATE].queue.append(gemini_server.Script.failure(
        400, "FAILED_PRECONDITION", "User location is not supported for the API use."))


def anthropic_credit(fake: FakeProvider, config: dict[str, Any]) -> None:
    fake.app[anthropic_server.STATE].queue.append(anthropic_server.Script(
        status=400, body=anthropic_server.error_body("invalid_request_error", CREDIT)))


PROBLEMS = {"gemini bad key": ("gemini", break_gemini_key), "gemini region": ("gemini", gemini_region),
            "anthropic credit": ("anthropic", anthropic_credit)}


@pytest.fixture
def upstream(request: pytest.FixtureRequest, bg: BackgroundLoop) -> Iterator[tuple[FakeProvider, Server]]:
    fake = make_fake(request.param)
    server = bg.run(start_app(fake.app))
    yield fake, server
    bg.run(server.runner.cleanup())


def routed_config(fake: FakeProvider, url: str, pair: Pair, *, with_backup: bool) -> dict[str, Any]:
    config = base_config(pair.primary_server.url)
    config["providers"] = {"primary": fake.provider_config(url),
                           "backup": {"type": "openai", "base_url": f"{pair.backup_server.url}/v1",
                                      "api_key": openai_server.API_KEY}}
    targets = [{"provider": "primary", "model": fake.model}]
    if with_backup:
        targets.append({"provider": "backup", "model": "backup-model"})
    config["models"] = {"gpt-test": {"targets": targets, "retry": {"attempts": 2, "backoff_ms": 10}}}
    return config


def client(gateway: Gateway) -> OpenAI:
    return OpenAI(base_url=gateway.base_url, api_key=TENANT_KEY, max_retries=0, timeout=30)


def problem_params() -> list[Any]:
    return [pytest.param(kind, problem, id=name) for name, (kind, problem) in PROBLEMS.items()]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize(("upstream", "problem"), problem_params(), indirect=["upstream"])
def test_an_account_problem_fails_over_to_the_backup(upstream: tuple[FakeProvider, Server], problem: Any,
                                                     pair: Pair, gateway_factory: Callable[..., Gateway],
                                                     stream: bool) -> None:
    fake, server = upstream
    config = routed_config(fake, server.url, pair, with_backup=True)
    problem(fake, config["providers"]["primary"])
    pair.backup.queue.append(openai_server.Script(content="from the backup"))
    gateway = gateway_factory(config)
    if stream:
        with client(gateway).chat.completions.with_streaming_response.create(
                model="gpt-test", messages=MESSAGES, stream=True) as raw:
            headers = raw.headers
            text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    else:
        answer = client(gateway).chat.completions.with_raw_response.create(model="gpt-test", messages=MESSAGES)
        headers, text = answer.headers, answer.parse().choices[0].message.content
    assert text == "from the backup"
    assert headers["x-lockgate-provider"] == "backup"
    assert headers["x-lockgate-attempts"] == "2"  # not retried on the primary: its key will not get better


@pytest.mark.parametrize(("upstream", "problem"), problem_params(), indirect=["upstream"])
def test_an_account_problem_on_the_only_target_is_the_gateways_error(
        upstream: tuple[FakeProvider, Server], problem: Any, pair: Pair,
        gateway_factory: Callable[..., Gateway]) -> None:
    fake, server = upstream
    config = routed_config(fake, server.url, pair, with_backup=False)
    problem(fake, config["providers"]["primary"])
    gateway = gateway_factory(config)
    with pytest.raises(openai.APIStatusError) as raised:
        client(gateway).chat.completions.create(model="gpt-test", messages=MESSAGES)
    # Never the provider's key or billing problem as the client's invalid_request_error.
    assert raised.value.status_code == 502
    assert raised.value.body["type"] == "upstream_error"  # type: ignore[index]


def test_a_503_with_reset_headers_is_retried_on_the_same_target(pair: Pair,
                                                                gateway_factory: Callable[..., Gateway]) -> None:
    config = base_config(pair.primary_server.url)
    config["providers"]["backup"] = {"type": "openai", "base_url": f"{pair.backup_server.url}/v1",
                                     "api_key": openai_server.API_KEY}
    config["models"]["gpt-test"] = {"targets": [{"provider": "upstream", "model": "primary-model"},
                                                {"provider": "backup", "model": "backup-model"}],
                                    "retry": {"attempts": 2, "backoff_ms": 10}}
    pair.primary.queue += [openai_server.Script(status=503, headers=RESETS),
                           openai_server.Script(content="after a retry")]
    answer = client(gateway_factory(config)).chat.completions.with_raw_response.create(
        model="gpt-test", messages=MESSAGES)
    assert answer.parse().choices[0].message.content == "after a retry"
    assert (answer.headers["x-lockgate-provider"], answer.headers["x-lockgate-attempts"]) == ("upstream", "2")
    assert pair.backup.requests == []


@pytest.mark.parametrize("upstream", ["anthropic"], indirect=True)
def test_an_overloaded_anthropic_with_reset_headers_is_retried(upstream: tuple[FakeProvider, Server], pair: Pair,
                                                               gateway_factory: Callable[..., Gateway]) -> None:
    fake, server = upstream
    reset = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=40)
    fake.app[anthropic_server.STATE].queue.append(anthropic_server.Script(status=529, headers={
        "x-should-retry": "true", "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": reset.isoformat().replace("+00:00", "Z")}))
    fake.text("after a retry")
    answer = client(gateway_factory(routed_config(fake, server.url, pair, with_backup=True))
                    ).chat.completions.with_raw_response.create(model="gpt-test", messages=MESSAGES)
    assert answer.parse().choices[0].message.content == "after a retry"
    assert (answer.headers["x-lockgate-provider"], answer.headers["x-lockgate-attempts"]) == ("primary", "2")
    assert pair.backup.requests == []


@pytest.mark.parametrize("upstream", ["anthropic"], indirect=True)
def test_an_anthropic_overloaded_to_the_end_is_a_503(upstream: tuple[FakeProvider, Server], pair: Pair,
                                                    gateway_factory: Callable[..., Gateway]) -> None:
    fake, server = upstream
    fake.app[anthropic_server.STATE].queue += [anthropic_server.Script(status=529, error_type="overloaded_error")
                                               for _ in range(2)]
    with pytest.raises(openai.APIStatusError) as raised:
        client(gateway_factory(routed_config(fake, server.url, pair, with_backup=False))).chat.completions.create(
            model="gpt-test", messages=MESSAGES)
    assert raised.value.status_code == 503 and raised.value.body["code"] == "upstream_error"  # type: ignore[index]


@pytest.mark.parametrize("quoted", [
    "key sk-upstream-test-0123456789abcdefghij refused",
    "key 'sk-upstream-test-0 123456789abcdefghij' refused",
    "key sk-upstream-test-012345\n6789abcdefghij refused",
    "key s k - u p s t r e a m - t e s t - 0 1 2 3 4 5 6 7 8 9 a b c d e f g h i j refused",
], ids=["whole", "space", "line break", "spaced out"])
def test_a_quoted_provider_key_never_survives_scrubbing(quoted: str) -> None:
    scrubbed = scrub(quoted, (openai_server.API_KEY,))
    middle = openai_server.API_KEY[len(openai_server.API_KEY) // 4: 3 * len(openai_server.API_KEY) // 4]
    assert middle not in "".join(scrubbed.split()) and "[REDACTED]" in scrubbed
    assert scrub("the model is overloaded", (openai_server.API_KEY,)) == "the model is overloaded"


@pytest.mark.parametrize("upstream", ["anthropic"], indirect=True)
def test_an_upstream_413_is_the_clients_request_too_large(upstream: tuple[FakeProvider, Server], pair: Pair,
                                                          gateway_factory: Callable[..., Gateway]) -> None:
    fake, server = upstream
    fake.app[anthropic_server.STATE].queue.append(anthropic_server.Script(
        status=413, body=anthropic_server.error_body("request_too_large", "Request exceeds the maximum size")))
    gateway = gateway_factory(routed_config(fake, server.url, pair, with_backup=True))
    with pytest.raises(openai.APIStatusError) as raised:
        client(gateway).chat.completions.create(model="gpt-test", messages=MESSAGES)
    assert raised.value.status_code == 413
    assert raised.value.body["code"] == "request_too_large"  # type: ignore[index]
    assert pair.backup.requests == []  # the same body would be too large there too
