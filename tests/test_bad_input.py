"""Bad input, table-driven: each input gets its status and code in the envelope, never a 500."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.harness import TENANT_KEY, Gateway, Server, base_config

MAX_BODY = 8192
OK_MESSAGES = [{"role": "user", "content": "hi"}]


def deep(depth: int) -> bytes:
    return b'{"model": "gpt-test", "messages": [{"role": "user", "content": "x"}], "metadata": ' + \
        b'{"a": ' * depth + b"1" + b"}" * depth + b"}"


# (name, path, raw body, status, code or None, error param or None)
CASES: list[tuple[str, str, bytes, int, str | None, str | None]] = [
    ("malformed json", "chat/completions", b'{"model": "gpt-test", ', 400, None, None),
    ("not utf-8", "chat/completions", b'{"model": "gpt-test", "messages": "\xff\xfe"}', 400, None, None),
    ("empty body", "chat/completions", b"", 400, None, None),
    ("array body", "chat/completions", b"[1, 2]", 400, None, None),
    ("missing model", "chat/completions", b'{"messages": []}', 400, None, "model"),
    ("model not a string", "chat/completions", b'{"model": 5, "messages": []}', 400, None, "model"),
    ("missing messages", "chat/completions", b'{"model": "gpt-test"}', 400, None, "messages"),
    ("messages not array", "chat/completions", b'{"model": "gpt-test", "messages": "hi"}', 400, None, "messages"),
    ("empty messages", "chat/completions", b'{"model": "gpt-test", "messages": []}', 400, None, "messages"),
    ("message not object", "chat/completions", b'{"model": "gpt-test", "messages": ["hi"]}', 400, None,
     "messages[0]"),
    ("message without role", "chat/completions", b'{"model": "gpt-test", "messages": [{"content": "x"}]}', 400,
     None, "messages[0].role"),
    ("stream not boolean", "chat/completions",
     b'{"model": "gpt-test", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}', 400, None, "stream"),
    ("tools not array", "chat/completions",
     b'{"model": "gpt-test", "messages": [{"role": "user", "content": "x"}], "tools": {}}', 400, None, "tools"),
    ("max_tokens not integer", "chat/completions",
     b'{"model": "gpt-test", "messages": [{"role": "user", "content": "x"}], "max_tokens": "10"}', 400, None,
     "max_tokens"),
    ("too many messages", "chat/completions",
     b'{"model": "gpt-test", "messages": [' + b",".join([b'{"role": "user", "content": "x"}'] * 21) + b"]}",
     400, "too_many_items", "messages"),
    ("too many tools", "chat/completions",
     b'{"model": "gpt-test", "messages": [{"role": "user", "content": "x"}], "tools": ['
     + b",".join([b'{"type": "function", "function": {"name": "f"}}'] * 6) + b"]}", 400, "too_many_items", "tools"),
    ("nested too deep", "chat/completions", deep(40), 400, "json_too_deep", None),
    ("nested absurdly deep", "chat/completions", b'{"model": "gpt-test", "messages": [{"role": "user", '
     b'"content": "x"}], "metadata": ' + b"[" * 3000 + b"]" * 3000 + b"}", 400, "json_too_deep", None),
    ("body too large", "chat/completions", b'{"model": "gpt-test", "messages": [{"role": "user", "content": "'
     + b"x" * MAX_BODY + b'"}]}', 413, "request_too_large", None),
    ("unknown model", "chat/completions", b'{"model": "nope", "messages": [{"role": "user", "content": "x"}]}',
     404, "model_not_found", "model"),
    ("responses without input", "responses", b'{"model": "gpt-test"}', 400, None, "input"),
    ("responses input number", "responses", b'{"model": "gpt-test", "input": 3}', 400, None, "input"),
    ("embeddings without input", "embeddings", b'{"model": "embed-test"}', 400, None, "input"),
    ("embeddings empty input", "embeddings", b'{"model": "embed-test", "input": []}', 400, None, "input"),
]


@pytest.fixture
def small_gateway(gateway_factory: Callable[..., Gateway], openai_upstream: Server) -> Gateway:
    config = base_config(openai_upstream.url)
    config["server"].update(max_body_bytes=MAX_BODY, max_json_depth=32, max_messages=20, max_tools=5)
    return gateway_factory(config)


@pytest.mark.parametrize(("name", "path", "body", "status", "code", "param"), CASES, ids=[c[0] for c in CASES])
def test_bad_input(small_gateway: Gateway, name: str, path: str, body: bytes, status: int, code: str | None,
                   param: str | None) -> None:
    response = httpx.post(f"{small_gateway.base_url}/{path}", content=body,
                          headers={"Authorization": f"Bearer {TENANT_KEY}", "Content-Type": "application/json"})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "code", "param"}
    assert error["type"] == "invalid_request_error"
    assert len(error["message"]) > 20  # says what to fix
    if code is not None:
        assert error["code"] == code
    if param is not None:
        assert error["param"] == param
    assert response.headers["x-request-id"]


def test_body_over_limit_by_content_length_is_refused_before_reading(small_gateway: Gateway) -> None:
    def endless():
        yield b'{"model": "gpt-test", "messages": [{"role": "user", "content": "'
        for _ in range(1000):
            yield b"x" * 1024

    response = httpx.post(f"{small_gateway.base_url}/chat/completions", content=endless(),
                          headers={"Authorization": f"Bearer {TENANT_KEY}"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/v1/nothing", 404), ("GET", "/v1/chat/completions", 405), ("DELETE", "/v1/models", 405)])
def test_unknown_routes_get_the_envelope(small_gateway: Gateway, method: str, path: str, status: int) -> None:
    response = httpx.request(method, f"{small_gateway.url}{path}", headers={"Authorization": f"Bearer {TENANT_KEY}"})
    assert response.status_code == status
    assert response.json()["error"]["message"]
    assert response.headers["x-request-id"]


def test_a_refused_body_is_counted_under_its_alias_when_the_alias_is_known(small_gateway: Gateway) -> None:
    for model in ("gpt-test", "no-such-alias"):
        response = httpx.post(f"{small_gateway.base_url}/chat/completions", json={"model": model, "messages": "hi"},
                              headers={"Authorization": f"Bearer {TENANT_KEY}"})
        assert response.status_code == 400
    metrics = httpx.get(f"{small_gateway.url}/metrics").text
    assert 'lockgate_requests_total{model="gpt-test",provider="",status="400",tenant="acme"} 1.0' in metrics
    # A name from the request that is no configured alias never becomes a label.
    assert "no-such-alias" not in metrics
    assert 'lockgate_requests_total{model="unknown",provider="",status="400",tenant="acme"} 1.0' in metrics
