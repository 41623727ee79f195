"""Anthropic and Gemini streams that stop part-way are metered from what the provider had
already reported: the prompt (cache reads and writes included) exactly, the output as
reported, or estimated from the text relayed when the provider had not counted it yet.

Real fake upstreams speaking each provider's wire format, the official `openai` SDK as
the client, and the rows read back from the gateway's SQLite ledger.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest
from openai import OpenAI

from gateway.tokens import tokens_for_bytes
from tests.fakes import anthropic_server, gemini_server, openai_server
from tests.harness import TENANT_KEY, BackgroundLoop, Gateway, Server, base_config, ledger_row, start_app
from tests.providers_matrix import make_fake

PRICES = {
    "claude-sonnet-4-5": {"input": 3.0, "cached_input": 0.3, "cache_write": 3.75, "output": 15.0},
    "gemini-2.5-flash": {"input": 0.3, "cached_input": 0.03, "output": 2.5},
}
MODEL = "gpt-test"  # the alias the harness's tenants may use
PROMPT = [{"role": "user", "content": "Summarise the attached contract, clause by clause. " * 40}]

# Anthropic reports the prompt in `message_start` (uncached 20 + cache read 2700 + cache
# write 300), the output only in `message_delta`, just before `message_stop`.
ANTHROPIC_USAGE = {"input_tokens": 20, "cache_read_input_tokens": 2700, "cache_creation_input_tokens": 300,
                   "output_tokens": 420}
PIECE = "The first clause sets out the parties and the term of the agreement. " * 6  # 420 bytes
ANTHROPIC_TEXT_CHUNKS = 4
# The events: message_start, ping, content_block_start, 4 x content_block_delta,
# content_block_stop, message_delta, message_stop.
AFTER_TWO_DELTAS = 5
BEFORE_MESSAGE_STOP = 9

GEMINI_USAGE = {"promptTokenCount": 3000, "cachedContentTokenCount": 2900, "candidatesTokenCount": 40,
                "thoughtsTokenCount": 500}


def anthropic_cost(output_tokens: int) -> float:
    return (20 * 3.0 + 2700 * 0.3 + 300 * 3.75 + output_tokens * 15.0) / 1e6


Served = tuple[Any, Gateway]


@pytest.fixture
def serve(bg: BackgroundLoop, gateway_factory: Callable[..., Gateway]) -> Iterator[Callable[[str], Served]]:
    """`serve(kind)`: a fake upstream of that kind (its app) and a gateway whose model `gpt-test`
    is the fake's model, priced and not retried."""
    servers = []

    def start(kind: str) -> Served:
        fake = make_fake(kind)
        servers.append(server := bg.run(start_app(fake.app)))
        config = base_config("http://127.0.0.1:9", pricing={"models": PRICES})
        config["providers"] = {"upstream": fake.provider_config(server.url)}
        config["models"] = {MODEL: {"targets": [{"provider": "upstream", "model": fake.model}],
                                  "retry": {"attempts": 1}}}
        return fake.app, gateway_factory(config)

    yield start
    for server in servers:
        bg.run(server.runner.cleanup())


@pytest.fixture
def anthropic(serve: Callable[[str], Served]) -> tuple[anthropic_server.FakeState, Gateway]:
    app, gateway = serve("anthropic")
    return app[anthropic_server.STATE], gateway


def anthropic_script(**options: Any) -> anthropic_server.Script:
    return anthropic_server.Script(
        message={"content": [{"type": "text", "text": PIECE * ANTHROPIC_TEXT_CHUNKS}], "stop_reason": "end_turn",
                 "usage": ANTHROPIC_USAGE},
        text_chunks=ANTHROPIC_TEXT_CHUNKS, **options)


def client(gateway: Gateway) -> OpenAI:
    return OpenAI(base_url=gateway.base_url, api_key=TENANT_KEY, max_retries=0)


