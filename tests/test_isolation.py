"""The isolation matrix: every route the app registers, called by every kind of caller.

Callers: no key, an unknown key, tenant A's key, tenant B's key, the admin key. Public
operations endpoints answer everyone; the model endpoints and /v1/usage need a tenant
key (the admin key is not one: 401); /admin/* needs the admin key (401 without a valid
key, 403 for a tenant key). The routes come from `app.router.routes()`, so a new
endpoint fails `test_every_route_is_classified` until it is given a row in `ROUTES`.

Then what the statuses alone cannot show: /v1/usage counts only the caller's tenant,
approvals are seen and decided only through the admin API and redeemed only by the
tenant they were given to, and keys arrive the ways clients send them (x-api-key,
padded, very long, non-ASCII) without ever matching the wrong tenant. No timing is
asserted anywhere: a test machine's clock says nothing about a production one's.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from gateway.cli import main as cli
from tests.harness import ADMIN_KEY, OTHER_TENANT_KEY, TENANT_KEY, BackgroundLoop, Gateway, Server, base_config, sha

THIRD_KEY = "lg-test-initech-key"
CALLERS: dict[str, str | None] = {"no key": None, "unknown key": "lg-test-nobody-key", "tenant A": TENANT_KEY,
                                  "tenant B": OTHER_TENANT_KEY, "admin": ADMIN_KEY}
EXPORT = "export everything please"
POLICY = """\
policy: default
rules:
  - name: exports-need-approval
    when: 'user_input.contains("export everything")'
    action: require_approval
    approval: {mode: defer, timeout_s: 600}
"""

PUBLIC = {caller: 200 for caller in CALLERS}
TENANT_ONLY = {"no key": 401, "unknown key": 401, "tenant A": 200, "tenant B": 200, "admin": 401}
ADMIN_ONLY = {"no key": 401, "unknown key": 401, "tenant A": 403, "tenant B": 403, "admin": 200}
CHAT = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}


@dataclass(frozen=True)
class Row:
    expected: dict[str, int]
    path: str
    """The concrete path to call ({id} is a fresh approval of tenant A)."""
    body: dict[str, Any] | None = None


ROUTES: dict[tuple[str, str], Row] = {
    ("POST", "/v1/chat/completions"): Row(TENANT_ONLY, "/v1/chat/completions", CHAT),
    ("POST", "/v1/responses"): Row(TENANT_ONLY, "/v1/responses", {"model": "gpt-test", "input": "hi"}),
    ("POST", "/v1/embeddings"): Row(TENANT_ONLY, "/v1/embeddings", {"model": "embed-test", "input": "hi"}),
    ("GET", "/v1/models"): Row(TENANT_ONLY, "/v1/models"),
    ("GET", "/v1/models/{model}"): Row(TENANT_ONLY, "/v1/models/gpt-test"),
    ("GET", "/v1/usage"): Row(TENANT_ONLY, "/v1/usage"),
    ("GET", "/admin/usage"): Row(ADMIN_ONLY, "/admin/usage"),
    ("GET", "/admin/approvals"): Row(ADMIN_ONLY, "/admin/approvals"),
    ("GET", "/admin/approvals/{id}"): Row(ADMIN_ONLY, "/admin/approvals/{id}"),
    ("POST", "/admin/approvals/{id}/approve"): Row(ADMIN_ONLY, "/admin/approvals/{id}/approve"),
    ("POST", "/admin/approvals/{id}/deny"): Row(ADMIN_ONLY, "/admin/approvals/{id}/deny", {"reason": "no"}),
    ("GET", "/admin/reviews"): Row(ADMIN_ONLY, "/admin/reviews"),
    ("GET", "/admin/audit"): Row(ADMIN_ONLY, "/admin/audit"),
    ("GET", "/admin/requests"): Row(ADMIN_ONLY, "/admin/requests"),
    ("GET", "/admin/circuits"): Row(ADMIN_ONLY, "/admin/circuits"),
    ("GET", "/admin/tenants"): Row(ADMIN_ONLY, "/admin/tenants"),
    ("POST", "/admin/reload"): Row(ADMIN_ONLY, "/admin/reload"),
    ("GET", "/healthz"): Row(PUBLIC, "/healthz"),
    ("GET", "/readyz"): Row(PUBLIC, "/readyz"),
    ("GET", "/metrics"): Row(PUBLIC, "/metrics"),
    # The dashboard: a static page that asks the operator for the admin key itself.
    ("GET", "/ui"): Row(PUBLIC, "/ui"),
    ("GET", "/ui/"): Row(PUBLIC, "/ui/"),
    ("GET", "/ui/static/{name}"): Row(PUBLIC, "/ui/static/app.js"),
}


@pytest.fixture
def gateway(gateway_factory: Callable[..., Gateway], openai_upstream: Server, tmp_path: Path) -> Gateway:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "default.yaml").write_text(POLICY)
    config = base_config(openai_upstream.url, policies_dir=str(policies))
    del config["tenants"]["globex"]["models"]
    config["tenants"]["initech"] = {"keys": [sha(THIRD_KEY)], "models": ["gpt-test"]}
    return gateway_factory(config)


def registered(gateway: Gateway) -> list[tuple[str, str]]:
    """(method, path template) of every route; HEAD is aiohttp's automatic twin of a GET."""
    return sorted({(route.method, route.resource.canonical) for route in gateway.server.app.router.routes()
                   if route.resource is not None})


