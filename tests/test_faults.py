"""Every upstream fault ends in failover or a clean, explained error: never a hang, a
silent cut or a 500 from the gateway. A real fault-injecting fake upstream on each side."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import httpx
import openai
import pytest
from openai import OpenAI

from tests.fakes.openai_server import Script
from tests.harness import FIRST_TOKEN_S, TENANT_KEY, TIMEOUT_S, BackgroundLoop, Gateway, Pair, fault_config


def client(gateway: Gateway) -> OpenAI:
    return OpenAI(base_url=gateway.base_url, api_key=TENANT_KEY, max_retries=0, timeout=30)


MESSAGES = [{"role": "user", "content": "hi"}]

# (name, scripts for the primary's two attempts)
FAULTS: list[tuple[str, Callable[[], Script]]] = [
    ("http 500", lambda: Script(status=500)),
    ("http 503", lambda: Script(status=503)),
    ("429 with long retry-after", lambda: Script(status=429, headers={"Retry-After": "60"})),
    ("hang", lambda: Script(hang=True)),
    ("slow first byte", lambda: Script(delay_s=FIRST_TOKEN_S * 3)),
    ("connection reset", lambda: Script(reset=True)),
    ("malformed json", lambda: Script(malformed_json=True)),
    ("stream cut before content", lambda: Script(content="never", cut_after=1)),
    ("malformed sse", lambda: Script(content="never", malformed_sse_after=1)),
    ("error right after first non-content event", lambda: Script(content="never", error_event_after=1)),
]
STREAM_ONLY = {"stream cut before content", "malformed sse", "error right after first non-content event"}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize(("name", "fault"), FAULTS, ids=[name for name, _ in FAULTS])
def test_fault_on_primary_fails_over_to_backup(gateway_factory: Callable[..., Gateway], pair: Pair, name: str,
                                               fault: Callable[[], Script], stream: bool) -> None:
    if name in STREAM_ONLY and not stream:
        pytest.skip("a stream-only fault")
    gateway = gateway_factory(fault_config(pair))
    pair.primary.queue += [fault(), fault()]
    pair.backup.queue.append(Script(content="from the backup"))
    started = time.monotonic()
    if stream:
        with client(gateway).chat.completions.with_streaming_response.create(
                model="gpt-test", messages=MESSAGES, stream=True) as raw:
            headers = raw.headers
            chunks = list(raw.parse())
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        raw_json = client(gateway).chat.completions.with_raw_response.create(model="gpt-test", messages=MESSAGES)
        headers = raw_json.headers
        text = raw_json.parse().choices[0].message.content or ""
    assert text == "from the backup"
    assert headers["x-lockgate-provider"] == "backup"
    assert headers["x-lockgate-model"] == "backup-model"
    assert int(headers["x-lockgate-attempts"]) >= 2
    # Within the budget: two bounded attempts on the primary, then the backup.
    assert time.monotonic() - started < 2 * TIMEOUT_S + 3
    assert 'lockgate_failovers_total{from_provider="upstream"' in gateway_metrics(gateway)


def gateway_metrics(gateway: Gateway) -> str:
    return httpx.get(f"{gateway.url}/metrics").text


# (fault, expected status, expected code)
ONLY_TARGET = [
    ("http 500", lambda: Script(status=500), 502, "upstream_error"),
    ("http 503", lambda: Script(status=503), 503, "upstream_error"),
    ("hang", lambda: Script(hang=True), 504, "upstream_timeout"),
    ("connection reset", lambda: Script(reset=True), 502, "upstream_error"),
    ("malformed json", lambda: Script(malformed_json=True), 502, "upstream_error"),
]


@pytest.mark.parametrize(("name", "fault", "status", "code"), ONLY_TARGET, ids=[c[0] for c in ONLY_TARGET])
def test_fault_on_only_target_is_a_clean_error(gateway_factory: Callable[..., Gateway], pair: Pair, name: str,
                                               fault: Callable[[], Script], status: int, code: str) -> None:
    gateway = gateway_factory(fault_config(pair, with_backup=False))
    pair.primary.queue += [fault(), fault()]
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as raised:
        client(gateway).chat.completions.create(model="gpt-test", messages=MESSAGES)
    assert raised.value.status_code == status
    assert raised.value.body["code"] == code  # type: ignore[index]
    assert raised.value.response.headers["x-lockgate-attempts"] == "2"
    assert time.monotonic() - started < 2 * TIMEOUT_S + 2


def test_every_target_rate_limited_gives_429_with_smallest_retry_after(gateway_factory: Callable[..., Gateway],
                                                                        pair: Pair) -> None:
    gateway = gateway_factory(fault_config(pair))
    pair.primary.queue.append(Script(status=429, headers={"Retry-After": "40"}))
    pair.backup.queue.append(Script(status=429, headers={"Retry-After": "20"}))
    with pytest.raises(openai.RateLimitError) as raised:
        client(gateway).chat.completions.create(model="gpt-test", messages=MESSAGES)
    assert raised.value.response.headers["retry-after"] == "20"
    assert len(pair.primary.requests) == 1 and len(pair.backup.requests) == 1  # no retry past max_wait_s


def test_short_retry_after_is_honoured_on_the_same_target(gateway_factory: Callable[..., Gateway],
                                                          pair: Pair) -> None:
    gateway = gateway_factory(fault_config(pair))
    pair.primary.queue += [Script(status=429, headers={"Retry-After": "1"}), Script(content="after waiting")]
    started = time.monotonic()
    completion = client(gateway).chat.completions.create(model="gpt-test", messages=MESSAGES)
    assert completion.choices[0].message.content == "after waiting"
    assert time.monotonic() - started >= 0.95
    assert pair.backup.requests == []


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_non_retryable_statuses_are_not_retried(gateway_factory: Callable[..., Gateway], pair: Pair,
                                                status: int) -> None:
    gateway = gateway_factory(fault_config(pair, with_backup=False))
    pair.primary.queue += [Script(status=status), Script(content="should not be reached")]
    with pytest.raises(openai.APIStatusError):
        client(gateway).chat.completions.create(model="gpt-test", messages=MESSAGES)
    assert len(pair.primary.requests) == 1


def test_backoff_grows_exponentially(gateway_factory: Callable[..., Gateway], pair: Pair) -> None:
    gateway = gateway_factory(fault_config(pair, with_backup=False, retry={"attempts": 4, "backoff_ms": 100}))
    pair.primary.queue += [Script(status=500)] * 3 + [Script(content="finally")]
    started = time.monotonic()
    raw = client(gateway).chat.completions.with_raw_response.create(model="gpt-test", messages=MESSAGES)
    assert raw.parse().choices[0].message.content == "finally"
    # 100 + 200 + 400 ms, each with +-20% jitter.
    assert 0.56 <= time.monotonic() - started < 3.0
    # Waiting out the upstream's failures is not the gateway's own overhead.
    assert float(raw.headers["X-Lockgate-Overhead-Ms"]) < 300


@pytest.mark.parametrize("api", ["chat", "responses"])
def test_stream_failing_after_content_ends_with_error_event(gateway_factory: Callable[..., Gateway], pair: Pair,
                                                            api: str) -> None:
    gateway = gateway_factory(fault_config(pair))
    pair.primary.queue.append(Script(content="one two three four five six seven eight", text_pieces=8, cut_after=6))
    path = "chat/completions" if api == "chat" else "responses"
    body = {"model": "gpt-test", "stream": True,
            **({"messages": MESSAGES} if api == "chat" else {"input": "hi"})}
    with httpx.stream("POST", f"{gateway.base_url}/{path}", json=body, timeout=30,
                      headers={"Authorization": f"Bearer {TENANT_KEY}"}) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data:")]
    assert response.status_code == 200
    payloads = [json.loads(line[5:]) for line in lines if line != "data: [DONE]"]
    assert any("delta" in json.dumps(p) for p in payloads[:-1])  # content went out first
    assert payloads[-1]["error"]["type"] == "upstream_error"
    assert "data: [DONE]" not in lines
    assert pair.backup.requests == []  # no failover once content reached the client


def test_openai_sdk_raises_on_the_final_error_event(gateway_factory: Callable[..., Gateway], pair: Pair) -> None:
    gateway = gateway_factory(fault_config(pair, with_backup=False))
    pair.primary.queue.append(Script(content="one two three four", text_pieces=4, error_event_after=3))
    stream = client(gateway).chat.completions.create(model="gpt-test", messages=MESSAGES, stream=True)
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass


def test_idle_stream_is_cut_with_timeout_error(gateway_factory: Callable[..., Gateway], pair: Pair) -> None:
    gateway = gateway_factory(fault_config(pair, with_backup=False))
    pair.primary.queue.append(Script(content="a b c d", text_pieces=4, stall_after=3, stall_s=FIRST_TOKEN_S * 4))
    with httpx.stream("POST", f"{gateway.base_url}/chat/completions", timeout=30,
                      json={"model": "gpt-test", "messages": MESSAGES, "stream": True},
                      headers={"Authorization": f"Bearer {TENANT_KEY}"}) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data:")]
    assert '"a' in lines[1]  # content arrived before the upstream went quiet
    assert json.loads(lines[-1][5:])["error"]["code"] == "upstream_timeout"


def _stream_lines(gateway: Gateway) -> tuple[list[str], float]:
    started = time.monotonic()
    with httpx.stream("POST", f"{gateway.base_url}/chat/completions", timeout=30,
                      json={"model": "gpt-test", "messages": MESSAGES, "stream": True},
                      headers={"Authorization": f"Bearer {TENANT_KEY}"}) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data:")]
    return lines, time.monotonic() - started


def test_idle_bound_applies_from_the_first_chunk_even_when_the_first_token_bound_is_longer(
        gateway_factory: Callable[..., Gateway], pair: Pair) -> None:
    gateway = gateway_factory(fault_config(pair, with_backup=False, timeout_s=30, first_token_timeout_s=20,
                                           idle_timeout_s=0.3))
    pair.primary.queue.append(Script(content="a b c d", text_pieces=4, stall_after=3, stall_s=10))
    lines, elapsed = _stream_lines(gateway)
    assert '"a' in lines[1]
    assert json.loads(lines[-1][5:])["error"]["code"] == "upstream_timeout"
    assert elapsed < 5  # cut by the 0.3 s idle bound, not the 20 s first-token one


def test_a_stream_that_keeps_trickling_is_cut_at_the_attempt_deadline(gateway_factory: Callable[..., Gateway],
                                                                      pair: Pair) -> None:
    gateway = gateway_factory(fault_config(pair, with_backup=False, timeout_s=1, first_token_timeout_s=1,
                                           idle_timeout_s=1))
    pair.primary.queue.append(Script(content=" ".join(["w"] * 40), text_pieces=40, chunk_delay_s=0.2))
    lines, elapsed = _stream_lines(gateway)
    assert '"w' in lines[1]  # each chunk came well within the idle bound ...
    assert json.loads(lines[-1][5:])["error"]["code"] == "upstream_timeout"  # ... but the attempt ran out
    assert "data: [DONE]" not in lines
    assert elapsed < 6  # 40 chunks 0.2 s apart would take 8 s


def test_client_disconnect_cancels_the_upstream_request(gateway_factory: Callable[..., Gateway], pair: Pair,
                                                        bg: BackgroundLoop) -> None:
    gateway = gateway_factory(fault_config(pair, with_backup=False, timeout_s=30, idle_timeout_s=30))
    release = bg.run(_event())
    pair.primary.queue.append(Script(content="a b c d e f", text_pieces=6, hold_after=2, release=release))
    with httpx.stream("POST", f"{gateway.base_url}/chat/completions", timeout=30,
                      json={"model": "gpt-test", "messages": MESSAGES, "stream": True},
                      headers={"Authorization": f"Bearer {TENANT_KEY}"}) as response:
        for line in response.iter_lines():
            if '"content":"a' in line.replace(" ", ""):
                break
    deadline = time.monotonic() + 5
    while pair.primary.disconnects == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pair.primary.disconnects == 1  # the gateway closed its upstream connection at once
    assert pair.primary.completed_streams == 0
    assert_no_leaks(gateway, bg)


async def _event() -> asyncio.Event:
    return asyncio.Event()


def assert_no_leaks(gateway: Gateway, bg: BackgroundLoop) -> None:
    """No upstream connection checked out, no gateway task left behind."""
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        sessions = [getattr(provider, "_session", None) for _, provider in gateway.runtime._providers.values()]
        acquired = sum(len(session.connector._acquired) for session in sessions if session is not None)
        if acquired == 0:
            break
        time.sleep(0.05)
    assert acquired == 0
    leftover = bg.run(_request_tasks())
    assert leftover == [], leftover


async def _request_tasks() -> list[str]:
    current = asyncio.current_task()
    names = []
    for task in asyncio.all_tasks():
        if task is current or task.done():
            continue
        code = task.get_coro().cr_code.co_name if hasattr(task.get_coro(), "cr_code") else str(task.get_coro())
        if code in ("handle_model_call", "_attempt", "_send", "relay_stream"):
            names.append(code)
    return names


def test_no_leaks_after_faults(gateway_factory: Callable[..., Gateway], pair: Pair, bg: BackgroundLoop) -> None:
    gateway = gateway_factory(fault_config(pair))
    for fault in (Script(status=500), Script(reset=True), Script(content="x", cut_after=1), Script(hang=True),
                  Script(malformed_json=True)):
        pair.primary.queue += [fault, fault]
        pair.backup.queue.append(Script(content="ok"))
        for stream in (False, True):
            if stream:
                pair.primary.queue += [fault, fault]
                pair.backup.queue.append(Script(content="ok"))
                list(client(gateway).chat.completions.create(model="gpt-test", messages=MESSAGES, stream=True))
            else:
                client(gateway).chat.completions.create(model="gpt-test", messages=MESSAGES)
    assert_no_leaks(gateway, bg)
