"""The fuzz targets: what is fed in (a strategy) and what must hold (a check).

Each check takes one generated input and raises when Lockgate misbehaves: an exception
the code under test must never raise (anything but the documented one), or a
`Violation` of the target's property. `tolerating()` lets known findings pass (see
fuzz/known.py). tests/test_fuzz.py runs every target at CI size; fuzz/run.py runs them
for minutes.

What a client controls reaches `parse_request`, the request stage (token estimate,
policies) and the request translators, so there only a 4xx `GatewayError` or an
`UnsupportedRequest` may come out. What an upstream controls reaches the stream
translators, the usage watch and the response gates, so there only an `UpstreamError`
(the router fails over or ends the stream with an error event) or a gate `Fail` may.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from hypothesis import strategies as st

from fuzz import gate
from fuzz import strategies as s
from fuzz.known import Violation, known
from gateway.config import ServerConfig
from gateway.errors import GatewayError
from gateway.events import checked_payload, is_content_event
from gateway.policy import ChatStreamGate, Emit, Hold, RequestFacts, gate_chat_completion
from gateway.tokens import estimate_request_tokens
from gateway.usage import ChatStreamUsage, usage_from_chat
from gateway.validation import ParsedRequest, agent_name, parse_request
from providers.anthropic.adapter import AnthropicStream
from providers.anthropic.request import chat_to_anthropic
from providers.anthropic.traits import LEGACY_API_VERSION, NO_SAMPLING_API_VERSION, traits_for
from providers.base import CHAT, EMBEDDINGS, RESPONSES, UnsupportedRequest, UpstreamCall, UpstreamError
from providers.gemini.adapter import GeminiStream
from providers.gemini.request import chat_to_gemini
from providers.responses_chat import ChatToResponsesStream, chat_to_responses_response, responses_to_chat_request
from providers.sse import SSEEvent, SSEParseError, SSEParser

# Small limits, so that generated bodies run into them.
LIMITS = ServerConfig(max_json_depth=12, max_messages=8, max_tools=4)
APIS = st.sampled_from([CHAT, RESPONSES, EMBEDDINGS])

# A policy with a rule of every kind that reads the request or the answer.
EVERY_STAGE = """\
policy: default
rules:
  - name: no-delete
    tools: {deny: [delete_file]}
  - name: no-passwords
    when: 'user_input.contains("password")'
    action: deny
  - name: vip
    when: 'has(metadata.tier) && metadata.tier == "vip"'
    action: tag
    tags: [vip]
  - name: scrub-input
    action: redact
    pattern: 'secret-[a-z]+'
  - name: handoffs-need-a-human
    stage: tool_call
    when: 'tool_call.name == "transfer_to_agent"'
    action: require_approval
  - name: not-root
    stage: tool_call
    when: 'has(tool_call.arguments.path) && tool_call.arguments.path == "/"'
    action: deny
  - name: no-keys-out
    stage: response
    action: redact
    detectors: [openai_key]
"""
STRIP = """\
policy: strip
rules:
  - name: weather-only
    tools: {allow: [get_weather, lookup]}
    on_violation: strip