def headers(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key is not None else {}


def new_approval(gateway: Gateway, key: str = TENANT_KEY) -> str:
    """A pending approval, created by a request of the tenant with `key`."""
    answer = httpx.post(f"{gateway.base_url}/chat/completions", headers=headers(key),
                        json={**CHAT, "messages": [{"role": "user", "content": EXPORT}]})
    assert answer.status_code == 403 and answer.json()["error"]["code"] == "approval_required", answer.text
    return answer.json()["error"]["approval_id"]


def call(gateway: Gateway, method: str, row: Row, key: str | None) -> httpx.Response:
    path = row.path.replace("{id}", new_approval(gateway)) if "{id}" in row.path else row.path
    return httpx.request(method, f"{gateway.url}{path}", headers=headers(key), json=row.body, timeout=30)


def test_every_route_is_classified(gateway: Gateway) -> None:
    routes = registered(gateway)
    unclassified = [route for route in routes if (("GET" if route[0] == "HEAD" else route[0]), route[1]) not in ROUTES]
    assert not unclassified, f"classify these routes in ROUTES (tests/test_isolation.py): {unclassified}"
    assert ("POST", "/v1/chat/completions") in routes and ("GET", "/admin/approvals") in routes


@pytest.mark.parametrize("caller", list(CALLERS))
def test_isolation_matrix(gateway: Gateway, caller: str) -> None:
    wrong = []
    for method, template in registered(gateway):
        row = ROUTES.get(("GET" if method == "HEAD" else method, template))
        if row is None:
            continue  # test_every_route_is_classified names it
        response = call(gateway, method, row, CALLERS[caller])
        expected = row.expected[caller]
        if response.status_code != expected:
            wrong.append(f"{method} {template}: {response.status_code}, expected {expected} ({response.text[:120]})")
        elif expected >= 400 and method != "HEAD":
            error = response.json()["error"]
            kind = "authentication_error" if expected == 401 else "permission_error"
            if error["type"] != kind or not error["message"]:
                wrong.append(f"{method} {template}: error {error}, expected type {kind}")
    assert not wrong, f"{caller}:\n" + "\n".join(wrong)


def test_usage_counts_only_the_callers_tenant(gateway: Gateway) -> None:
    for key in (TENANT_KEY, TENANT_KEY, OTHER_TENANT_KEY):
        assert httpx.post(f"{gateway.base_url}/chat/completions", headers=headers(key), json=CHAT).status_code == 200

    def usage(key: str, path: str = "/v1/usage", **params: str) -> dict[str, Any]:
        answer = httpx.get(f"{gateway.url}{path}", headers=headers(key), params=params)
        assert answer.status_code == 200, answer.text
        return answer.json()

    assert (usage(TENANT_KEY)["tenant"], usage(TENANT_KEY)["totals"]["requests"]) == ("acme", 2)
    assert (usage(OTHER_TENANT_KEY)["tenant"], usage(OTHER_TENANT_KEY)["totals"]["requests"]) == ("globex", 1)
    # The tenant comes from the key, never from the query.
    assert usage(TENANT_KEY, tenant="globex")["tenant"] == "acme"
    assert usage(TENANT_KEY, tenant="globex")["totals"]["requests"] == 2
    assert usage(OTHER_TENANT_KEY, by="agent", tenant="acme")["totals"]["requests"] == 1
    assert usage(ADMIN_KEY, "/admin/usage", tenant="acme")["totals"]["requests"] == 2
    assert usage(ADMIN_KEY, "/admin/usage")["totals"]["requests"] == 3


def test_models_are_listed_and_served_per_tenant(gateway: Gateway) -> None:
    listed = httpx.get(f"{gateway.base_url}/models", headers=headers(THIRD_KEY)).json()["data"]
    assert [model["id"] for model in listed] == ["gpt-test"]
    assert httpx.get(f"{gateway.base_url}/models/embed-test", headers=headers(THIRD_KEY)).status_code == 404
    refused = httpx.post(f"{gateway.base_url}/embeddings", headers=headers(THIRD_KEY),
                         json={"model": "embed-test", "input": "hi"})
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "model_not_found"


def test_approvals_are_seen_only_through_the_admin_api(gateway: Gateway) -> None:
    approval = new_approval(gateway)
    for key in (TENANT_KEY, OTHER_TENANT_KEY):
        for path in ("/admin/approvals", f"/admin/approvals/{approval}"):
            assert httpx.get(f"{gateway.url}{path}", headers=headers(key)).status_code == 403
        assert httpx.post(f"{gateway.url}/admin/approvals/{approval}/approve", headers=headers(key)).status_code == 403
    listed = httpx.get(f"{gateway.url}/admin/approvals", headers=headers(ADMIN_KEY)).json()["data"]
    assert [(item["id"], item["tenant"], item["status"]) for item in listed] == [(approval, "acme", "pending")]
    assert "digest" not in listed[0]


def test_an_approval_is_redeemed_only_by_its_tenant_and_only_once(gateway: Gateway) -> None:
    approval = new_approval(gateway)
    assert httpx.post(f"{gateway.url}/admin/approvals/{approval}/approve",
                      headers=headers(ADMIN_KEY)).json()["status"] == "approved"
    retry = {**CHAT, "messages": [{"role": "user", "content": EXPORT}]}

    def redeem(key: str) -> httpx.Response:
        return httpx.post(f"{gateway.base_url}/chat/completions", json=retry,
                          headers={**headers(key), "X-Lockgate-Approval": approval})

    stolen = redeem(OTHER_TENANT_KEY)
    assert stolen.status_code == 403 and stolen.json()["error"]["code"] == "approval_denied", stolen.text
    assert redeem(TENANT_KEY).status_code == 200
    replayed = redeem(TENANT_KEY)
    assert replayed.status_code == 403 and replayed.json()["error"]["code"] == "approval_denied"


GOOD_TRANSPORTS = [
    f"Authorization: Bearer {TENANT_KEY}",
    f"Authorization: bearer {TENANT_KEY}",
    f"Authorization: Bearer    {TENANT_KEY}   ",
    f"authorization:Bearer {TENANT_KEY}\t",
    f"x-api-key: {TENANT_KEY}",
    f"X-Api-Key:   {TENANT_KEY}\t ",
]
BAD_TRANSPORTS = [
    f"Authorization: {TENANT_KEY}",
    f"Authorization: Basic {TENANT_KEY}",
    "Authorization: Bearer ",
    f"Authorization: Bearer {TENANT_KEY} {TENANT_KEY}",
    f"Authorization: Bearer {TENANT_KEY[:-1]}",
    f"Authorization: Bearer {TENANT_KEY}x",
    f"Authorization: Bearer {TENANT_KEY.upper()}",
    # A present Authorization header decides, even when it is not a bearer token.
    f"Authorization: Basic dXNlcjpwYXNz\r\nx-api-key: {TENANT_KEY}",
    "x-api-key: ",
    f"api-key: {TENANT_KEY}",
]


def raw_get(gateway: Gateway, path: str, header_lines: str) -> tuple[int, dict[str, Any]]:
    """A GET written byte for byte (HTTP clients refuse to send padded header values)."""
    host, port = gateway.url.removeprefix("http://").split(":")
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{header_lines}\r\nConnection: close\r\n\r\n"
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(request.encode())
        answer = b"".join(iter(lambda: connection.recv(65536), b""))
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), orjson.loads(body)


