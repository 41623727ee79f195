"""Request logs: one structured line per request, over real HTTP, with the real formatter.

The gateway logs on `lockgate.requests`; the tests read the lines the way a log shipper
would (formatted by `JsonFormatter`), and, through `lockgate serve` in a subprocess, the
process's real stdout in JSON and text form.
"""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from gateway.config.model import LogsConfig
from gateway.exchange import Exchange
from gateway.logsetup import LineHandler, LineWriter
from gateway.request_log import (
    CONTENT_LIMIT,
    LOGGER_NAME,
    JsonFormatter,
    RequestLine,
    RequestLog,
    answer_text,
    last_user_text,
    request_fields,
)
from gateway.usage import Usage
from tests.fakes import openai_server
from tests.fakes.openai_server import Script, State
from tests.harness import (
    OTHER_TENANT_KEY,
    TENANT_KEY,
    Gateway,
    Pair,
    Server,
    base_config,
    fault_config,
    sha,
)
from tests.policy_setup import policy_config

FIXTURES = Path(__file__).parent / "fixtures" / "request_log"
USAGE = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18,
         "prompt_tokens_details": {"cached_tokens": 3},
         "completion_tokens_details": {"reasoning_tokens": 2}}
PRICES = {"gpt-test-upstream": {"input": 1.0, "cached_input": 0.5, "output": 2.0}}
SECRET = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789"
BOGUS_KEY = "lg-not-a-real-key-but-secret-0123456789"


