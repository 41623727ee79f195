"""The end-to-end targets: bad requests over real HTTP to a real gateway never get a 5xx.

`start_stack()` starts the test suite's three fake upstreams (OpenAI, Anthropic, Gemini)
and a gateway with an alias on each, small limits and a policy with a rule per stage.
`check_request` posts one generated request (any body, any alias, odd headers) and
`check_query` sends odd query strings to the usage and admin endpoints. A 5xx fails;
when the gateway logged the exception behind it, that very exception is raised again,
so the finding carries the gateway's own traceback. A 502 that only reports a crash of
a fake upstream is the fake's limit, not a finding.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from hypothesis import strategies as st

from fuzz import strategies as s
from fuzz.known import Violation
from fuzz.targets import REQUEST_BYTES
from providers.base import UnsupportedRequest
from tests.harness import ADMIN_KEY, TENANT_KEY, BackgroundLoop, Gateway, Server, base_config, start_app, start_gateway
from tests.providers_matrix import PROVIDERS, make_fake

ALIASES = ("gpt-test", "claude", "gemini", "embed-test", "nope")
PATHS = ("chat/completions", "responses", "embeddings")
POLICY = """\
policy: default
rules:
  - name: no-delete
    tools: {deny: [delete_file]}
  - name: no-passwords
    when: 'user_input.contains("password")'
    action: deny
  - name: scrub-input
    action: redact
    pattern: 'secret-[a-z]+'
  - name: not-root
    stage: tool_call
    when: 'has(tool_call.arguments.path) && tool_call.arguments.path == "/"'
    action: deny
  - name: no-keys-out
    stage: response
    action: redact
    detectors: [openai_key]
"""


class Recorder(logging.Handler):
    """Keeps the records of the gateway's and aiohttp's loggers (any thread)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def take(self) -> list[logging.LogRecord]:
        records, self.records = self.records, []
        return records


@dataclass
class Stack:
    loop: BackgroundLoop
    gateway: Gateway
    upstreams: list[Server]
    recorder: Recorder = field(default_factory=Recorder)
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30))


async def _start(directory: Path) -> tuple[Gateway, list[Server]]:
    fakes = [make_fake(kind) for kind in PROVIDERS]
    servers = [await start_app(fake.app) for fake in fakes]
    config = base_config(servers[0].url)
    config["server"].update(max_body_bytes=64 * 1024, max_json_depth=12, max_messages=8, max_tools=4)
    config["providers"] = {fake.kind: fake.provider_config(server.url) for fake, server in zip(fakes, servers,
                                                                                                strict=True)}
    models = {"gpt-test": ("openai", "gpt-test-upstream"), "claude": ("anthropic", fakes[1].model),
              "gemini": ("gemini", fakes[2].model), "embed-test": ("openai", "text-embedding-test")}
    # A fake that crashes on garbage must not open a circuit: later examples would all get 503.
    never_open = {"failures": 10**9, "min_requests": 10**9}
    config["models"] = {alias: {"targets": [{"provider": provider, "model": model}], "retry": {"attempts": 1},
                                "timeout_s": 10, "circuit": never_open} for alias, (provider, model) in models.items()}
    config["tenants"]["globex"]["models"] = list(models)
    policies = directory / "policies"
    policies.mkdir(parents=True, exist_ok=True)
    (policies / "default.yaml").write_text(POLICY)
    config["policies_dir"] = str(policies)
    return await start_gateway(config, directory), servers


@contextmanager
def running_stack(loop: BackgroundLoop, directory: Path | None = None) -> Iterator[Stack]:
    gateway, servers = loop.run(_start(directory or Path(tempfile.mkdtemp(prefix="lockgate-fuzz-http-"))))
    stack = Stack(loop, gateway, servers)
    loggers = [logging.getLogger(name) for name in ("lockgate", "aiohttp")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(stack.recorder)
        logger.setLevel(logging.INFO)
    try:
        yield stack
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(stack.recorder)
            logger.setLevel(level)
        stack.client.close()
        for server in [gateway.server, *servers]:
            loop.run(server.runner.cleanup())


def _header_text() -> st.SearchStrategy[bytes]:
    # What an HTTP client can send at all: no control characters, no padding whitespace.
    text = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), max_size=40)
    return text.map(lambda value: value.strip(" \t").encode())


REQUESTS = st.tuples(
    st.sampled_from(PATHS),
    st.one_of(s.CHAT_BODY, s.RESPONSES_BODY, s.EMBEDDINGS_BODY, s.JSON, REQUEST_BYTES),
    st.sampled_from(ALIASES),
    st.fixed_dictionaries({}, optional={"X-Lockgate-Agent": _header_text(), "X-Lockgate-Approval": _header_text()}),
)
QUERY_PATHS = ("/v1/usage", "/admin/usage", "/admin/approvals", "/admin/reviews", "/admin/audit", "/admin/requests",
               "/v1/models", "/admin/tenants")
QUERIES = st.tuples(st.sampled_from(QUERY_PATHS), st.dictionaries(
    st.sampled_from(["since", "until", "by", "tenant", "status", "limit", "request_id", "x"]),
    st.text(max_size=24) | st.sampled_from(["99999999999999d", "1e400", "-1", "0", "1e18", "now", "2024-02-30"]),
    max_size=4))


def _with_alias(body: Any, alias: str) -> bytes:
    if isinstance(body, bytes):
        return body
    if isinstance(body, dict) and isinstance(body.get("model"), str):
        body = {**body, "model": alias}
    return orjson.dumps(body)


def check_request(stack: Stack, case: tuple[str, Any, str, dict[str, bytes]]) -> None:
    path, body, alias, headers = case
    stack.recorder.take()
    response = stack.client.post(f"{stack.gateway.base_url}/{path}", content=_with_alias(body, alias),
                                 headers={"Authorization": f"Bearer {TENANT_KEY}",
                                          "Content-Type": "application/json", **headers})
    # A known cause gets its own name, so that tolerating it does not hide every other 5xx.
    streamed_embeddings = path == "embeddings" and isinstance(body, dict) and body.get("stream") is True
    _judge(stack, response, "embeddings-stream-5xx" if streamed_embeddings else "http-5xx")


def check_query(stack: Stack, case: tuple[str, dict[str, str]]) -> None:
    path, params = case
    key = TENANT_KEY if path.startswith("/v1/") else ADMIN_KEY
    stack.recorder.take()
    response = stack.client.get(f"{stack.gateway.url}{path}", params=params, headers={"Authorization": f"Bearer {key}"})
    _judge(stack, response, "http-5xx")


def _judge(stack: Stack, response: httpx.Response, kind: str) -> None:
    records = stack.recorder.take()
    crashes = [record for record in records if record.exc_info and record.name.startswith("lockgate")]
    if crashes:
        exc_info = crashes[0].exc_info
        assert exc_info is not None and exc_info[1] is not None
        if isinstance(exc_info[1], UnsupportedRequest):
            # One bug however many translators raise it: the pipeline answers it with a 500.
            raise Violation("unsupported-request-is-500", f"{response.status_code}: {exc_info[1]}") from exc_info[1]
        raise exc_info[1]
    failed_in_stream = b'"type":"server_error"' in response.content
    if response.status_code < 500 and not failed_in_stream:
        return
    if any(record.exc_info for record in records if record.name.startswith("aiohttp")):
        return  # a fake upstream crashed on the input: the fake's limit, not the gateway's
    raise Violation(kind, f"{response.status_code}: {response.text[:500]}")