@pytest.mark.parametrize("sent", GOOD_TRANSPORTS, ids=range(len(GOOD_TRANSPORTS)))
def test_a_key_arrives_the_ways_clients_send_it(gateway: Gateway, sent: str) -> None:
    status, body = raw_get(gateway, "/v1/usage", sent)
    assert status == 200 and body["tenant"] == "acme", body


@pytest.mark.parametrize("sent", BAD_TRANSPORTS, ids=range(len(BAD_TRANSPORTS)))
def test_anything_else_is_no_key(gateway: Gateway, sent: str) -> None:
    status, body = raw_get(gateway, "/v1/usage", sent)
    assert status == 401 and body["error"]["code"] == "invalid_api_key", body


def test_the_admin_key_travels_the_same_ways(gateway: Gateway) -> None:
    for sent in (f"x-api-key: {ADMIN_KEY}", f"Authorization: bearer  {ADMIN_KEY} "):
        assert raw_get(gateway, "/admin/tenants", sent)[0] == 200


LOOKALIKES = [
    TENANT_KEY.replace("e", "\u0435"),  # Cyrillic e
    TENANT_KEY.replace("a", "\uff41"),  # fullwidth a
    TENANT_KEY + "\u200b",  # zero-width space
    TENANT_KEY.replace("-", "\u2010"),  # hyphen
    "lg-test-acmé-key",
    "lg-test-acme\u0301-key",
    "\u202e" + TENANT_KEY,
]