"""


@dataclass(frozen=True)
class Target:
    name: str
    strategy: st.SearchStrategy[Any]
    check: Callable[[Any], None]
    doc: str


def tolerating(check: Callable[[Any], None]) -> Callable[[Any], None]:
    """`check`, letting the failures already known (fuzz/known.py) pass."""
    def tolerant(value: Any) -> None:
        try:
            check(value)
        except Exception as exc:
            if known(exc) is None:
                raise
    return tolerant


# -- what a client sends ------------------------------------------------------------------

def _parsed(api: str, body: Any) -> ParsedRequest | None:
    """The request as the pipeline has it after validation; None when it is refused there."""
    try:
        return parse_request(api, orjson.dumps(body), LIMITS)  # type: ignore[arg-type]
    except GatewayError as exc:
        _client_error(exc)
        return None


def _client_error(exc: GatewayError) -> None:
    if not 400 <= exc.status < 500:
        raise Violation("request-not-4xx", f"a bad request got {exc.status}: {exc.message}")


def check_request_bytes(case: tuple[str, bytes]) -> None:
    api, raw = case
    try:
        parse_request(api, raw, LIMITS)  # type: ignore[arg-type]
    except GatewayError as exc:
        _client_error(exc)


def check_request_json(case: tuple[str, Any]) -> None:
    check_request_bytes((case[0], orjson.dumps(case[1])))


def check_request_stage(case: tuple[str, Any]) -> None:
    """A valid request through what runs before routing, in the pipeline's order: the agent
    name, the request-stage policies, then the prompt-token estimate (admission)."""
    api, body = case
    parsed = _parsed(api, body)
    if parsed is None:
        return
    agent = agent_name(None, parsed.body)
    if api != EMBEDDINGS:
        facts = RequestFacts(tenant="acme", agent=agent, alias=parsed.alias, api=api, body=parsed.body,
                             headers={"X-Lockgate-Agent": "fuzz"},
                             estimate_tokens=lambda: estimate_request_tokens(api, parsed.body))
        verdict = gate.tenant_policies(EVERY_STAGE, STRIP).evaluate_request(facts)
        if verdict.body is not None:
            orjson.dumps(verdict.body)
    tokens = estimate_request_tokens(api, parsed.body)
    if not isinstance(tokens, int) or tokens < 0:
        raise Violation("estimate-not-a-count", f"estimate_request_tokens gave {tokens!r}")


REQUEST_BYTES = st.one_of(
    st.binary(max_size=200),
    st.tuples(st.one_of(s.CHAT_BODY, s.RESPONSES_BODY, s.JSON), st.lists(st.tuples(
        st.integers(0, 10**4), st.integers(0, 255)), max_size=3)).map(lambda case: _flip(*case)),
    st.sampled_from([b'{"model": "m", "messages": [{"role": "user"}], "temperature": 1e999}',
                     b'\xef\xbb\xbf{"model": "m", "input": "x"}', b'{"model": "m", "input": NaN}',
                     b'{"model": "m", "model": 5, "input": "x"}', b'{"model": "m", "input": "\\ud800"}',
                     b'{"model": "m", "input": ' + b"[" * 5000 + b"]" * 5000 + b"}", b"\x00", b"null"]),
)


def _flip(body: Any, flips: list[tuple[int, int]]) -> bytes:
    raw = bytearray(orjson.dumps(body))
    for position, byte in flips:
        if raw:
            raw[position % len(raw)] = byte
    return bytes(raw)


# -- request translators ----------------------------------------------------------------------

def _translated(translate: Callable[[], dict[str, Any]]) -> None:
    try:
        out = translate()
    except UnsupportedRequest:
        return
    if not isinstance(out, dict):
        raise Violation("translation-not-an-object", f"a request translator returned {out!r}")
    orjson.dumps(out)  # what the adapter sends must serialize


def check_anthropic_request(case: tuple[Any, str, str]) -> None:
    body, model, version = case
    parsed = _parsed(CHAT, body)
    if parsed is not None:
        _translated(lambda: chat_to_anthropic(parsed.body, model, traits=traits_for(model, version)))


def check_gemini_request(case: tuple[Any, str]) -> None:
    body, model = case
    parsed = _parsed(CHAT, body)
    if parsed is not None:
        _translated(lambda: chat_to_gemini(parsed.body, model))


def check_responses_request(body: Any) -> None:
    """Responses -> chat, then on to each translated provider, as the bridge does."""
    parsed = _parsed(RESPONSES, body)
    if parsed is None:
        return
    try:
        chat = responses_to_chat_request(parsed.body)
    except UnsupportedRequest:
        return
    _translated(lambda: chat)
    _translated(lambda: chat_to_anthropic(chat, "claude-sonnet-4-5"))
    _translated(lambda: chat_to_gemini(chat, "gemini-2.5-flash"))


ANTHROPIC_MODELS = st.sampled_from(["claude-sonnet-4-5", "claude-3-5-haiku-20241022", "claude-opus-4-1",
                                    "claude-3-7-sonnet-latest", "claude-future-9"])
GEMINI_MODELS = st.sampled_from(["gemini-2.5-flash", "gemini-2.5-pro", "gemini-3-pro-preview", "gemma-3"])

# -- what an upstream answers ---------------------------------------------------------------

def _upstream(feed: Callable[[], list[dict[str, Any]]]) -> list[dict[str, Any]] | None:
    """Chunks from a translator, or None when it reported the upstream as broken."""
    try:
        chunks = feed()
    except UpstreamError:
        return None
    for chunk in chunks:
        SSEEvent.of(chunk)  # serialized as the relay will
    return chunks


def _call(model: str) -> UpstreamCall:
    return UpstreamCall(api=CHAT, body={"model": model, "messages": []}, model=model, stream=True)


def check_anthropic_stream(events: list[tuple[str | None, Any]]) -> None:
    stream = AnthropicStream(_call("claude-sonnet-4-5"))
    for name, payload in events:
        if _upstream(lambda: stream.feed(SSEEvent(orjson.dumps(payload), name))) is None:  # noqa: B023
            return
    _upstream(stream.finish)


def check_gemini_stream(chunks: list[Any]) -> None:
    stream = GeminiStream("gemini-2.5-flash")
    for payload in chunks:
        if _upstream(lambda: stream.feed(SSEEvent(orjson.dumps(payload)))) is None:  # noqa: B023
            return
    _upstream(stream.finish)


def check_chat_to_responses(case: tuple[Any, list[dict[str, Any]], Any]) -> None:
    """Chat answers from a translated provider -> the Responses API (stream and whole)."""
    body, chunks, completion = case
    parsed = _parsed(RESPONSES, body)
    if parsed is None:
        return
    try:
        responses_to_chat_request(parsed.body)
    except UnsupportedRequest:
        return
    stream = ChatToResponsesStream(parsed.body)
    events = [event for chunk in chunks for event in stream.feed(chunk)] + stream.finish()
    for _, payload in events:
        SSEEvent.of(payload)
    SSEEvent.of(chat_to_responses_response(completion, parsed.body))


def _facts() -> RequestFacts:
    return RequestFacts(tenant="acme", agent=None, alias="m", api=CHAT, headers={},
                        body={"model": "m", "messages": [{"role": "user", "content": "hi"}]})


def check_upstream_chat_stream(chunks: list[Any]) -> None:
    """Any events an OpenAI-compatible upstream sends (bytes: data that need not be JSON),
    through every stream stage."""
    gate_ = ChatStreamGate(gate.tenant_policies(EVERY_STAGE), _facts())
    usage = ChatStreamUsage()
    is_content = is_content_event(CHAT)
    items: list[Any] = []
    for chunk in chunks:
        event = SSEEvent(chunk if isinstance(chunk, bytes) else orjson.dumps(chunk))
        if event.is_done:
            break  # the relay flushes the stages then, and passes [DONE] around them
        try:
            payload = checked_payload(event)
            is_content(event)
        except UpstreamError:
            return
        usage.feed(payload)
        items += gate_.feed(payload)  # type: ignore[arg-type]
    items += gate_.finish()
    approve = True
    while any(isinstance(item, Hold) for item in items):
        at = next(index for index, item in enumerate(items) if isinstance(item, Hold))
        items[at:at + 1] = gate_.resolve(items[at].call_key, approve, None if approve else "no")
        approve = not approve
    for item in items:
        if isinstance(item, Emit):
            SSEEvent.of(item.payload).encode()


def check_upstream_chat_json(completion: Any) -> None:
    """Any chat completion an upstream answers, through metering and the JSON gate."""
    usage_from_chat(completion.get("usage") if isinstance(completion, dict) else None)
    if not isinstance(completion, dict):
        return
    result = gate_chat_completion(gate.tenant_policies(EVERY_STAGE), _facts(), completion)
    for number, pending in enumerate(result.pending):
        result.resolve(pending.key, number % 2 == 0, "no")
    body, _, _ = result.finish()
    if body is not None:
        orjson.dumps(body)


# -- server-sent events -------------------------------------------------------------------------

def encode_stream(case: tuple[list[tuple[str | None, list[str], list[str]]], str, bool]) -> bytes:
    events, newline, terminated = case
    blocks = []
    for name, lines, comments in events:
        block = [f":{comment}" for comment in comments]
        block += [f"event: {name}"] if name is not None else []
        block += [f"data: {line}" for line in lines]
        blocks.append(newline.join(block) + newline)
    text = newline.join(blocks) + (newline if terminated or not blocks else "")
    return text.encode("utf-8")


def parse_all(pieces: list[bytes]) -> list[tuple[str | None, bytes]]:
    parser = SSEParser()
    events = [event for piece in pieces for event in parser.feed(piece)] + parser.finish()
    return [(event.event, event.data) for event in events]


def check_sse_split(case: tuple[tuple[Any, str, bool], list[int]]) -> None:
    stream, cuts = case
    raw = encode_stream(stream)
    expected = [(name, "\n".join(lines).encode()) for name, lines, _ in stream[0]]
    whole = parse_all([raw])
    kind = "sse-cr-line-endings" if b"\r" in raw else "sse-split"
    if whole != expected:
        raise Violation(kind, f"{raw!r} parsed as {whole}, not {expected}")
    split = parse_all(s.split_at(raw, cuts))
    if split != expected:
        raise Violation(kind, f"{raw!r} cut at {cuts} parsed as {split}, not {expected}")


def check_sse_bytes(case: tuple[bytes, list[int], int]) -> None:
    raw, cuts, limit = case
    parser = SSEParser(max_event_bytes=limit)
    try:
        for piece in s.split_at(raw, cuts):
            parser.feed(piece)
        parser.finish()
    except SSEParseError:
        pass


TARGETS = [
    Target("request_bytes", st.tuples(APIS, REQUEST_BYTES), check_request_bytes,
           "raw request bodies -> parse_request: a 4xx GatewayError or a parsed request"),
    Target("request_json", st.tuples(APIS, st.one_of(s.CHAT_BODY, s.RESPONSES_BODY, s.EMBEDDINGS_BODY, s.JSON)),
           check_request_json, "JSON request bodies -> parse_request"),
    Target("request_stage", st.tuples(APIS, st.one_of(s.CHAT_BODY, s.RESPONSES_BODY, s.EMBEDDINGS_BODY)),
           check_request_stage, "valid requests -> agent name, token estimate, request-stage policies"),
    Target("anthropic_request", st.tuples(s.CHAT_BODY, ANTHROPIC_MODELS,
                                          st.sampled_from([LEGACY_API_VERSION, NO_SAMPLING_API_VERSION])),
           check_anthropic_request, "chat requests -> chat_to_anthropic: a dict or UnsupportedRequest"),
    Target("gemini_request", st.tuples(s.CHAT_BODY, GEMINI_MODELS), check_gemini_request,
           "chat requests -> chat_to_gemini: a dict or UnsupportedRequest"),
    Target("responses_request", s.RESPONSES_BODY, check_responses_request,
           "Responses requests -> chat -> Anthropic and Gemini bodies"),
    Target("anthropic_stream", s.ANTHROPIC_STREAM, check_anthropic_stream,
           "Anthropic events -> chat chunks or UpstreamError"),
    Target("gemini_stream", s.GEMINI_STREAM, check_gemini_stream, "Gemini chunks -> chat chunks or UpstreamError"),
    Target("chat_to_responses", st.tuples(s.RESPONSES_BODY, s.CHAT_STREAM, s.CLEAN_CHAT_COMPLETION),
           check_chat_to_responses, "translated chat answers -> Responses events and objects"),
    Target("upstream_chat_stream", s.HOSTILE_CHAT_STREAM, check_upstream_chat_stream,
           "any chunks from an OpenAI-compatible upstream -> event checks, usage watch, stream gate"),
    Target("upstream_chat_json", st.one_of(s.CHAT_COMPLETION, s.JSON), check_upstream_chat_json,
           "any chat completion from an upstream -> usage, JSON gate"),
    Target("sse_split", st.tuples(s.SSE_STREAM, s.CUTS), check_sse_split,
           "any split of a valid event stream parses to the same events"),
    Target("sse_bytes", st.tuples(st.binary(max_size=300), s.CUTS, st.sampled_from([16, 64, 8 * 1024 * 1024])),
           check_sse_bytes, "arbitrary bytes -> events or SSEParseError"),
    Target("tool_gate", gate.scenarios(), gate.check_scenario,
           "chat streams with allowed and denied tool calls -> nothing denied gets out, allowed calls intact"),
]
BY_NAME = {target.name: target for target in TARGETS}