def stream_until_failure(gateway: Gateway) -> str:
    """The text the SDK streamed before the gateway's final error event made it raise."""
    text = ""
    with pytest.raises(openai.APIError, match="upstream stream failed"):
        for chunk in client(gateway).chat.completions.create(model=MODEL, messages=PROMPT, stream=True):
            text += "".join(choice.delta.content or "" for choice in chunk.choices)
    assert text, "the failure must come after content reached the client"
    return text


def assert_anthropic_prompt_exact(row: dict[str, Any]) -> None:
    assert (row["input_tokens"], row["cached_tokens"], row["cache_write_tokens"]) == (3020, 2700, 300)


@pytest.mark.parametrize("failure", [{"cut_after": AFTER_TWO_DELTAS}, {"error_after": AFTER_TWO_DELTAS}],
                         ids=["cut", "overloaded_error_event"])
def test_anthropic_stream_failing_after_content_meters_the_reported_prompt(
        anthropic: tuple[anthropic_server.FakeState, Gateway], bg: BackgroundLoop, failure: dict[str, int]) -> None:
    state, gateway = anthropic
    state.queue.append(anthropic_script(**failure))
    text = stream_until_failure(gateway)
    assert text == PIECE * 2
    row = ledger_row(gateway, bg)
    assert (row["status"], row["error_type"]) == (502, "upstream_error")
    assert_anthropic_prompt_exact(row)
    # No message_delta yet: the output is the estimate from the text relayed, so the row says so.
    output = tokens_for_bytes(len(text.encode()))
    assert (row["output_tokens"], row["reasoning_tokens"], row["estimated"]) == (output, 0, 1)
    assert row["cost_usd"] == pytest.approx(anthropic_cost(output), abs=1e-12)


def test_anthropic_stream_cut_after_its_output_was_reported_is_not_estimated(
        anthropic: tuple[anthropic_server.FakeState, Gateway], bg: BackgroundLoop) -> None:
    state, gateway = anthropic
    state.queue.append(anthropic_script(cut_after=BEFORE_MESSAGE_STOP))
    stream_until_failure(gateway)
    row = ledger_row(gateway, bg)
    assert_anthropic_prompt_exact(row)
    assert (row["output_tokens"], row["estimated"]) == (420, 0)
    assert row["cost_usd"] == pytest.approx(anthropic_cost(420), abs=1e-12)


def test_anthropic_responses_stream_cut_meters_the_reported_prompt(
        anthropic: tuple[anthropic_server.FakeState, Gateway], bg: BackgroundLoop) -> None:
    state, gateway = anthropic
    state.queue.append(anthropic_script(cut_after=AFTER_TWO_DELTAS))
    with pytest.raises(openai.APIError):
        for _ in client(gateway).responses.create(model=MODEL, input=PROMPT[0]["content"], stream=True):
            pass
    row = ledger_row(gateway, bg)
    assert row["api"] == "responses"
    assert_anthropic_prompt_exact(row)
    assert (row["output_tokens"], row["estimated"]) == (tokens_for_bytes(len(PIECE.encode()) * 2), 1)


def test_client_leaving_an_anthropic_stream_meters_the_reported_prompt(
        anthropic: tuple[anthropic_server.FakeState, Gateway], bg: BackgroundLoop) -> None:
    state, gateway = anthropic
    state.queue.append(anthropic_script(event_delay_s=0.2))
    stream = client(gateway).chat.completions.create(model=MODEL, messages=PROMPT, stream=True)
    for chunk in stream:
        if any(choice.delta.content for choice in chunk.choices):
            break
    stream.close()
    row = ledger_row(gateway, bg)
    assert row["status"] == 499
    assert_anthropic_prompt_exact(row)
    # The gateway relayed one to four deltas before it saw the client go.
    one_piece = tokens_for_bytes(len(PIECE.encode()))
    assert one_piece <= row["output_tokens"] <= 4 * one_piece and row["estimated"] == 1
    assert row["cost_usd"] == pytest.approx(anthropic_cost(row["output_tokens"]), abs=1e-12)