@pytest.mark.parametrize("key", LOOKALIKES, ids=range(len(LOOKALIKES)))
def test_a_non_ascii_look_alike_of_a_key_is_no_key(gateway: Gateway, key: str) -> None:
    for sent in ({"Authorization": b"Bearer " + key.encode()}, {"x-api-key": key.encode()}):
        answer = httpx.get(f"{gateway.base_url}/usage", headers=sent)
        assert answer.status_code == 401 and answer.json()["error"]["code"] == "invalid_api_key", answer.text


def test_bytes_that_are_not_utf8_are_no_key(gateway: Gateway) -> None:
    for raw in (b"\xff\xfe\xfd", TENANT_KEY.encode() + b"\xc3", b"\xed\xa0\x80"):
        answer = httpx.get(f"{gateway.base_url}/usage", headers={"Authorization": b"Bearer " + raw})
        assert answer.status_code == 401 and answer.json()["error"]["code"] == "invalid_api_key"


def test_a_long_key_is_no_key_and_an_endless_one_is_refused(gateway: Gateway) -> None:
    for size in (1024, 7000):
        answer = httpx.get(f"{gateway.base_url}/usage", headers={"Authorization": "Bearer " + "k" * size})
        assert answer.status_code == 401 and answer.json()["error"]["code"] == "invalid_api_key"
    # Past the server's header size limit aiohttp refuses the request before any handler runs.
    answer = httpx.get(f"{gateway.base_url}/usage", headers={"Authorization": "Bearer " + "k" * 200_000})
    assert answer.status_code in (400, 431), answer.status_code


def test_a_minted_key_works_at_once_and_stops_when_revoked(gateway: Gateway, bg: BackgroundLoop,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    config = ["--config", str(gateway.config_path)]
    assert cli(["keys", "create", "--tenant", "globex", "--name", "ci", *config]) == 0
    key = capsys.readouterr().out.strip()
    answer = httpx.get(f"{gateway.base_url}/usage", headers=headers(key))
    assert answer.status_code == 200 and answer.json()["tenant"] == "globex"
    assert cli(["keys", "list", *config]) == 0
    listing = capsys.readouterr().out
    assert key not in listing and key[3:] not in listing  # the list never shows a key
    key_id = listing.splitlines()[1].split()[0]
    assert cli(["keys", "revoke", key_id, *config]) == 0
    bg.run(gateway.runtime.refresh_keys())
    assert httpx.get(f"{gateway.base_url}/usage", headers=headers(key)).status_code == 401
