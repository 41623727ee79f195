"""Circuit breaking, balancing strategies and concurrency caps, against real fake upstreams."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from gateway.circuit import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from gateway.config import CircuitConfig
from tests.fakes.openai_server import Script
from tests.harness import TENANT_KEY, Gateway, Pair, fault_config
from tests.test_faults import MESSAGES


def client(gateway: Gateway, **options: Any) -> OpenAI:
    return OpenAI(base_url=gateway.base_url, api_key=TENANT_KEY, max_retries=0, **options)


def ask(gateway: Gateway) -> httpx.Response:
    return httpx.post(f"{gateway.base_url}/chat/completions", json={"model": "gpt-test", "messages": MESSAGES},
                      headers={"Authorization": f"Bearer {TENANT_KEY}"}, timeout=30)


def metric(gateway: Gateway, line_start: str) -> float | None:
    for line in httpx.get(f"{gateway.url}/metrics").text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return None


PATIENT = {"timeout_s": 10, "first_token_timeout_s": 10}
CIRCUIT_OPEN = 'lockgate_circuit_open{model="primary-model",provider="upstream"}'


def test_circuit_opens_skips_and_recovers(gateway_factory: Callable[..., Gateway], pair: Pair) -> None:
    gateway = gateway_factory(fault_config(pair, circuit={"failures": 2, "cooldown_s": 0.5}))
    pair.primary.queue += [Script(status=500), Script(status=500)]
    assert ask(gateway).headers["x-lockgate-provider"] == "backup"
    assert metric(gateway, CIRCUIT_OPEN) == 1
    assert httpx.get(f"{gateway.url}/readyz").json()["circuits"]["upstream/primary-model"] == "open"
    # While open, the primary is not even tried.
    seen = len(pair.primary.requests)
    response = ask(gateway)
    assert response.headers["x-lockgate-provider"] == "backup"
    assert response.headers["x-lockgate-attempts"] == "1"
    assert len(pair.primary.requests) == seen
    # After the cooldown one probe goes through; its success closes the circuit.
    time.sleep(0.6)
    assert ask(gateway).headers["x-lockgate-provider"] == "upstream"
    assert metric(gateway, CIRCUIT_OPEN) == 0
    assert httpx.get(f"{gateway.url}/readyz").json()["circuits"]["upstream/primary-model"] == "closed"


def test_every_circuit_open_is_503_no_healthy_target(gateway_factory: Callable[..., Gateway], pair: Pair) -> None:
    gateway = gateway_factory(fault_config(pair, with_backup=False, circuit={"failures": 1, "cooldown_s": 30}))
    pair.primary.queue += [Script(status=500), Script(status=500)]
    assert ask(gateway).status_code == 502
    response = ask(gateway)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "no_healthy_target"
    assert 25 <= int(response.headers["retry-after"]) <= 30
    ready = httpx.get(f"{gateway.url}/readyz").json()
    assert ready["degraded_models"] == ["gpt-test"]


def test_breaker_failure_rate_over_window() -> None:
    now = [0.0]
    breaker = CircuitBreaker(CircuitConfig(failures=100, failure_rate=0.5, window_s=10, min_requests=4,
                                           cooldown_s=5), clock=lambda: now[0])
    for failed in (False, True, False, True):
        now[0] += 1
        breaker.record_failure() if failed else breaker.record_success()
    assert breaker.state == OPEN  # 2 of 4 within the window
    assert not breaker.allow()
    now[0] += 5
    assert breaker.allow() and breaker.state == HALF_OPEN
    assert not breaker.allow()  # one probe at a time
    breaker.record_success()
    assert breaker.state == CLOSED
    for _ in range(3):
        now[0] += 20  # old outcomes leave the window
        breaker.record_failure()
        breaker.record_success()
    assert breaker.state == CLOSED or breaker.retry_after() > 0


def test_weighted_strategy_splits_traffic(gateway_factory: Callable[..., Gateway], pair: Pair) -> None:
    config = fault_config(pair, strategy="weighted")
    config["models"]["gpt-test"]["targets"][0]["weight"] = 3
    config["models"]["gpt-test"]["targets"][1]["weight"] = 1
    gateway = gateway_factory(config)
    served = [ask(gateway).headers["x-lockgate-provider"] for _ in range(200)]
    share = served.count("upstream") / len(served)
    assert 0.62 < share < 0.88  # 0.75 expected


def test_latency_strategy_prefers_the_faster_target(gateway_factory: Callable[..., Gateway], pair: Pair) -> None:
    gateway = gateway_factory(fault_config(pair, strategy="latency"))
    pair.primary.queue += [Script(content="slow", delay_s=0.3)]
    ask(gateway)  # primary measured slow
    pair.primary.queue += [Script(content="slow", delay_s=0.3)] * 5
    served = [ask(gateway).headers["x-lockgate-provider"] for _ in range(5)]
    assert served.count("backup") >= 4


def test_tenant_concurrency_cap_queues_then_429(gateway_factory: Callable[..., Gateway], pair: Pair) -> None:
    config = fault_config(pair, with_backup=False, **PATIENT)
    config["tenants"]["acme"]["limits"] = {"max_concurrent": 1}
    config["server"]["queue_timeout_s"] = 0.3
    gateway = gateway_factory(config)
    pair.primary.queue += [Script(content="slow", delay_s=1.5)]
    first = threading.Thread(target=ask, args=(gateway,))
    first.start()
    time.sleep(0.2)
    started = time.monotonic()
    response = ask(gateway)
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "rate_limit_exceeded"
    assert response.headers["retry-after"]
    assert 0.25 < time.monotonic() - started < 1.4  # gave up after the queue timeout, not after the call
    first.join()
    # A slot that frees up within the queue timeout serves the waiting request.
    config_gateway = gateway
    pair.primary.queue += [Script(content="short", delay_s=0.1)]
    first = threading.Thread(target=ask, args=(config_gateway,))
    first.start()
    time.sleep(0.02)
    assert ask(config_gateway).status_code == 200
    first.join()


def test_abandoned_queued_request_leaves_the_queue(gateway_factory: Callable[..., Gateway], pair: Pair) -> None:
    config = fault_config(pair, with_backup=False, **PATIENT)
    config["tenants"]["acme"]["limits"] = {"max_concurrent": 1}
    config["server"]["queue_timeout_s"] = 10
    gateway = gateway_factory(config)
    pair.primary.queue += [Script(content="first", delay_s=1.0)]
    first = threading.Thread(target=ask, args=(gateway,))
    first.start()
    time.sleep(0.2)
    with pytest.raises(openai.APITimeoutError):
        client(gateway, timeout=0.3).chat.completions.create(model="gpt-test", messages=[
            {"role": "user", "content": "I give up"}])
    first.join()
    assert ask(gateway).status_code == 200
    # The abandoned request never reached the upstream.
    assert not any("I give up" in str(request) for request in pair.primary.requests)


def test_target_concurrency_cap_moves_to_the_next_target(gateway_factory: Callable[..., Gateway],
                                                         pair: Pair) -> None:
    config = fault_config(pair, **PATIENT)
    config["models"]["gpt-test"]["targets"][0]["max_concurrent"] = 1
    gateway = gateway_factory(config)
    pair.primary.queue += [Script(content="slow", delay_s=1.0)]
    first = threading.Thread(target=ask, args=(gateway,))
    first.start()
    time.sleep(0.2)
    assert ask(gateway).headers["x-lockgate-provider"] == "backup"
    first.join()


def test_a_retry_finding_its_target_full_fails_over_instead_of_429(gateway_factory: Callable[..., Gateway],
                                                                    pair: Pair) -> None:
    config = fault_config(pair, **PATIENT, retry={"attempts": 2, "backoff_ms": 300})
    config["models"]["gpt-test"]["targets"][0]["max_concurrent"] = 1
    gateway = gateway_factory(config)
    # The first request fails and backs off; the second takes the primary's only slot meanwhile.
    pair.primary.queue += [Script(status=503), Script(content="slow", delay_s=1.0)]
    answers: list[httpx.Response] = []
    first = threading.Thread(target=lambda: answers.append(ask(gateway)))
    first.start()
    time.sleep(0.1)
    assert ask(gateway).headers["x-lockgate-provider"] == "upstream"
    first.join()
    assert answers[0].status_code == 200
    assert answers[0].headers["x-lockgate-provider"] == "backup"


@pytest.mark.parametrize("body", [[], "hello", 42])
def test_a_json_answer_that_is_not_an_object_fails_over(gateway_factory: Callable[..., Gateway], pair: Pair,
                                                        body: Any) -> None:
    gateway = gateway_factory(fault_config(pair, retry={"attempts": 1}))
    pair.primary.queue.append(Script(status=200, error_body=body))
    response = ask(gateway)
    assert response.status_code == 200 and response.headers["x-lockgate-provider"] == "backup"
    assert response.json()["object"] == "chat.completion"


def test_a_request_the_probed_target_cannot_express_leaves_the_probe_to_the_next(
        gateway_factory: Callable[..., Gateway], pair: Pair) -> None:
    config = fault_config(pair, circuit={"failures": 2, "cooldown_s": 0.3})
    # A Claude target nobody listens for: connection errors open its circuit.
    config["providers"]["claude"] = {"type": "anthropic", "base_url": "http://127.0.0.1:9", "api_key": "sk-ant-x"}
    config["models"]["gpt-test"]["targets"][0] = {"provider": "claude", "model": "claude-sonnet-4-5"}
    gateway = gateway_factory(config)
    ask(gateway)
    assert httpx.get(f"{gateway.url}/readyz").json()["circuits"]["claude/claude-sonnet-4-5"] == "open"
    time.sleep(0.4)
    # The half-open probe meets a request Claude cannot express (n > 1): the backup serves it ...
    several = httpx.post(f"{gateway.base_url}/chat/completions", timeout=30,
                         json={"model": "gpt-test", "messages": MESSAGES, "n": 2},
                         headers={"Authorization": f"Bearer {TENANT_KEY}"})
    assert several.headers["x-lockgate-provider"] == "backup"
    # A target skipped because it cannot express the request made no attempt and was no failover.
    assert several.headers["x-lockgate-attempts"] == "1"
    assert 'reason="unsupported"' not in httpx.get(f"{gateway.url}/metrics").text
    # ... and the next request still probes Claude (it is not skipped forever).
    assert ask(gateway).headers["x-lockgate-attempts"] == "3"


def stream(gateway: Gateway) -> list[str]:
    """The data lines of one streamed chat request."""
    with httpx.stream("POST", f"{gateway.base_url}/chat/completions", timeout=30,
                      json={"model": "gpt-test", "messages": MESSAGES, "stream": True},
                      headers={"Authorization": f"Bearer {TENANT_KEY}"}) as response:
        return [line for line in response.iter_lines() if line.startswith("data:")]


def test_streams_broken_off_after_content_open_the_circuit(gateway_factory: Callable[..., Gateway],
                                                           pair: Pair) -> None:
    gateway = gateway_factory(fault_config(pair, circuit={"failures": 2, "cooldown_s": 0.5}))
    pair.primary.queue += [Script(content="one two three four", text_pieces=4, cut_after=3) for _ in range(2)]
    for _ in range(2):
        assert '"error"' in stream(gateway)[-1]  # content went out, then the final error event
    assert metric(gateway, CIRCUIT_OPEN) == 1
    assert stream(gateway)[-1] == "data: [DONE]"
    assert len(pair.backup.requests) == 1  # the primary was skipped
    # After the cooldown a streamed probe that completes closes the circuit.
    time.sleep(0.6)
    pair.primary.queue.append(Script(content="whole answer"))
    assert stream(gateway)[-1] == "data: [DONE]"
    assert metric(gateway, CIRCUIT_OPEN) == 0


def test_a_failed_primary_waits_for_a_backup_at_its_cap(gateway_factory: Callable[..., Gateway],
                                                         pair: Pair) -> None:
    config = fault_config(pair, **PATIENT, retry={"attempts": 1})
    config["models"]["gpt-test"]["targets"][1]["max_concurrent"] = 1
    gateway = gateway_factory(config)
    pair.primary.queue += [Script(status=500), Script(status=500)]
    pair.backup.queue += [Script(content="slow", delay_s=0.8), Script(content="waited")]
    answers: list[httpx.Response] = []
    first = threading.Thread(target=lambda: answers.append(ask(gateway)))
    first.start()
    time.sleep(0.3)
    # The primary fails, the backup's only slot is taken: wait for it rather than give up.
    second = ask(gateway)
    first.join()
    assert second.status_code == 200, second.text
    assert second.headers["x-lockgate-provider"] == "backup"
    assert second.json()["choices"][0]["message"]["content"] == "waited"


def test_the_first_token_bound_runs_until_content(gateway_factory: Callable[..., Gateway], pair: Pair) -> None:
    # The role chunk comes at once, the first token only after the bound (as Anthropic sends
    # `message_start` at once): the stream still fails over.
    gateway = gateway_factory(fault_config(pair, first_token_timeout_s=0.5, idle_timeout_s=10, timeout_s=10,
                                           retry={"attempts": 1}))
    pair.primary.queue.append(Script(content="late", stall_after=1, stall_s=2.0))
    pair.backup.queue.append(Script(content="on time"))
    started = time.monotonic()
    lines = stream(gateway)
    assert '"content":"on' in "".join(lines).replace(" ", "")
    assert time.monotonic() - started < 1.8


def test_no_wait_for_a_full_target_whose_circuit_opened_meanwhile(gateway_factory: Callable[..., Gateway],
                                                                   pair: Pair) -> None:
    config = fault_config(pair, **PATIENT, retry={"attempts": 1}, circuit={"failures": 1, "cooldown_s": 30})
    targets = config["models"]["gpt-test"]["targets"]
    targets.reverse()  # the backup first, with one slot
    targets[0]["max_concurrent"] = 1
    gateway = gateway_factory(config)
    pair.backup.queue += [Script(status=500, delay_s=0.8), Script(content="must not be asked")]
    pair.primary.queue.append(Script(status=503, delay_s=1.2))
    first = threading.Thread(target=ask, args=(gateway,))
    first.start()
    time.sleep(0.2)
    # The backup is full, the primary fails 1.2 s later; by then the backup's failure (0.8 s)
    # opened its circuit: no waiting for it, and no sending to it.
    second = ask(gateway)
    first.join()
    assert second.status_code == 503, second.text
    assert len(pair.backup.requests) == 1