class Lines(logging.Handler):
    """The request log as a log shipper reads it: JSON lines, parsed back."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.raw: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.raw.append(self.format(record))

    @property
    def entries(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.raw]

    def wait_for(self, count: int) -> list[dict[str, Any]]:
        deadline = time.monotonic() + 5
        while len(self.raw) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.entries

    def of(self, response: httpx.Response) -> dict[str, Any]:
        """The line of `response`'s request (another test's late stream may log here too)."""
        request_id = response.headers["X-Request-Id"]
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            found = [entry for entry in self.entries if entry["request_id"] == request_id]
            if found:
                [entry] = found
                return entry
            time.sleep(0.01)
        raise AssertionError(f"no log line for {request_id}")


@pytest.fixture
def lines() -> Iterator[Lines]:
    handler = Lines()
    logger = logging.getLogger("lockgate.requests")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def chat(gateway: Gateway, body: dict[str, Any], key: str = TENANT_KEY, **headers: str) -> httpx.Response:
    return httpx.post(f"{gateway.base_url}/chat/completions", json=body, timeout=30,
                      headers={"Authorization": f"Bearer {key}", **headers})


def logged_config(upstream_url: str, **logs: Any) -> dict[str, Any]:
    config = base_config(upstream_url, pricing={"models": PRICES})
    config["telemetry"] = {"logs": {"format": "json", **logs}}
    return config


def test_a_success_is_one_line_with_every_field(gateway_factory: Callable[..., Gateway], openai_upstream: Server,
                                                upstream_state: State, lines: Lines) -> None:
    gateway = gateway_factory(logged_config(openai_upstream.url))
    upstream_state.queue.append(Script(content="hello there", usage=USAGE))
    response = chat(gateway, {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]},
                    **{"X-Lockgate-Agent": "support-bot"})
    assert response.status_code == 200, response.text
    entry = lines.of(response)
    assert entry["level"] == "INFO" and entry["logger"] == "lockgate.requests" and entry["message"] == "request"
    assert entry["ts"].endswith("+00:00")
    assert {key: entry[key] for key in (
        "request_id", "tenant", "agent", "api", "alias", "stream", "provider", "model", "status", "error_type",
        "input_tokens", "output_tokens", "cached_tokens", "cache_write_tokens", "reasoning_tokens",
        "tokens_estimated", "attempts", "failovers", "attempt_errors", "decisions")} == {
        "request_id": response.headers["X-Request-Id"], "tenant": "acme", "agent": "support-bot", "api": "chat",
        "alias": "gpt-test", "stream": False, "provider": "upstream", "model": "gpt-test-upstream",
        "status": 200, "error_type": None, "input_tokens": 11, "output_tokens": 7, "cached_tokens": 3,
        "cache_write_tokens": 0, "reasoning_tokens": 2, "tokens_estimated": False, "attempts": 1,
        "failovers": 0, "attempt_errors": [], "decisions": []}
    # 8 fresh input tokens at $1, 3 cached at $0.50, 7 output at $2 (per million).
    assert entry["cost_usd"] == pytest.approx((8 * 1.0 + 3 * 0.5 + 7 * 2.0) / 1e6)
    assert entry["latency_ms"] > 0 and entry["upstream_ms"] > 0
    assert 0 <= entry["overhead_ms"] <= entry["latency_ms"]
    assert entry["ttft_ms"] is None  # not a stream
    assert "prompt" not in entry and "answer" not in entry  # no content unless asked for
    assert TENANT_KEY not in json.dumps(entry) and openai_server.API_KEY not in json.dumps(entry)


def test_a_stream_logs_its_ttft_after_it_ends(gateway_factory: Callable[..., Gateway], openai_upstream: Server,
                                             upstream_state: State, lines: Lines) -> None:
    gateway = gateway_factory(logged_config(openai_upstream.url))
    upstream_state.queue.append(Script(content="one two three", usage=USAGE))
    response = chat(gateway, {"model": "gpt-test", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 200 and "[DONE]" in response.text
    entry = lines.of(response)
    assert entry["stream"] is True and entry["status"] == 200
    assert entry["input_tokens"] == 11 and entry["output_tokens"] == 7
    assert 0 < entry["ttft_ms"] <= entry["latency_ms"]


def test_an_upstream_failure_names_every_failed_attempt(gateway_factory: Callable[..., Gateway], pair: Pair,
                                                        lines: Lines) -> None:
    # Patient bounds: a slow first answer on a loaded machine must not turn a 503 into a timeout.
    gateway = gateway_factory(fault_config(pair, timeout_s=10, first_token_timeout_s=10))
    pair.primary.queue += [Script(status=503), Script(status=503)]
    pair.backup.queue += [Script(status=500), Script(status=500)]
    response = chat(gateway, {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 502, response.text
    entry = lines.of(response)
    assert entry["status"] == 502 and entry["error_type"] == "upstream_error"
    assert entry["attempts"] == 4 and entry["failovers"] == 1
    assert entry["attempt_errors"] == ["upstream/primary-model: http_503", "upstream/primary-model: http_503",
                                       "backup/backup-model: http_500", "backup/backup-model: http_500"]
    assert entry["input_tokens"] == 0 and entry["cost_usd"] is None


def test_a_policy_denial_records_the_decision_and_no_upstream(gateway_factory: Callable[..., Gateway],
                                                              openai_upstream: Server, upstream_state: State,
                                                              tmp_path: Path, lines: Lines) -> None:
    gateway = gateway_factory(policy_config(openai_upstream.url, tmp_path))
    tool = {"type": "function", "function": {"name": "run_shell", "parameters": {"type": "object"}}}
    response = chat(gateway, {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}],
                              "tools": [tool]})
    assert response.status_code == 403, response.text
    entry = lines.of(response)
    assert entry["status"] == 403 and entry["error_type"] == "policy"
    assert [decision.split("=")[0] for decision in entry["decisions"]] == ["whitelist/tool-whitelist"]
    assert entry["provider"] is None and entry["attempts"] == 0
    assert upstream_state.requests == []


def test_a_refused_key_is_logged_without_the_key(gateway: Gateway, lines: Lines) -> None:
    response = chat(gateway, {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}, BOGUS_KEY)
    assert response.status_code == 401
    entry = lines.of(response)
    assert entry["status"] == 401 and entry["tenant"] is None
    assert BOGUS_KEY not in json.dumps(entry)


def test_content_is_logged_only_when_enabled(gateway_factory: Callable[..., Gateway], openai_upstream: Server,
                                             upstream_state: State, lines: Lines) -> None:
    gateway = gateway_factory(logged_config(openai_upstream.url, content=True))
    long_answer = "word " * CONTENT_LIMIT
    upstream_state.queue.append(Script(content=long_answer))
    question = f"my key is {SECRET}, what is the weather?"
    response = chat(gateway, {"model": "gpt-test", "messages": [
        {"role": "user", "content": "earlier"}, {"role": "assistant", "content": "ok"},
        {"role": "user", "content": question}]})
    assert response.status_code == 200
    entry = lines.of(response)
    assert entry["prompt"] == question.replace(SECRET, "[openai_key]")
    assert entry["answer"] == long_answer[:CONTENT_LIMIT] + "…"
    assert SECRET not in json.dumps(entry)


def test_format_off_logs_nothing(gateway_factory: Callable[..., Gateway], openai_upstream: Server,
                                 lines: Lines) -> None:
    gateway = gateway_factory(logged_config(openai_upstream.url, format="off"))
    response = chat(gateway, {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 200
    # A JSON answer is sent after the request's observers ran: a line would be there now.
    assert lines.raw == []


CASES = json.loads((FIXTURES / "content.json").read_text())


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_content_extraction(case: dict[str, Any]) -> None:
    assert last_user_text(case["api"], case["body"]) == case["prompt"]
    assert answer_text(case["api"], case["answer"]) == case["answer_text"]


# -- lockgate serve: the process's stdout ---------------------------------------------------

def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve_and_call(tmp_path: Path, log_format: str, requests: int = 1) -> list[str]:
    """Run `lockgate serve` on the mock provider, make requests, stop it; its stdout lines.

    Its stdout is read only once it stopped: a pipe nobody reads, as a stuck log shipper."""
    port = free_port()
    config = {"server": {"host": "127.0.0.1", "port": port}, "storage": {"url": f"sqlite:///{tmp_path / 'l.db'}"},
              "providers": {"mock": {"type": "mock"}},
              "models": {"demo": {"targets": [{"provider": "mock", "model": "mock-1"}]}},
              "tenants": {"globex": {"keys": [sha(OTHER_TENANT_KEY)]}},
              "telemetry": {"logs": {"format": log_format}}}
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    process = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--config", str(path)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
                               env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}/v1", timeout=5,
                          headers={"Authorization": f"Bearer {OTHER_TENANT_KEY}"}) as client:
            deadline = time.monotonic() + 30
            while True:
                try:
                    client.get("/models")
                    break
                except httpx.TransportError:
                    assert process.poll() is None and time.monotonic() < deadline, "the gateway did not start"
                    time.sleep(0.1)
            for _ in range(requests):
                response = client.post("/chat/completions", json={
                    "model": "demo", "messages": [{"role": "user", "content": "hi"}]})
                assert response.status_code == 200, response.text
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    return output.splitlines()


def test_serve_writes_json_lines_to_stdout(tmp_path: Path) -> None:
    output = serve_and_call(tmp_path, "json")
    logged = [json.loads(line) for line in output if line.startswith("{")]
    requests = [entry for entry in logged if entry["logger"] == "lockgate.requests"]
    assert len(requests) == 1, output
    assert requests[0]["tenant"] == "globex" and requests[0]["model"] == "mock-1" and requests[0]["status"] == 200
    # The other log lines are JSON too (start-up, drain, stop).
    assert any(entry["logger"] != "lockgate.requests" for entry in logged), output
    assert OTHER_TENANT_KEY not in "\n".join(output)


def test_serve_writes_a_readable_line_in_text_format(tmp_path: Path) -> None:
    output = serve_and_call(tmp_path, "text")
    [line] = [line for line in output if " lockgate.requests " in line]
    assert " INFO " in line and "globex" in line and "demo -> mock/mock-1 200" in line and "tokens=" in line
    assert not any(line.startswith("{") for line in output)


def test_a_stdout_nobody_reads_holds_no_request(tmp_path: Path) -> None:
    # 400 JSON lines are several times what a pipe holds: the writer thread blocks, requests do not.
    output = serve_and_call(tmp_path, "json", requests=400)
    assert sum(1 for line in output if '"logger":"lockgate.requests"' in line) == 400


def test_an_agent_name_cannot_forge_log_lines(gateway_factory: Callable[..., Gateway], openai_upstream: Server,
                                              upstream_state: State, lines: Lines) -> None:
    gateway = gateway_factory(logged_config(openai_upstream.url))
    upstream_state.queue.append(Script(content="ok"))
    forged = "bot\nreq_FORGED admin/root chat gpt-test -> upstream/x 200"
    response = chat(gateway, {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}],
                              "metadata": {"agent": forged}})
    entry = lines.of(response)
    assert entry["agent"] == "bot?req_FORGED admin/root chat gpt-test -> upstream/x 200"


def finished_exchange() -> Exchange:
    exchange = Exchange(request_id="req_direct", api="chat", alias="gpt-test", agent="bot\nforged")
    exchange.usage = Usage(input_tokens=11, output_tokens=7, cached_tokens=3)
    exchange.cost_usd, exchange.decisions = 0.25, ["acme/tag-it:tag"]
    exchange.finished = exchange.started + 0.01
    return exchange


def log_through_serve_logging(exchange: Exchange, adjust: Callable[[LineHandler], None] = lambda handler: None
                              ) -> tuple[list[str], list[logging.LogRecord]]:
    """The request log of `exchange` with `lockgate serve`'s logging (`adjust` changes its
    handler or loggers first): the lines written, and the log records made meanwhile."""
    stream = io.StringIO()
    writer = LineWriter(stream, interval_s=0.01)
    handler = LineHandler(writer)
    handler.setFormatter(JsonFormatter())
    root, logger = logging.getLogger(), logging.getLogger(LOGGER_NAME)
    saved_handlers, saved_level, saved_filters = root.handlers[:], logger.level, logger.filters[:]
    made: list[logging.LogRecord] = []
    make_record = logging.getLogRecordFactory()

    def counting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        made.append(record := make_record(*args, **kwargs))
        return record

    root.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    adjust(handler)
    logging.setLogRecordFactory(counting_factory)
    try:
        RequestLog(lambda: LogsConfig(format="json"))(exchange)
    finally:
        logging.setLogRecordFactory(make_record)
        root.handlers[:] = saved_handlers
        logger.setLevel(saved_level)
        logger.filters[:] = saved_filters
        writer.stop()
    return stream.getvalue().splitlines(), made


@pytest.mark.parametrize("adjust", [
    lambda handler: handler.setLevel(logging.WARNING),
    lambda handler: logging.getLogger(LOGGER_NAME).addFilter(lambda record: False),
    lambda handler: handler.addFilter(lambda record: False),
], ids=["handler level above info", "a filter on the request logger", "a filter on the handler"])
def test_serve_logging_keeps_what_logging_would_drop(adjust: Callable[[LineHandler], None]) -> None:
    lines, _ = log_through_serve_logging(finished_exchange(), adjust)
    assert lines == []


def test_serve_logging_writes_the_formatters_line_without_making_a_record() -> None:
    """Under `lockgate serve` the request log skips `logging`'s records (`_json_line_writer`):
    its line must be the one `JsonFormatter` makes of the record, field for field, in order."""
    exchange = finished_exchange()
    lines, made = log_through_serve_logging(exchange)
    assert made == []
    [written] = lines
    record = logging.LogRecord(LOGGER_NAME, logging.INFO, __file__, 0, RequestLine(request_fields(exchange)),
                               None, None)
    direct, formatted = json.loads(written), json.loads(JsonFormatter().format(record))
    assert list(direct) == list(formatted)
    assert {**direct, "ts": None} == {**formatted, "ts": None}
    assert direct["message"] == "request" and direct["agent"] == "bot?forged" and direct["cached_tokens"] == 3
