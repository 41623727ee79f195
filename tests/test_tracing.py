"""Traces over real OTLP/HTTP: a collector in the test decodes what the gateway exports.

The collector is a real aiohttp server that parses each body as the protobuf
`ExportTraceServiceRequest` of `opentelemetry-proto`, the way an OpenTelemetry Collector
does. Without `telemetry.traces` the OpenTelemetry packages are not even imported.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from tests.fakes.openai_server import Script
from tests.harness import (
    TENANT_KEY,
    BackgroundLoop,
    Gateway,
    Pair,
    Server,
    base_config,
    fault_config,
    start_app,
    start_gateway,
)
from tests.policy_setup import policy_config

USAGE = {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25,
         "prompt_tokens_details": {"cached_tokens": 4}, "completion_tokens_details": {"reasoning_tokens": 1}}
TOKEN_HEADER = "x-collector-token"


@dataclass
class Collector:
    spans: list[dict[str, Any]] = field(default_factory=list)
    resources: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)

    def wait_for(self, count: int, timeout_s: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while len(self.spans) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return list(self.spans)


COLLECTOR: web.AppKey[Collector] = web.AppKey("collector", Collector)


def value_of(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [value_of(item) for item in value.array_value.values]
    return getattr(value, kind) if kind else None


def decoded(span: Span) -> dict[str, Any]:
    return {"name": span.name, "kind": span.kind, "trace_id": span.trace_id.hex(), "span_id": span.span_id.hex(),
            "parent_span_id": span.parent_span_id.hex(), "start": span.start_time_unix_nano,
            "end": span.end_time_unix_nano, "status": span.status.code, "status_message": span.status.message,
            "attributes": {attribute.key: value_of(attribute.value) for attribute in span.attributes}}


def collector_app() -> web.Application:
    app = web.Application()
    app[COLLECTOR] = Collector()

    async def export(request: web.Request) -> web.Response:
        if request.content_type != "application/x-protobuf":
            return web.Response(status=415)
        message = ExportTraceServiceRequest.FromString(await request.read())
        collector = request.app[COLLECTOR]
        collector.headers.append(dict(request.headers))
        for resource_spans in message.resource_spans:
            collector.resources.append({attribute.key: value_of(attribute.value)
                                        for attribute in resource_spans.resource.attributes})
            for scope_spans in resource_spans.scope_spans:
                collector.spans.extend(decoded(span) for span in scope_spans.spans)
        return web.Response(body=ExportTraceServiceResponse().SerializeToString(),
                            content_type="application/x-protobuf")

    app.router.add_post("/v1/traces", export)
    return app


@pytest.fixture
def collector_server(bg: BackgroundLoop, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")  # the SDK's own knob: export every 50 ms
    server = bg.run(start_app(collector_app()))
    yield server
    bg.run(server.runner.cleanup())


@pytest.fixture
def collector(collector_server: Server) -> Collector:
    return collector_server.app[COLLECTOR]


def traced(config: dict[str, Any], collector_server: Server, **traces: Any) -> dict[str, Any]:
    config["telemetry"] = {"traces": {"endpoint": f"{collector_server.url}/v1/traces", "service_name": "lockgate-test",
                                      "headers": {TOKEN_HEADER: "t0ken"}, **traces}}
    return config


def chat(gateway: Gateway, body: dict[str, Any], **headers: str) -> httpx.Response:
    return httpx.post(f"{gateway.base_url}/chat/completions", json=body, timeout=30,
                      headers={"Authorization": f"Bearer {TENANT_KEY}", **headers})


HI = [{"role": "user", "content": "hi"}]


def test_a_failover_exports_the_request_span_and_one_span_per_attempt(
        gateway_factory: Callable[..., Gateway], pair: Pair, collector_server: Server, collector: Collector) -> None:
    gateway = gateway_factory(traced(fault_config(pair), collector_server))
    pair.primary.queue += [Script(status=503), Script(status=503)]
    pair.backup.queue.append(Script(content="from the backup", usage=USAGE))
    response = chat(gateway, {"model": "gpt-test", "messages": HI}, **{"X-Lockgate-Agent": "planner"})
    assert response.status_code == 200, response.text
    spans = collector.wait_for(4)
    [request] = [span for span in spans if span["kind"] == Span.SPAN_KIND_SERVER]
    attempts = sorted((span for span in spans if span["kind"] == Span.SPAN_KIND_CLIENT), key=lambda s: s["start"])
    assert request["name"] == "chat gpt-test"
    assert request["status"] == Status.STATUS_CODE_UNSET
    attributes = request["attributes"]
    assert {key: attributes.get(key) for key in (
        "gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.system", "gen_ai.request.model",
        "gen_ai.response.model", "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens",
        "gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.reasoning.output_tokens",
        "http.response.status_code", "lockgate.tenant", "lockgate.agent", "lockgate.request_id",
        "lockgate.provider", "lockgate.attempts", "lockgate.failovers", "lockgate.policy.decisions")} == {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.system": "openai",
        "gen_ai.request.model": "gpt-test", "gen_ai.response.model": "backup-model",
        "gen_ai.usage.input_tokens": 20, "gen_ai.usage.output_tokens": 5,
        "gen_ai.usage.cache_read.input_tokens": 4, "gen_ai.usage.reasoning.output_tokens": 1,
        "http.response.status_code": 200, "lockgate.tenant": "acme", "lockgate.agent": "planner",
        "lockgate.request_id": response.headers["X-Request-Id"], "lockgate.provider": "backup",
        "lockgate.attempts": 3, "lockgate.failovers": 1, "lockgate.policy.decisions": []}
    assert "error.type" not in attributes and "lockgate.cost_usd" not in attributes  # an unpriced model

    assert [(span["name"], span["attributes"]["lockgate.provider"], span["attributes"]["lockgate.attempt"],
             span["attributes"].get("error.type"), span["status"]) for span in attempts] == [
        ("chat primary-model", "upstream", 1, "http_503", Status.STATUS_CODE_ERROR),
        ("chat primary-model", "upstream", 2, "http_503", Status.STATUS_CODE_ERROR),
        ("chat backup-model", "backup", 3, None, Status.STATUS_CODE_UNSET)]
    for span in attempts:
        assert span["trace_id"] == request["trace_id"] and span["parent_span_id"] == request["span_id"]
        assert request["start"] <= span["start"] <= span["end"] <= request["end"]
        assert span["attributes"]["gen_ai.provider.name"] == "openai"
    assert collector.resources[0]["service.name"] == "lockgate-test"
    assert collector.headers[0][TOKEN_HEADER] == "t0ken"


def test_the_attempt_serving_a_stream_lasts_until_the_stream_ends(
        gateway_factory: Callable[..., Gateway], openai_upstream: Server, upstream_state: Any,
        collector_server: Server, collector: Collector) -> None:
    gateway = gateway_factory(traced(base_config(openai_upstream.url), collector_server))
    upstream_state.queue.append(Script(content="one two three four", chunk_delay_s=0.05, usage=USAGE))
    response = chat(gateway, {"model": "gpt-test", "messages": HI, "stream": True})
    assert response.status_code == 200 and "[DONE]" in response.text
    spans = collector.wait_for(2)
    [request] = [span for span in spans if span["kind"] == Span.SPAN_KIND_SERVER]
    [attempt] = [span for span in spans if span["kind"] == Span.SPAN_KIND_CLIENT]
    assert attempt["end"] == request["end"]
    # Four text chunks 50 ms apart come after the first one: the stream lasted well past it.
    ttft_s = request["attributes"]["gen_ai.response.time_to_first_chunk"]
    assert (request["end"] - request["start"]) / 1e9 >= ttft_s + 0.1
    assert request["attributes"]["gen_ai.request.stream"] is True
    assert request["attributes"]["gen_ai.usage.output_tokens"] == 5


def test_a_failed_request_is_an_error_span(gateway_factory: Callable[..., Gateway], pair: Pair,
                                           collector_server: Server, collector: Collector) -> None:
    gateway = gateway_factory(traced(fault_config(pair, with_backup=False), collector_server))
    pair.primary.queue += [Script(status=503), Script(status=503)]
    response = chat(gateway, {"model": "gpt-test", "messages": HI})
    assert response.status_code == 503, response.text
    spans = collector.wait_for(3)
    [request] = [span for span in spans if span["kind"] == Span.SPAN_KIND_SERVER]
    assert request["status"] == Status.STATUS_CODE_ERROR and request["status_message"] == "upstream_error"
    assert request["attributes"]["error.type"] == "upstream_error"
    assert request["attributes"]["http.response.status_code"] == 503
    assert len(spans) == 3


def test_a_policy_denial_has_decisions_and_no_attempt_spans(
        gateway_factory: Callable[..., Gateway], openai_upstream: Server, tmp_path: Path,
        collector_server: Server, collector: Collector) -> None:
    gateway = gateway_factory(traced(policy_config(openai_upstream.url, tmp_path), collector_server))
    tool = {"type": "function", "function": {"name": "run_shell", "parameters": {"type": "object"}}}
    response = chat(gateway, {"model": "gpt-test", "messages": HI, "tools": [tool]})
    assert response.status_code == 403
    [request] = collector.wait_for(1)
    # A refusal is the client's error, not the gateway's: the span status stays unset.
    assert request["status"] == Status.STATUS_CODE_UNSET
    assert request["attributes"]["http.response.status_code"] == 403
    assert request["attributes"]["error.type"] == "policy"
    assert [decision.split("=")[0] for decision in request["attributes"]["lockgate.policy.decisions"]] == [
        "whitelist/tool-whitelist"]
    assert "gen_ai.response.model" not in request["attributes"]
    time.sleep(0.3)  # several export rounds: no attempt span follows
    assert len(collector.spans) == 1


@pytest.mark.parametrize(("ratio", "expected"), [(1.0, ["chat gpt-test", "chat gpt-test-upstream"]), (0.0, [])])
def test_shutdown_flushes_sampled_spans(bg: BackgroundLoop, openai_upstream: Server, collector_server: Server,
                                        collector: Collector, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        ratio: float, expected: list[str]) -> None:
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "600000")  # nothing goes out before the shutdown
    gateway = bg.run(start_gateway(traced(base_config(openai_upstream.url), collector_server, sample_ratio=ratio),
                                   tmp_path / "gateway"))
    try:
        assert chat(gateway, {"model": "gpt-test", "messages": HI}).status_code == 200
        assert collector.spans == []
    finally:
        bg.run(gateway.server.runner.cleanup())
    assert sorted(span["name"] for span in collector.spans) == expected


IMPORTS = """
import asyncio, json, sys, tempfile
from pathlib import Path

