"""Abuse limits: slow clients are cut off, key guessing is throttled, CORS is off unless
configured, and no request can point the gateway at an upstream of its choosing."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from urllib.parse import urlparse

import httpx
import pytest

from tests.fakes.openai_server import State
from tests.harness import TENANT_KEY, Gateway, Server, base_config


@pytest.fixture
def strict(gateway_factory: Callable[..., Gateway], openai_upstream: Server) -> Gateway:
    config = base_config(openai_upstream.url)
    config["server"].update(header_timeout_s=0.5, body_timeout_s=0.5, cors_origins=["https://app.example.com"])
    return gateway_factory(config)


def connect(gateway: Gateway) -> socket.socket:
    url = urlparse(gateway.url)
    sock = socket.create_connection((url.hostname, url.port), timeout=5)
    return sock


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def test_slow_request_head_is_cut_off(strict: Gateway) -> None:
    sock = connect(strict)
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")  # ...and never finishes the head
    started = time.monotonic()
    answer = read_all(sock)
    sock.close()
    assert time.monotonic() - started < 4
    assert answer.startswith(b"HTTP/1.1 408") and b"header_timeout_s" in answer
    assert b"\r\nX-Request-Id: req_" in answer


def test_head_split_across_reads_is_not_cut(strict: Gateway) -> None:
    sock = connect(strict)
    for piece in (b"GET /healthz HTTP/1.1\r\nHost: x\r", b"\n\r", b"\n"):
        sock.sendall(piece)
        time.sleep(0.1)
    time.sleep(0.6)  # past the header timeout: the head completed in time, so nothing is cut
    answer = sock.recv(65536)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 200")


def test_slow_second_head_on_a_kept_alive_connection_is_cut_off(strict: Gateway) -> None:
    sock = connect(strict)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    time.sleep(0.7)  # an idle kept-alive connection is not timed: the clock starts with a new head
    sock.sendall(b"GET /healthz HTTP/1.1\r\n")  # ...and the rest never comes
    started = time.monotonic()
    answer = read_all(sock)
    sock.close()
    assert time.monotonic() - started < 4
    assert answer.startswith(b"HTTP/1.1 408")


def test_kept_alive_connection_serves_many_prompt_requests(strict: Gateway) -> None:
    sock = connect(strict)
    for _ in range(3):
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        time.sleep(0.6)  # idle longer than the header timeout between requests
    sock.close()


def test_slow_body_gets_408(strict: Gateway) -> None:
    sock = connect(strict)
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TENANT_KEY.encode()
                 + b"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"model\":")
    answer = read_all(sock)
    sock.close()
    assert b" 408 " in answer.split(b"\r\n")[0] and b"body_timeout_s" in answer


def test_key_guessing_is_throttled_per_address(strict: Gateway) -> None:
    statuses = [httpx.get(f"{strict.base_url}/models", headers={"Authorization": f"Bearer lg-guess-{i}"}).status_code
                for i in range(35)]
    assert statuses[:30] == [401] * 30 and set(statuses[30:]) == {429}
    throttled = httpx.get(f"{strict.base_url}/models", headers={"Authorization": "Bearer lg-guess-again"})
    assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) > 0
    # A right key still works from that address: behind a proxy every client shares it.
    assert httpx.get(f"{strict.base_url}/models", headers={"Authorization": f"Bearer {TENANT_KEY}"}).status_code == 200


def test_cors_only_for_configured_origins(strict: Gateway) -> None:
    headers = {"Authorization": f"Bearer {TENANT_KEY}"}
    allowed = httpx.get(f"{strict.base_url}/models", headers={**headers, "Origin": "https://app.example.com"})
    assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
    other = httpx.get(f"{strict.base_url}/models", headers={**headers, "Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    preflight = httpx.options(f"{strict.base_url}/chat/completions", headers={
        "Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 204 and "Authorization" in preflight.headers["access-control-allow-headers"]


def test_cors_is_off_by_default(gateway: Gateway) -> None:
    response = httpx.get(f"{gateway.base_url}/models", headers={"Authorization": f"Bearer {TENANT_KEY}",
                                                                 "Origin": "https://app.example.com"})
    assert "access-control-allow-origin" not in response.headers


def test_no_request_field_or_header_chooses_the_upstream(gateway: Gateway, upstream_state: State) -> None:
    """No SSRF: base URLs come from config only; whatever a request says about them is ignored."""
    response = httpx.post(f"{gateway.base_url}/chat/completions", headers={
        "Authorization": f"Bearer {TENANT_KEY}", "X-Lockgate-Base-Url": "http://169.254.169.254/",
        "X-Forwarded-Host": "169.254.169.254", "Host": "169.254.169.254"},
        json={"model": "gpt-test", "messages": [{"role": "user", "content": "x"}],
              "base_url": "http://169.254.169.254/latest", "api_base": "http://169.254.169.254/"})
    assert response.status_code == 200
    assert len(upstream_state.requests) == 1  # it went to the configured upstream


@pytest.mark.parametrize("request_bytes", [
    b"GARBAGE\r\n\r\n",
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n",
])
def test_unreadable_http_gets_the_envelope(strict: Gateway, request_bytes: bytes) -> None:
    sock = connect(strict)
    sock.sendall(request_bytes)
    head, _, body = read_all(sock).partition(b"\r\n\r\n")
    sock.close()
    assert b" 400 " in head.split(b"\r\n")[0] and b"\r\nX-Request-Id: req_" in head
    error = httpx.Response(400, content=body).json()["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "bad_http_request"
    assert "well-formed" in error["message"]
