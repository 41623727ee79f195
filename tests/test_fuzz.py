"""Fuzzing at CI size, and one regression test per finding the fuzzing made.

Every target of fuzz/targets.py runs here with a fixed, derandomized set of examples
(the same ones on every run, so CI is reproducible) and no deadline: request parsing and
the request stage, the request translators (Anthropic, Gemini, Responses -> chat), the
stream translators and the stream stages fed by hostile upstreams, the SSE parser
(split invariance, arbitrary bytes) and the tool-call stream gate (several calls, denied
names in disguise, index gaps, interleaving, broken chunks). Then bad requests and odd
query strings over HTTP to a real gateway: never a 5xx. `fuzz/run.py` runs the same
targets for minutes with random seeds.

Failures already known (fuzz/known.py) are tolerated by the property tests and replayed
by `test_known_finding`, strictly expected to fail until the fix lands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from fuzz import http_target
from fuzz.gate import ARGUMENT_RULE, DENY_LIST, MARKER, Call, Scenario
from fuzz.known import KNOWN, family, signature
from fuzz.targets import BY_NAME, TARGETS, Target, tolerating
from tests.harness import BackgroundLoop

CI = settings(max_examples=120, deadline=None, derandomize=True, database=None, print_blob=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
# The properties that guard policy enforcement get more of the budget.
EXAMPLES = {"tool_gate": 400, "upstream_chat_stream": 250, "sse_split": 250}


@pytest.mark.parametrize("target", TARGETS, ids=[target.name for target in TARGETS])
def test_target(target: Target) -> None:
    run = settings(CI, max_examples=EXAMPLES.get(target.name, CI.max_examples))
    run(given(target.strategy)(tolerating(target.check)))()


def test_bad_requests_over_http_never_get_a_5xx(bg: BackgroundLoop, tmp_path: Path) -> None:
    with http_target.running_stack(bg, tmp_path) as stack:
        post = settings(CI, max_examples=80)(given(http_target.REQUESTS)(
            tolerating(lambda case: http_target.check_request(stack, case))))
        query = settings(CI, max_examples=60)(given(http_target.QUERIES)(
            tolerating(lambda case: http_target.check_query(stack, case))))
        post()
        query()


def test_every_known_finding_has_a_regression_test() -> None:
    replayed = {finding for finding, _, _ in FINDINGS} | {finding for finding, _ in HTTP_FINDINGS}
    assert set(KNOWN.values()) == replayed - FIXED


# -- findings ---------------------------------------------------------------------------------

class KnownFinding(Exception):
    """The failure a finding describes (any other failure is a plain test failure)."""


def _chunk(delta: Any, index: int = 0, finish: str | None = None) -> dict[str, Any]:
    return {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": index, "delta": delta, "finish_reason": finish}]}


DENIED_CALL = Call(0, 0, "call_DENIED_0", "delete_file", f'{{"path":"/tmp","note":"{MARKER}"}}', False)
OK_CALL = Call(0, 0, "call_ok_0", "get_weather", '{"path":"/tmp"}', True)
OK_CALL_2 = Call(0, 1, "call_ok_1", "lookup", '{"path":"/home"}', True)


# (finding id, target, input): the input is the one the fuzzer found, shrunk, or a smaller
# one with the same failure. fuzz/findings/ has the original traceback of each.
# Findings that are fixed: their cases stay, as plain regression tests.
FIXED: set[str] = {"unsupported-request-500", "token-estimate-crash", "policy-text-crash", "anthropic-request-crash",
                   "gemini-request-crash", "responses-request-crash", "anthropic-stream-crash", "gemini-stream-crash",
                   "gate-settles-before-reading-the-chunk", "stream-check-crash", "sse-crlf-split",
                   "embeddings-stream-opens-circuit", "json-gate-duplicate-call-ids",
                   "gate-passes-unreadable-chunks"}


def _expected(finding: str) -> list[Any]:
    """A still-open finding is a strict xfail; a fixed one must pass."""
    if finding in FIXED:
        return []
    return [pytest.mark.xfail(strict=True, raises=KnownFinding, reason=f"fuzz finding {finding}")]


FINDINGS: list[tuple[str, str, Any]] = [
    ("token-estimate-crash", "request_stage", ("embeddings", {"model": "m", "input": [{"type": []}]})),
    ("policy-text-crash", "request_stage",
     ("responses", {"model": "m", "input": [{"role": "user", "content": [{"type": [], "text": ""}]}]})),
    ("anthropic-request-crash", "anthropic_request",
     ({"model": "m", "messages": [{"role": "user", "content": "x"}], "reasoning_effort": []}, "claude-sonnet-4-5",
      "2023-06-01")),
    ("gemini-request-crash", "gemini_request",
     ({"model": "m", "messages": [{"role": "assistant", "tool_calls": True}]}, "gemini-2.5-flash")),
    ("gemini-request-crash", "gemini_request",
     ({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [], "functions": [{"name": "f"}],
       "tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": None}}},
      "gemini-2.5-flash")),
    ("responses-request-crash", "responses_request", {"model": "m", "input": [{"role": [], "content": ""}]}),
    ("anthropic-stream-crash", "anthropic_stream",
     [("content_block_start", {"type": "content_block_start", "index": [], "content_block": None})]),
    ("gemini-stream-crash", "gemini_stream", [{"candidates": [None]}]),
    ("stream-check-crash", "upstream_chat_stream", [{**_chunk({}), "choices": [None]}]),
    # "data: a\r\ndata: b\r\n\r\n" read in two parts, the first ending in "\r": two events, not one.
    ("sse-crlf-split", "sse_split", (([(None, ["a", "b"], [])], "\r\n", True), [8])),
    # `choices` an object, not a list: the chunk, denied call and all, goes out unjudged.
    ("gate-passes-unreadable-chunks", "tool_gate", Scenario(DENY_LIST, (DENIED_CALL,), (
        {**_chunk({}), "choices": {"index": 0, "delta": {"tool_calls": [
            {"index": 0, "id": DENIED_CALL.id, "type": "function",
             "function": {"name": DENIED_CALL.name, "arguments": DENIED_CALL.arguments}}]}}},
        _chunk({}, finish="tool_calls")), "choices object", False)),
    # Two calls share an id: resolving the first approval resolves both, and the second raises.
    ("json-gate-duplicate-call-ids", "upstream_chat_json", {
        "id": "c", "object": "chat.completion", "created": 1, "model": "m", "choices": [{
            "index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "transfer_to_agent", "arguments": "{}"}},
                {"id": "call_1", "type": "function",
                 "function": {"name": "transfer_to_agent", "arguments": '{"to": "root"}'}}]}}]}),
    # One chunk ends call 0 and starts call 1: call 0 is judged on half its arguments and blocked.
    ("gate-settles-before-reading-the-chunk", "tool_gate", Scenario(ARGUMENT_RULE, (OK_CALL, OK_CALL_2), (
        _chunk({"tool_calls": [{"index": 0, "id": OK_CALL.id, "type": "function",
                                "function": {"name": OK_CALL.name, "arguments": '{"path":'}}]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"/tmp"}'}},
                               {"index": 1, "id": OK_CALL_2.id, "type": "function",
                                "function": {"name": OK_CALL_2.name, "arguments": OK_CALL_2.arguments}}]}),
        _chunk({}, finish="tool_calls")), None, False)),
]
HTTP_FINDINGS: list[tuple[str, Any]] = [
    ("unsupported-request-500", ("chat/completions", {"model": "m", "messages": [{"role": "user", "content": "x"}],
                                                      "n": 2}, "claude", {})),
    ("embeddings-stream-opens-circuit", ("embeddings", {"model": "m", "input": "x", "stream": True}, "embed-test",
                                         {})),
]


@pytest.mark.parametrize(("finding", "target", "value"), [
    pytest.param(finding, target, value, id=finding, marks=_expected(finding))
    for finding, target, value in FINDINGS])
def test_known_finding(finding: str, target: str, value: Any) -> None:
    try:
        BY_NAME[target].check(value)
    except Exception as exc:
        if KNOWN.get(family(exc)) == finding:
            raise KnownFinding(signature(exc)) from exc
        raise


@pytest.mark.parametrize(("finding", "case"), [
    pytest.param(finding, case, id=finding, marks=_expected(finding))
    for finding, case in HTTP_FINDINGS])
def test_known_http_finding(bg: BackgroundLoop, tmp_path: Path, finding: str, case: Any) -> None:
    with http_target.running_stack(bg, tmp_path) as stack:
        try:
            http_target.check_request(stack, case)
        except Exception as exc:
            if KNOWN.get(family(exc)) == finding:
                raise KnownFinding(signature(exc)) from exc
            raise