import aiohttp

from tests.harness import TENANT_KEY, sha, start_gateway

async def main(telemetry):
    config = {"providers": {"mock": {"type": "mock"}},
              "models": {"demo": {"targets": [{"provider": "mock", "model": "mock-1"}]}},
              "tenants": {"acme": {"keys": [sha(TENANT_KEY)]}}, "telemetry": telemetry}
    gateway = await start_gateway(config, Path(tempfile.mkdtemp()))
    async with aiohttp.ClientSession() as session:
        async with session.post(gateway.base_url + "/chat/completions",
                                headers={"Authorization": "Bearer " + TENANT_KEY},
                                json={"model": "demo", "messages": [{"role": "user", "content": "hi"}]}) as response:
            assert response.status == 200, await response.text()
    await gateway.server.runner.cleanup()

asyncio.run(main(json.loads(sys.argv[1])))
print(json.dumps(sorted(name for name in sys.modules if name.startswith(("opentelemetry", "gateway.tracing")))))
"""


@pytest.mark.parametrize(("telemetry", "loaded"), [
    ({}, False),
    # Sampled out, so that nothing is exported to the (absent) collector.
    ({"traces": {"endpoint": "http://127.0.0.1:9/v1/traces", "sample_ratio": 0}}, True),
], ids=["traces off", "traces on"])
def test_opentelemetry_is_imported_only_when_traces_are_on(tmp_path: Path, telemetry: dict[str, Any],
                                                           loaded: bool) -> None:
    result = subprocess.run([sys.executable, "-c", IMPORTS, json.dumps(telemetry)], capture_output=True,
                            text=True, timeout=60, cwd=Path(__file__).parent.parent)
    assert result.returncode == 0, result.stderr
    modules = json.loads(result.stdout.splitlines()[-1])
    if loaded:
        assert "opentelemetry.sdk.trace" in modules and "gateway.tracing" in modules
    else:
        assert modules == []
