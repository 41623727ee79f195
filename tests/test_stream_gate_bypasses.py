"""Regression tests for stream framings that got a denied call past the chat stream gate.

The upstream stream is untrusted (docs/security.md): where clients could read a delta
in more than one way (a name sent in pieces, a choice index that is not an int, a call
carrying both a `function` and a `custom` object), the gate fails the stream closed
instead of picking one reading and hoping the client picks the same.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.policy import ChatStreamGate, Emit, Fail
from gateway.policy.gating import GateItem
from tests.test_policy_chat_stream import WHITELIST as WEATHER_ONLY
from tests.test_policy_support import call_delta, chat_final, chunk, facts, run_chat, tenant

APPROVE_WRITES = """
policy: team
rules:
  - name: writes-need-a-human
    stage: tool_call
    when: 'tool_call.name == "database_write"'
    action: require_approval
"""
DENY_WRITES = """
policy: team
rules:
  - name: no-writes
    tools: {deny: [database_write]}
"""
DENY_DELETE = """
policy: team
rules:
  - name: no-delete
    tools: {deny: [delete_file]}
"""


def _emitted(items: list[GateItem]) -> list[dict]:
    return [item.payload for item in items if isinstance(item, Emit)]


def _tool_entries(items: list[GateItem]) -> list[tuple[Any, dict]]:
    """Every tool-call delta the client received, with its choice index."""
    found = []
    for payload in _emitted(items):
        for data in payload.get("choices") or ():
            delta = data.get("delta") or {}
            found += [(data.get("index"), entry) for entry in delta.get("tool_calls") or ()]
            if delta.get("function_call"):
                found.append((data.get("index"), delta["function_call"]))
    return found


def _assert_failed_closed(gate: ChatStreamGate, items: list[GateItem], *denied: str) -> None:
    assert isinstance(items[-1], Fail) and items[-1].code == "blocked_by_policy", items
    assert gate.decisions[-1].error and gate.decisions[-1].action == "deny"
    wire = json.dumps(_emitted(items))
    for name in denied:
        assert name not in wire, wire
    assert gate.feed(chunk({"content": "more"})) == [] and gate.finish() == []


# -- 1. a tool name sent in more than one piece ---------------------------------------

SPLIT_NAME = [
    chunk({"role": "assistant", "tool_calls": [call_delta(0, call_id="call_a", name="get_weather")]}),
    chunk({"tool_calls": [call_delta(0, name="database_write")]}),
    chunk({"tool_calls": [call_delta(0, arguments='{"table":"users"}')]}),
    chunk({}, "tool_calls"),
]


@pytest.mark.parametrize("policy", [APPROVE_WRITES, DENY_WRITES], ids=["approval", "deny-list"])
def test_a_second_name_piece_fails_closed(tmp_path: Path, policy: str) -> None:
    # The Agents SDK keeps the last piece (database_write), the OpenAI SDK joins them:
    # no one reading of the pieces is what every client runs.
    gate = ChatStreamGate(tenant(tmp_path, policy), facts())
    items, _ = run_chat(gate, SPLIT_NAME, approve=False)
    _assert_failed_closed(gate, items, "database_write", "get_weather", "call_a", "users")
    assert not _tool_entries(items)
    assert "more than one piece" in (gate.decisions[-1].error or "")


def test_a_second_name_piece_packed_beside_the_first_fails_closed(tmp_path: Path) -> None:
    both = chunk({"tool_calls": [call_delta(0, call_id="call_a", name="get_weather"),
                                 call_delta(0, name="database_write", arguments="{}")]})
    gate = ChatStreamGate(tenant(tmp_path, APPROVE_WRITES), facts())
    items, _ = run_chat(gate, [both, chunk({}, "tool_calls")], approve=False)
    _assert_failed_closed(gate, items, "database_write", "call_a")


def test_a_second_legacy_function_call_name_fails_closed(tmp_path: Path) -> None:
    chunks = [chunk({"role": "assistant", "function_call": {"name": "get_weather", "arguments": ""}}),
              chunk({"function_call": {"name": "database_write"}}),
              chunk({"function_call": {"arguments": "{}"}}),
              chunk({}, "function_call")]
    gate = ChatStreamGate(tenant(tmp_path, APPROVE_WRITES), facts())
    items, _ = run_chat(gate, chunks, approve=False)
    _assert_failed_closed(gate, items, "database_write")


@pytest.mark.parametrize("later", [
    {},
    {"name": ""},
    {"name": None},
], ids=["no-name", "empty-name", "null-name"])
def test_a_name_sent_whole_in_the_first_delta_is_unaffected(tmp_path: Path, later: dict) -> None:
    chunks = [chunk({"role": "assistant", "tool_calls": [call_delta(0, call_id="call_w", name="get_weather")]}),
              chunk({"tool_calls": [{"index": 0, "function": {**later, "arguments": '{"city": '}}]}),
              chunk({"tool_calls": [{"index": 0, "function": {**later, "arguments": '"Oslo"}'}}]}),
              chunk({}, "tool_calls")]
    gate = ChatStreamGate(tenant(tmp_path, APPROVE_WRITES), facts())
    items, _ = run_chat(gate, chunks)
    [call] = chat_final(items).choices[0].message.tool_calls
    assert (call.id, call.function.name, call.function.arguments) == ("call_w", "get_weather", '{"city": "Oslo"}')
    assert gate.decisions == []


def test_a_name_after_an_empty_first_piece_is_the_whole_name(tmp_path: Path) -> None:
    # One non-empty piece is read the same way by every client: it is the name.
    chunks = [chunk({"tool_calls": [call_delta(0, call_id="call_d", name="", arguments="")]}),
              chunk({"tool_calls": [call_delta(0, name="database_write", arguments="{}")]}),
              chunk({}, "tool_calls")]
    gate = ChatStreamGate(tenant(tmp_path, DENY_WRITES), facts())
    items, _ = run_chat(gate, chunks)
    final = chat_final(items).choices[0]
    assert not final.message.tool_calls and "'database_write' was blocked" in final.message.content
    assert [decision.label for decision in gate.decisions] == ["team/no-writes=deny"]


# -- 2. a choice index that is not a plain int ---------------------------------------------

def _choice_chunk(index: Any, delta: dict, finish: str | None = None) -> dict:
    payload = chunk(delta, finish)
    data = payload["choices"][0]
    if index is _MISSING:
        del data["index"]
    else:
        data["index"] = index
    return payload


_MISSING = object()
BAD_INDEXES = [1.0, "1", True, None, -1, _MISSING]
BAD_IDS = ["float", "string", "bool", "null", "negative", "missing"]


def test_a_float_choice_index_cannot_smuggle_a_name_into_another_choice(tmp_path: Path) -> None:
    # Clients read 1.0 as choice 1, the old gate as choice 0: each half of `delete_file`
    # was judged alone (and allowed), and the client joined them in choice 1.
    chunks = [
        _choice_chunk(0, {"role": "assistant", "content": "one"}),
        _choice_chunk(1, {"role": "assistant", "tool_calls": [call_delta(0, call_id="call_x", name="delete")]}),
        _choice_chunk(1.0, {"tool_calls": [call_delta(0, name="_file", arguments="{}")]}),
        _choice_chunk(1, {}, "tool_calls"),
        _choice_chunk(0, {}, "stop"),
    ]
    gate = ChatStreamGate(tenant(tmp_path, DENY_DELETE), facts())
    items, _ = run_chat(gate, chunks)
    _assert_failed_closed(gate, items, "_file", "call_x")


@pytest.mark.parametrize("index", BAD_INDEXES, ids=BAD_IDS)
def test_a_call_in_a_choice_without_an_int_index_fails_closed(tmp_path: Path, index: Any) -> None:
    chunks = [
        _choice_chunk(0, {"role": "assistant", "content": "checking"}),
        _choice_chunk(index, {"tool_calls": [call_delta(0, call_id="call_D", name="delete_file",
                                                        arguments='{"path": "/"}')]}),
        _choice_chunk(0, {}, "stop"),
    ]
    gate = ChatStreamGate(tenant(tmp_path, DENY_DELETE), facts())
    items, _ = run_chat(gate, chunks)
    _assert_failed_closed(gate, items, "delete_file", "call_D")
    assert "choice" in (gate.decisions[-1].error or "")


@pytest.mark.parametrize("index", BAD_INDEXES, ids=BAD_IDS)
def test_text_in_a_choice_without_an_int_index_fails_closed_under_a_text_rule(tmp_path: Path, index: Any) -> None:
    # Which choice's text a piece belongs to decides what the redaction sees whole.
    policy = "policy: team\nrules:\n  - {name: secrets, stage: response, action: redact, pattern: 'secret-[0-9]+'}\n"
    chunks = [_choice_chunk(1, {"role": "assistant", "content": "secret-"}),
              _choice_chunk(index, {"content": "123"}),
              _choice_chunk(1, {}, "stop")]
    gate = ChatStreamGate(tenant(tmp_path, policy), facts())
    items, _ = run_chat(gate, chunks)
    assert isinstance(items[-1], Fail) and "123" not in json.dumps(_emitted(items))


def test_int_choice_indexes_are_unaffected(tmp_path: Path) -> None:
    chunks = [_choice_chunk(0, {"role": "assistant", "content": "a"}),
              _choice_chunk(1, {"role": "assistant", "tool_calls": [call_delta(0, call_id="c1", name="get_weather",
                                                                               arguments="{}")]}),
              _choice_chunk(1, {}, "tool_calls"), _choice_chunk(0, {}, "stop")]
    gate = ChatStreamGate(tenant(tmp_path, DENY_DELETE), facts())
    items, _ = run_chat(gate, chunks)
    assert _emitted(items) == chunks and gate.decisions == []


# -- 3. custom tool calls follow `type` -----------------------------------------------------

def _custom(**fields: Any) -> dict:
    return chunk({"role": "assistant", "tool_calls": [{"index": 0, "id": "call_c", **fields}]})


@pytest.mark.parametrize("policy", [DENY_DELETE, WEATHER_ONLY], ids=["deny-list", "allow-list"])
def test_a_custom_call_disguised_by_a_function_object_fails_closed(tmp_path: Path, policy: str) -> None:
    disguised = _custom(type="custom", function={"name": "get_weather"},
                        custom={"name": "delete_file", "input": "rm -rf"})
    gate = ChatStreamGate(tenant(tmp_path, policy), facts())
    items, _ = run_chat(gate, [disguised, chunk({}, "tool_calls")])
    _assert_failed_closed(gate, items, "delete_file", "rm -rf", "call_c")


@pytest.mark.parametrize("fields", [
    {"type": "function", "function": {"name": "get_weather", "arguments": "{}"},
     "custom": {"name": "delete_file", "input": "rm -rf"}},
    {"type": "custom", "function": {"name": "delete_file", "arguments": "{}"}},
    {"type": "function", "custom": {"name": "delete_file", "input": "rm -rf"}},
    {"type": "function", "function": {"name": "get_weather", "arguments": "{}"},
     "custom": {"name": "get_weather", "input": "rm -rf"}},
    {"type": "mcp", "function": {"name": "get_weather", "arguments": "{}"}},
], ids=["function-with-custom", "custom-with-function-only", "function-with-custom-only", "same-name-other-input",
        "unknown-type"])
def test_a_call_clients_could_read_two_ways_fails_closed(tmp_path: Path, fields: dict) -> None:
    gate = ChatStreamGate(tenant(tmp_path, WEATHER_ONLY), facts())
    items, _ = run_chat(gate, [_custom(**fields), chunk({}, "tool_calls")])
    _assert_failed_closed(gate, items, "delete_file", "rm -rf")


def test_a_later_delta_cannot_change_the_calls_type(tmp_path: Path) -> None:
    chunks = [_custom(type="function", function={"name": "get_weather", "arguments": ""}),
              chunk({"tool_calls": [{"index": 0, "type": "custom", "custom": {"input": "rm -rf"}}]}),
              chunk({}, "tool_calls")]
    gate = ChatStreamGate(tenant(tmp_path, WEATHER_ONLY), facts())
    items, _ = run_chat(gate, chunks)
    _assert_failed_closed(gate, items, "rm -rf")


@pytest.mark.parametrize(("name", "allowed"), [("get_weather", True), ("delete_file", False)])
def test_a_custom_call_is_judged_on_its_custom_object(tmp_path: Path, name: str, allowed: bool) -> None:
    # The input streams on in deltas that name no type: they belong to the custom call.
    chunks = [_custom(type="custom", custom={"name": name, "input": ""}),
              chunk({"tool_calls": [{"index": 0, "custom": {"input": "Oslo "}}]}),
              chunk({"tool_calls": [{"index": 0, "custom": {"input": "tomorrow"}}]}),
              chunk({}, "tool_calls")]
    gate = ChatStreamGate(tenant(tmp_path, WEATHER_ONLY), facts())
    items, _ = run_chat(gate, chunks)
    assert not any(isinstance(item, Fail) for item in items)
    wire = json.dumps(_emitted(items))
    if allowed:
        assert _emitted(items) == chunks and gate.decisions == []
    else:
        assert "call_c" not in wire and "tomorrow" not in wire and "'delete_file' was blocked" in wire
