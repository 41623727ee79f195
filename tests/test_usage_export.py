"""Usage export to real receivers: a webhook and a fake Elasticsearch `_bulk` endpoint.

Both are real aiohttp servers. The webhook can fail with 500s or hang; the bulk endpoint
answers per item the way Elasticsearch does (`errors` flag, one item per action, in
order) and can fail chosen documents: a 429 the first time (retried alone) or a mapping
error (refused for good). Requests never wait on any of it.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiohttp import web

from gateway.config.model import UsageExportConfig
from gateway.metrics import Metrics
from gateway.store import LedgerQuery, LedgerRow
from gateway.usage_export import UsageExporter
from tests.harness import TENANT_KEY, BackgroundLoop, Gateway, Server, base_config, start_app, start_gateway

INDEX = "agent-metrics"
API_KEY = "ZXhwb3J0OnNlY3JldA=="
FLAKY_AGENT = "flaky"
"""Documents of this agent get a 429 the first time they reach the bulk endpoint."""
MALFORMED_AGENT = "malformed"
"""Documents of this agent are refused with a mapping error, every time."""


@dataclass
class Receiver:
    rows: list[dict[str, Any]] = field(default_factory=list)
    """Rows accepted (webhook), or documents indexed (bulk), in arrival order."""
    posts: list[list[str]] = field(default_factory=list)
    """Request ids of every POST, accepted or not."""
    headers: list[dict[str, str]] = field(default_factory=list)
    fail_first: int = 0
    hang: asyncio.Event | None = None
    hanging: int = 0
    seen: set[str] = field(default_factory=set)

    def wait_for(self, count: int, timeout_s: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while len(self.rows) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return list(self.rows)


RECEIVER: web.AppKey[Receiver] = web.AppKey("receiver", Receiver)


def webhook_app() -> web.Application:
    app = web.Application()
    app[RECEIVER] = Receiver()

    async def hook(request: web.Request) -> web.Response:
        receiver = request.app[RECEIVER]
        body = await request.json()
        receiver.headers.append(dict(request.headers))
        receiver.posts.append([row["request_id"] for row in body["rows"]])
        if receiver.hang is not None:
            receiver.hanging += 1
            await receiver.hang.wait()
        if len(receiver.posts) <= receiver.fail_first:
            return web.json_response({"error": "down for maintenance"}, status=500)
        receiver.rows.extend(body["rows"])
        return web.json_response({"ok": True})

    app.router.add_post("/hook", hook)
    return app


def bulk_app() -> web.Application:
    """The `_bulk` API: NDJSON action + document pairs in, one item per action out."""
    app = web.Application()
    app[RECEIVER] = Receiver()

    async def bulk(request: web.Request) -> web.Response:
        receiver = request.app[RECEIVER]
        if request.content_type != "application/x-ndjson":
            return web.json_response({"error": "Content-Type must be application/x-ndjson"}, status=406)
        text = await request.text()
        if not text.endswith("\n"):
            return web.json_response({"error": "The bulk request must be terminated by a newline"}, status=400)
        lines = [orjson.loads(line) for line in text.splitlines()]
        receiver.headers.append(dict(request.headers))
        receiver.posts.append([action["index"]["_id"] for action in lines[::2]])
        items = [_index(receiver, action["index"], document) for action, document in zip(lines[::2], lines[1::2],
                                                                                           strict=True)]
        errors = any("error" in item["index"] for item in items)
        return web.json_response({"took": 3, "errors": errors, "items": items})

    app.router.add_post("/_bulk", bulk)
    return app


def _index(receiver: Receiver, action: dict[str, Any], document: dict[str, Any]) -> dict[str, Any]:
    meta = {"_index": action["_index"], "_id": action["_id"]}
    if document.get("agent") == MALFORMED_AGENT:
        return {"index": {**meta, "status": 400, "error": {
            "type": "document_parsing_exception", "reason": "[1:2] failed to parse field [agent]"}}}
    if document.get("agent") == FLAKY_AGENT and action["_id"] not in receiver.seen:
        receiver.seen.add(action["_id"])
        return {"index": {**meta, "status": 429, "error": {
            "type": "es_rejected_execution_exception", "reason": "rejected execution of coordinating operation"}}}
    receiver.rows.append({"_index": action["_index"], "_id": action["_id"], **document})
    return {"index": {**meta, "_version": 1, "result": "created", "status": 201,
                      "_shards": {"total": 1, "successful": 1, "failed": 0}, "_seq_no": 0, "_primary_term": 1}}


def started(bg: BackgroundLoop, app: web.Application, servers: list[Server]) -> tuple[Server, Receiver]:
    server = bg.run(start_app(app))
    servers.append(server)
    return server, app[RECEIVER]


@pytest.fixture
def receivers(bg: BackgroundLoop) -> Any:
    servers: list[Server] = []
    yield lambda app: started(bg, app, servers)
    for server in servers:
        bg.run(server.runner.cleanup())


def exporting(upstream_url: str, *sinks: dict[str, Any]) -> dict[str, Any]:
    config = base_config(upstream_url)
    config["telemetry"] = {"usage_export": [{"interval_s": 0.05, **sink} for sink in sinks]}
    return config


def call(gateway: Gateway, agent: str | None = None) -> str:
    headers = {"Authorization": f"Bearer {TENANT_KEY}", **({"X-Lockgate-Agent": agent} if agent else {})}
    response = httpx.post(f"{gateway.base_url}/chat/completions", headers=headers, timeout=30,
                          json={"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 200, response.text
    return response.headers["X-Request-Id"]


def dropped(gateway: Gateway, sink: str, reason: str) -> float:
    value = gateway.runtime.metrics.registry.get_sample_value(
        "lockgate_usage_export_dropped_total", {"sink": sink, "reason": reason})
    return value or 0.0


def test_a_webhook_receives_every_row_in_batches(gateway_factory: Callable[..., Gateway], openai_upstream: Server,
                                                 receivers: Any) -> None:
    server, receiver = receivers(webhook_app())
    gateway = gateway_factory(exporting(openai_upstream.url, {
        "type": "webhook", "url": f"{server.url}/hook", "batch_size": 2, "api_key": "hook-secret",
        "headers": {"X-Source": "lockgate"}}))
    ids = [call(gateway, agent="bot") for _ in range(5)]
    rows = receiver.wait_for(5)
    assert sorted(row["request_id"] for row in rows) == sorted(ids)
    assert all(len(batch) <= 2 for batch in receiver.posts)
    row = rows[0]
    assert row["tenant"] == "acme" and row["agent"] == "bot" and row["alias"] == "gpt-test"
    assert row["model"] == "gpt-test-upstream" and row["provider"] == "upstream" and row["status"] == 200
    assert row["input_tokens"] > 0 and row["output_tokens"] > 0 and row["latency_ms"] > 0
    assert row["@timestamp"].endswith("+00:00") and row["decisions"] == []
    assert receiver.headers[0]["Authorization"] == "Bearer hook-secret"
    assert receiver.headers[0]["X-Source"] == "lockgate"
    assert receiver.headers[0]["Content-Type"] == "application/json"


def test_elasticsearch_bulk_retries_only_the_failed_items(gateway_factory: Callable[..., Gateway],
                                                          openai_upstream: Server, receivers: Any) -> None:
    server, receiver = receivers(bulk_app())
    gateway = gateway_factory(exporting(openai_upstream.url, {
        "type": "elasticsearch", "url": server.url, "index": INDEX, "api_key": API_KEY}))
    plain = [call(gateway, agent="bot") for _ in range(3)]
    flaky = call(gateway, agent=FLAKY_AGENT)
    malformed = call(gateway, agent=MALFORMED_AGENT)
    documents = receiver.wait_for(4)
    deadline = time.monotonic() + 10
    while dropped(gateway, "elasticsearch", "rejected") == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert dropped(gateway, "elasticsearch", "rejected") == 1  # the malformed one, refused for good
    assert sorted(document["_id"] for document in documents) == sorted([*plain, flaky])
    assert all(document["_index"] == INDEX and document["request_id"] == document["_id"] for document in documents)
    sent = Counter(request_id for post in receiver.posts for request_id in post)
    # Every document went out once; only the one that got a 429 was sent again, on its own.
    assert sent == Counter({**dict.fromkeys(plain, 1), malformed: 1, flaky: 2})
    assert [flaky] in receiver.posts[1:]
    assert all(headers["Authorization"] == f"ApiKey {API_KEY}" for headers in receiver.headers)


def test_a_receiver_that_fails_then_recovers_gets_everything(gateway_factory: Callable[..., Gateway],
                                                             openai_upstream: Server, receivers: Any) -> None:
    server, receiver = receivers(webhook_app())
    receiver.fail_first = 2
    gateway = gateway_factory(exporting(openai_upstream.url, {"type": "webhook", "url": f"{server.url}/hook"}))
    ids = [call(gateway) for _ in range(3)]
    rows = receiver.wait_for(3)
    assert sorted(row["request_id"] for row in rows) == sorted(ids)  # each exactly once
    assert len(receiver.posts) >= 3  # two refused, then accepted
    assert dropped(gateway, "webhook", "rejected") == 0


def test_a_hanging_receiver_does_not_hold_requests(bg: BackgroundLoop, gateway_factory: Callable[..., Gateway],
                                                   openai_upstream: Server, receivers: Any) -> None:
    server, receiver = receivers(webhook_app())
    receiver.hang = asyncio.Event()
    gateway = gateway_factory(exporting(openai_upstream.url, {"type": "webhook", "url": f"{server.url}/hook"}))
    ids = [call(gateway)]
    deadline = time.monotonic() + 10
    while receiver.hanging == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert receiver.hanging == 1, "the exporter never reached the receiver"
    # The exporter is stuck in its POST, in a task of its own: requests go on, and so does the ledger.
    ids += [call(gateway) for _ in range(10)]
    bg.run(gateway.runtime.ledger.flush())
    stored = bg.run(gateway.runtime.store.ledger_rows(LedgerQuery(tenant="acme", since=0, until=time.time() + 1)))
    assert sorted(row["request_id"] for row in stored) == sorted(ids)
    tasks = bg.run(_export_tasks())
    assert [(name, done) for name, done in tasks] == [("lockgate-usage-export-webhook", False)]
    assert receiver.hanging == 1 and receiver.rows == []
    bg.call(receiver.hang.set)
    rows = receiver.wait_for(len(ids))
    assert sorted(row["request_id"] for row in rows) == sorted(ids)


async def _export_tasks() -> list[tuple[str, bool]]:
    return [(task.get_name(), task.done()) for task in asyncio.all_tasks()
            if task.get_name().startswith("lockgate-usage-export")]


def test_rows_of_the_last_requests_are_sent_at_shutdown(bg: BackgroundLoop, openai_upstream: Server,
                                                        receivers: Any, tmp_path: Path) -> None:
    server, receiver = receivers(webhook_app())
    gateway = bg.run(start_gateway(exporting(openai_upstream.url, {
        "type": "webhook", "url": f"{server.url}/hook", "interval_s": 600}), tmp_path / "gateway"))
    try:
        ids = [call(gateway) for _ in range(2)]
        assert receiver.rows == []
    finally:
        bg.run(gateway.server.runner.cleanup())  # the ledger's last flush, then the exporter's
    assert sorted(row["request_id"] for row in receiver.rows) == sorted(ids)


def ledger_row(number: int, agent: str | None = None) -> LedgerRow:
    return LedgerRow(ts=1_700_000_000.0 + number, request_id=f"req_{number:02d}", tenant="acme", agent=agent,
                     alias="gpt-test", provider="upstream", model="gpt-test-upstream", api="chat", stream=False,
                     status=200, input_tokens=number, output_tokens=1)


async def test_a_full_queue_drops_the_oldest_rows_and_counts_them(aiohttp_server: Any) -> None:
    app = webhook_app()
    server = await aiohttp_server(app)
    metrics = Metrics()
    config = UsageExportConfig(type="webhook", url=str(server.make_url("/hook")), interval_s=0.05)
    exporter = UsageExporter(config, metrics, max_queued=4)
    exporter.offer([ledger_row(number) for number in range(1, 8)])
    exporter.offer([ledger_row(number) for number in range(8, 11)])
    assert exporter.queued == 4
    assert metrics.registry.get_sample_value("lockgate_usage_export_dropped_total",
                                             {"sink": "webhook", "reason": "queue_full"}) == 6
    exporter.start()
    await exporter.stop()
    assert [row["request_id"] for row in app[RECEIVER].rows] == ["req_07", "req_08", "req_09", "req_10"]


async def test_a_bulk_retry_carries_only_the_items_that_failed(aiohttp_server: Any) -> None:
    app = bulk_app()
    server = await aiohttp_server(app)
    metrics = Metrics()
    exporter = UsageExporter(UsageExportConfig(type="elasticsearch", url=str(server.make_url("/")), index=INDEX),
                             metrics)
    exporter.offer([ledger_row(1), ledger_row(2, FLAKY_AGENT), ledger_row(3), ledger_row(4, MALFORMED_AGENT)])
    exporter.start()
    await exporter.stop()
    receiver = app[RECEIVER]
    assert receiver.posts == [["req_01", "req_02", "req_03", "req_04"], ["req_02"]]
    assert sorted(document["_id"] for document in receiver.rows) == ["req_01", "req_02", "req_03"]
    assert metrics.registry.get_sample_value("lockgate_usage_export_dropped_total",
                                             {"sink": "elasticsearch", "reason": "rejected"}) == 1
    assert "Authorization" not in receiver.headers[0]  # no api_key configured