def test_gemini_stream_cut_after_content_meters_the_last_reported_usage(
        serve: Callable[[str], Served], bg: BackgroundLoop) -> None:
    app, gateway = serve("gemini")
    script = gemini_server.Script.reply({"text": PIECE * 3}, usage=GEMINI_USAGE, events=3, cut_after=2)
    app[gemini_server.STATE].queue.append(script)
    stream_until_failure(gateway)
    assert script.response is not None
    reported = gemini_server.split_events(script.response, 3)[1]["usageMetadata"]  # the last one sent
    candidates, thoughts = reported["candidatesTokenCount"], reported["thoughtsTokenCount"]
    assert 0 < candidates < 40 and 0 < thoughts < 500
    row = ledger_row(gateway, bg)
    assert (row["status"], row["input_tokens"], row["cached_tokens"]) == (502, 3000, 2900)
    assert (row["output_tokens"], row["reasoning_tokens"], row["estimated"]) == (candidates + thoughts, thoughts, 0)
    assert row["cost_usd"] == pytest.approx((100 * 0.3 + 2900 * 0.03 + (candidates + thoughts) * 2.5) / 1e6,
                                            abs=1e-12)


def test_a_stream_failed_over_on_its_first_token_bound_meters_both_prompts(
        bg: BackgroundLoop, gateway_factory: Callable[..., Gateway], openai_upstream: Server) -> None:
    # Claude reported the prompt in `message_start`, then thought past the first-token bound:
    # the backup serves the answer, and the row bills both prompts, each at its own price.
    fake = make_fake("anthropic")
    server = bg.run(start_app(fake.app))
    try:
        config = base_config(openai_upstream.url, pricing={"models": {**PRICES, "backup-model": {"input": 1.0,
                                                                                               "output": 2.0}}})
        config["providers"]["claude"] = fake.provider_config(server.url)
        config["models"] = {MODEL: {"targets": [{"provider": "claude", "model": fake.model},
                                                {"provider": "upstream", "model": "backup-model"}],
                                    "retry": {"attempts": 1}, "first_token_timeout_s": 0.3}}
        gateway = gateway_factory(config)
        fake.app[anthropic_server.STATE].queue.append(anthropic_script(event_delay_s=0.5))
        usage = {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}
        openai_upstream.app[openai_server.STATE].queue.append(openai_server.Script(content="backup", usage=usage))
        chunks = list(client(gateway).chat.completions.create(model=MODEL, messages=PROMPT, stream=True))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "backup"
        row = ledger_row(gateway, bg)
    finally:
        bg.run(server.runner.cleanup())
    assert (row["model"], row["attempts"]) == ("backup-model", 2)
    assert (row["input_tokens"], row["cached_tokens"], row["output_tokens"]) == (3020 + 100, 2700, 10)
    assert row["cost_usd"] == pytest.approx(anthropic_cost(0) + (100 * 1.0 + 10 * 2.0) / 1e6, abs=1e-12)


@pytest.mark.parametrize("api", ["chat", "responses"])
def test_client_leaving_before_the_first_token_meters_the_reported_prompt(
        anthropic: tuple[anthropic_server.FakeState, Gateway], bg: BackgroundLoop, api: str) -> None:
    # Long, mostly cached prompts think long before their first token: `message_start`
    # reported the prompt, and the client gave up before anything else came.
    state, gateway = anthropic
    state.queue.append(anthropic_script(event_delay_s=1.0))
    impatient = OpenAI(base_url=gateway.base_url, api_key=TENANT_KEY, max_retries=0, timeout=0.6)
    with pytest.raises(openai.APITimeoutError):
        if api == "chat":
            list(impatient.chat.completions.create(model=MODEL, messages=PROMPT, stream=True))
        else:
            list(impatient.responses.create(model=MODEL, input=PROMPT[0]["content"], stream=True))
    row = ledger_row(gateway, bg)
    assert row["status"] == 499
    assert_anthropic_prompt_exact(row)
    assert row["cost_usd"] == pytest.approx(anthropic_cost(row["output_tokens"]), abs=1e-12)
