"""The Chat Completions stream gate: golden streams, any split of a recorded stream,
text that is never held, malformed streams failing closed."""

from __future__ import annotations

import copy
import itertools
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.policy import ChatStreamGate, Emit, Fail, Hold
from tests.test_policy_support import (
    FIXTURES,
    as_expected,
    call_delta,
    chat_final,
    chunk,
    emitted,
    facts,
    run_chat,
    tenant,
)

GOLDEN = sorted((FIXTURES / "chat_stream").glob("*.json"))


@pytest.mark.parametrize("path", GOLDEN, ids=[path.stem for path in GOLDEN])
def test_golden_streams(tmp_path: Path, path: Path) -> None:
    case = json.loads(path.read_text())
    chunks = case["chunks"]
    gate = ChatStreamGate(tenant(tmp_path, case["policy"]), facts())
    items, _ = run_chat(gate, chunks, case["approve"])
    assert [as_expected(item) for item in items] == case["expect"]
    assert [decision.label for decision in gate.decisions] == case["decisions"]
    for item in items:  # original=True means the very object that was fed in
        if isinstance(item, Emit) and item.original:
            assert any(item.payload is fed for fed in chunks)
    if not any(isinstance(item, Fail) for item in items):
        chat_final(items)  # the OpenAI SDK accepts and assembles the output


# -- any split of a recorded stream ------------------------------------------------

WHITELIST = """
policy: team
rules:
  - name: weather-only
    tools: {allow: [get_weather]}
"""
NOT_ROOT = """
policy: team
rules:
  - name: not-root
    stage: tool_call
    when: 'tool_call.name == "delete_files" && tool_call.arguments.path == "/"'
    action: deny
"""
ALLOWED = ("call_W1", "get_weather", '{"city": "Lyon", "unit": "celsius"}')
BLOCKED = ("call_D2", "delete_files", '{"path": "/", "recursive": true}')


def _pieces(text: str, cuts: list[int]) -> list[str]:
    bounds = sorted({0, len(text), *(c % (len(text) + 1) for c in cuts)})
    return [text[a:b] for a, b in itertools.pairwise(bounds)] or [""]


def _call_chunks(index: int, call: tuple[str, str, str], name_cuts: list[int], arg_cuts: list[int]) -> list[dict]:
    call_id, name, arguments = call
    names = _pieces(name, name_cuts)
    chunks = [chunk({"tool_calls": [call_delta(index, call_id=call_id, name=names[0], arguments="")]})]
    chunks += [chunk({"tool_calls": [call_delta(index, name=part)]}) for part in names[1:]]
    chunks += [chunk({"tool_calls": [call_delta(index, arguments=part)]}) for part in _pieces(arguments, arg_cuts)]
    return chunks


_cuts = st.lists(st.integers(min_value=0, max_value=60), max_size=6)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(policy=st.sampled_from([WHITELIST, NOT_ROOT]), blocked_first=st.booleans(), split_names=st.booleans(),
       cuts=st.tuples(_cuts, _cuts, _cuts, _cuts), text_cuts=_cuts)
def test_any_split_never_leaks_the_blocked_call(tmp_path: Path, policy: str, blocked_first: bool, split_names: bool,
                                                cuts: tuple, text_cuts: list[int]) -> None:
    calls = [BLOCKED, ALLOWED] if blocked_first else [ALLOWED, BLOCKED]
    text = [chunk({"content": part}) for part in _pieces("Checking the weather, then cleaning up.", text_cuts)]
    chunks = [chunk({"role": "assistant", "content": ""}), *text]
    name_cuts = [cuts[2 * index] if split_names else [] for index in range(len(calls))]
    for index, call in enumerate(calls):
        chunks += _call_chunks(index, call, name_cuts[index], cuts[2 * index + 1])
    chunks.append(chunk({}, "tool_calls"))
    fed = copy.deepcopy(chunks)

    gate = ChatStreamGate(tenant(tmp_path, policy), facts())
    items, per_feed = run_chat(gate, chunks)
    out = json.dumps([item.payload for item in items if isinstance(item, Emit)])
    assert "delete_files" not in out.replace("Tool call 'delete_files' was blocked", "")
    assert '\\"recursive\\"' not in out and "call_D2" not in out
    assert chunks == fed  # the gate never mutates what it was fed
    for position, payload in enumerate(chunks):  # text goes out in the feed it arrived in
        if payload["choices"][0]["delta"].get("content"):
            assert per_feed[position] >= 1
    if any(len(_pieces(call[1], cuts)) > 1 for call, cuts in zip(calls, name_cuts, strict=True)):
        # A name sent in pieces has no one meaning (clients join, or keep the first or
        # the last piece): the stream fails closed, whichever call it was.
        assert isinstance(items[-1], Fail) and "more than one piece" in items[-1].message, items[-1]
        return
    final = chat_final(items).choices[0]
    [allowed] = final.message.tool_calls
    assert (allowed.id, allowed.function.name, allowed.function.arguments) == ALLOWED
    assert final.finish_reason == "tool_calls"
    assert "was blocked by policy rule" in (final.message.content or "")
    assert final.message.content.startswith("Checking the weather, then cleaning up.")


def test_text_is_not_held_while_a_call_is(tmp_path: Path) -> None:
    gate = ChatStreamGate(tenant(tmp_path, NOT_ROOT), facts())
    assert gate.feed(chunk({"tool_calls": [call_delta(0, call_id="c1", name="delete_files", arguments="")]})) == []
    assert gate.feed(chunk({"tool_calls": [call_delta(0, arguments='{"path": ')]})) == []
    mixed = chunk({"content": "still thinking", "tool_calls": [call_delta(0, arguments='"/tmp"}')]})
    [text] = emitted(gate.feed(mixed))
    assert text["choices"][0]["delta"] == {"content": "still thinking"}
    released = emitted(gate.feed(chunk({}, "tool_calls")))
    assert [c["choices"][0]["delta"].get("tool_calls") for c in released][:3] == [
        [call_delta(0, call_id="c1", name="delete_files", arguments="")],
        [call_delta(0, arguments='{"path": ')],
        [call_delta(0, arguments='"/tmp"}')],
    ]


def test_without_rules_every_chunk_passes_as_is(tmp_path: Path) -> None:
    policies = tenant(tmp_path, "policy: team\nrules:\n  - name: t\n    action: tag\n    tags: [x]\n")
    gate = ChatStreamGate(policies, facts())
    payload = chunk({"tool_calls": [call_delta(0, call_id="c", name="anything", arguments="")]})
    [item] = gate.feed(payload)
    assert isinstance(item, Emit) and item.payload is payload and item.original


def test_parallel_calls_in_one_chunk(tmp_path: Path) -> None:
    gate = ChatStreamGate(tenant(tmp_path, WHITELIST), facts())
    both = chunk({"role": "assistant", "tool_calls": [
        call_delta(0, call_id="a", name="get_weather", arguments='{"city": "Oslo"}'),
        call_delta(1, call_id="b", name="delete_files", arguments='{"path": "/"}'),
    ]})
    items, _ = run_chat(gate, [both, chunk({}, "tool_calls")])
    final = chat_final(items).choices[0]
    assert [call.function.name for call in final.message.tool_calls] == ["get_weather"]
    assert final.message.role == "assistant" and "'delete_files' was blocked" in final.message.content


MALFORMED = [
    ("no index", [chunk({"tool_calls": [{"id": "c", "function": {"name": "get_weather", "arguments": ""}}]})]),
    ("index not a number", [chunk({"tool_calls": [call_delta(0, call_id="c", name="get_weather") | {"index": "0"}]})]),
    ("tool_calls not a list", [chunk({"tool_calls": {"index": 0}})]),
    ("index goes back to a new call", [
        chunk({"tool_calls": [call_delta(2, call_id="c", name="get_weather", arguments="{}")]}),
        chunk({"tool_calls": [call_delta(1, call_id="d", name="get_weather", arguments="{}")]}),
    ]),
    ("name grows after the check", [
        chunk({"tool_calls": [call_delta(0, call_id="c", name="get_weather", arguments="{")]}),
        chunk({"tool_calls": [call_delta(0, name="_and_delete_files")]}),
    ]),
    ("name sent in two pieces", [
        chunk({"tool_calls": [call_delta(0, call_id="c", name="get_weather")]}),
        chunk({"tool_calls": [call_delta(0, name="_and_delete_files", arguments="{}")]}),
    ]),
    ("choice index not an int", [chunk({}) | {"choices": [
        {"index": 1.0, "delta": {"tool_calls": [call_delta(0, call_id="c", name="get_weather")]},
         "finish_reason": None}]}]),
    ("function and custom objects differ", [
        chunk({"tool_calls": [{"index": 0, "id": "c", "type": "custom", "function": {"name": "get_weather"},
                               "custom": {"name": "x_and_delete_files", "input": "y"}}]}),
    ]),
]


@pytest.mark.parametrize(("why", "chunks"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_streams_fail_closed(tmp_path: Path, why: str, chunks: list[dict]) -> None:
    gate = ChatStreamGate(tenant(tmp_path, WHITELIST), facts())
    items, _ = run_chat(gate, chunks)
    assert isinstance(items[-1], Fail) and items[-1].code == "blocked_by_policy", items
    assert "_and_delete_files" not in json.dumps([getattr(i, "payload", None) for i in items])
    assert gate.decisions[-1].error and gate.decisions[-1].action == "deny"
    assert gate.feed(chunk({"content": "more"})) == [] and gate.finish() == []


def test_arguments_changed_after_the_check_fail_closed(tmp_path: Path) -> None:
    gate = ChatStreamGate(tenant(tmp_path, NOT_ROOT), facts())
    chunks = [chunk({"tool_calls": [call_delta(0, call_id="c", name="delete_files", arguments='{"path": "/tmp"}')]}),
              chunk({"tool_calls": [call_delta(1, call_id="d", name="get_weather", arguments="{}")]}),
              chunk({"tool_calls": [call_delta(0, arguments=', "path": "/"}')]})]
    items, _ = run_chat(gate, chunks)
    assert isinstance(items[-1], Fail) and "changed its arguments" in items[-1].message


APPROVE_TRANSFERS = """
policy: team
rules:
  - name: transfers
    stage: tool_call
    when: 'tool_call.name == "transfer"'
    action: require_approval
"""


def test_arguments_added_after_an_approval_fail_closed(tmp_path: Path) -> None:
    # The rule reads only the name; the human approves the arguments the hold shows.
    gate = ChatStreamGate(tenant(tmp_path, APPROVE_TRANSFERS), facts())
    chunks = [chunk({"tool_calls": [call_delta(0, call_id="a", name="transfer", arguments='{"amount": 1')]}),
              chunk({"tool_calls": [call_delta(1, call_id="b", name="get_time", arguments="{}")]}),
              chunk({"tool_calls": [call_delta(0, arguments="999999}")]}),
              chunk({}, "tool_calls")]
    items, _ = run_chat(gate, chunks, approve=True)
    [hold] = [item for item in items if isinstance(item, Hold)]
    assert hold.arguments == '{"amount": 1'
    assert isinstance(items[-1], Fail) and "changed its arguments" in items[-1].message
    assert "999999" not in json.dumps([item.payload for item in items if isinstance(item, Emit)])


NO_DROP = """
policy: team
rules:
  - name: never-drop
    tools: {deny: [db_drop_all]}
  - name: db-needs-a-human
    stage: tool_call
    when: 'tool_call.name.startsWith("db_")'
    action: require_approval
"""


def test_a_name_that_grows_after_the_check_fails_closed_even_while_awaiting(tmp_path: Path) -> None:
    gate = ChatStreamGate(tenant(tmp_path, NO_DROP), facts())
    chunks = [chunk({"tool_calls": [call_delta(0, call_id="a", name="db_", arguments="{")]}),
              chunk({"tool_calls": [{"index": 0, "function": {"name": "drop_all", "arguments": "}"}}]}),
              chunk({}, "tool_calls")]
    items, _ = run_chat(gate, chunks, approve=True)
    assert [type(item) for item in items] == [Fail] and "changed its name" in items[0].message
    # Split before its arguments start, the name still fails closed: clients disagree
    # on what two pieces mean (`db_drop_all`, `drop_all` or `db_`).
    gate = ChatStreamGate(tenant(tmp_path, NO_DROP), facts())
    chunks = [chunk({"tool_calls": [call_delta(0, call_id="a", name="db_")]}),
              chunk({"tool_calls": [{"index": 0, "function": {"name": "drop_all", "arguments": "{}"}}]}),
              chunk({}, "tool_calls")]
    items, _ = run_chat(gate, chunks)
    assert [type(item) for item in items] == [Fail] and "more than one piece" in items[0].message
    assert gate.decisions[-1].error and gate.decisions[-1].rule == "never-drop"


SHADOW_WHITELIST = WHITELIST + "    shadow: true\n"
SHADOW_TEXT = "  - {name: watch-text, stage: response, action: redact, pattern: 'secret-[0-9]+', shadow: true}\n"
UNREADABLE_CHUNK = [chunk({"content": "hi"}) | {"choices": {"index": 0}}]


@pytest.mark.parametrize("policy", [SHADOW_WHITELIST, SHADOW_WHITELIST + SHADOW_TEXT], ids=["tools", "tools-and-text"])
@pytest.mark.parametrize("chunks", [*(m[1] for m in MALFORMED), UNREADABLE_CHUNK],
                         ids=[*(m[0] for m in MALFORMED), "choices not a list"])
def test_a_malformed_stream_only_shadow_rules_look_at_goes_on_as_it_came(tmp_path: Path, policy: str,
                                                                        chunks: list[dict]) -> None:
    chunks = [chunk({"role": "assistant", "content": "hi"}), *chunks, chunk({}, "tool_calls")]
    gate = ChatStreamGate(tenant(tmp_path, policy), facts())
    items, _ = run_chat(gate, chunks)
    assert emitted(items) == chunks
    assert gate.decisions and all(decision.shadow for decision in gate.decisions)
    assert any(decision.error for decision in gate.decisions)


def test_an_unreadable_chunk_fails_under_a_real_rule_that_reads_it(tmp_path: Path) -> None:
    policy = SHADOW_WHITELIST + SHADOW_TEXT.replace("watch-text", "redact-text").replace("true", "false")
    gate = ChatStreamGate(tenant(tmp_path, policy), facts())
    items, _ = run_chat(gate, UNREADABLE_CHUNK)
    assert [(type(item), getattr(item, "rule", None)) for item in items] == [(Fail, "redact-text")]


@pytest.mark.parametrize(("name", "arguments", "reason"), [
    ("", '{"path": "/tmp"}', "no readable name"),
    ("delete_files", '{"path": "/', "not valid JSON"),
])
def test_unreadable_calls_are_blocked(tmp_path: Path, name: str, arguments: str, reason: str) -> None:
    policy = NOT_ROOT + "  - name: no-nameless\n    stage: tool_call\n    tools: {deny: [nothing]}\n"
    gate = ChatStreamGate(tenant(tmp_path, policy), facts())
    items, _ = run_chat(gate, [chunk({"tool_calls": [call_delta(0, call_id="c", name=name, arguments=arguments)]}),
                               chunk({}, "tool_calls")])
    final = chat_final(items).choices[0]
    assert not final.message.tool_calls and final.finish_reason == "stop"
    assert any(reason in (decision.error or "") for decision in gate.decisions), gate.decisions


def test_a_hold_stops_everything_after_it_until_resolved(tmp_path: Path) -> None:
    policy = "policy: team\nrules:\n  - name: ask\n    stage: tool_call\n    action: require_approval\n"
    gate = ChatStreamGate(tenant(tmp_path, policy), facts())
    gate.feed(chunk({"tool_calls": [call_delta(0, call_id="a", name="get_weather", arguments="{}")]}))
    [hold] = gate.feed(chunk({"tool_calls": [call_delta(1, call_id="b", name="get_time", arguments="{}")]}))
    assert isinstance(hold, Hold) and (hold.call_key, hold.name, hold.arguments) == (0, "get_weather", "{}")
    assert gate.feed(chunk({"content": "waiting"})) == []
    with pytest.raises(ValueError, match="no tool call 5"):
        gate.resolve(5, True, None)
    after = gate.resolve(0, True, None)
    assert [c["choices"][0]["delta"].get("tool_calls", [{}])[0].get("index") for c in emitted(after)] == [0, None]
    [second] = gate.finish()
    assert isinstance(second, Hold) and second.call_key == 1


# -- one chunk ends a call and starts the next -----------------------------------------

CITY_RULE = """
policy: team
rules:
  - name: lyon
    stage: tool_call
    when: 'tool_call.arguments.city == "Lyon"'
    action: {action}
"""
LATER = ("call_T2", "get_time", '{"city": "Oslo"}')


def _packed_stream(end_first: bool, finish_with_it: bool = False) -> list[dict]:
    """The first call's arguments end in the chunk where the second call starts."""
    call_id, name, arguments = ALLOWED
    head = call_delta(0, call_id=call_id, name=name, arguments=arguments[:10])
    end = call_delta(0, arguments=arguments[10:])
    start = call_delta(1, call_id=LATER[0], name=LATER[1], arguments=LATER[2])
    finish = "tool_calls" if finish_with_it else None
    packed = chunk({"tool_calls": [end, start] if end_first else [start, end]}, finish)
    return [chunk({"role": "assistant", "content": ""}), chunk({"tool_calls": [head]}), packed,
            *([] if finish_with_it else [chunk({}, "tool_calls")])]


@pytest.mark.parametrize("finish_with_it", [False, True], ids=["then-finish", "finish-in-it"])
@pytest.mark.parametrize("end_first", [True, False], ids=["end-first", "start-first"])
def test_a_call_is_judged_on_its_whole_arguments(tmp_path: Path, end_first: bool, finish_with_it: bool) -> None:
    gate = ChatStreamGate(tenant(tmp_path, CITY_RULE.format(action="deny").replace("Lyon", "Paris")), facts())
    items, _ = run_chat(gate, _packed_stream(end_first, finish_with_it))
    final = chat_final(items).choices[0]
    assert [(c.id, c.function.name, c.function.arguments) for c in final.message.tool_calls or []] == [ALLOWED, LATER]
    assert final.finish_reason == "tool_calls" and not final.message.content
    assert gate.decisions == []  # nothing failed closed on half the arguments


@pytest.mark.parametrize("end_first", [True, False], ids=["end-first", "start-first"])
def test_a_call_ended_beside_the_next_is_blocked_on_its_whole_arguments(tmp_path: Path, end_first: bool) -> None:
    gate = ChatStreamGate(tenant(tmp_path, CITY_RULE.format(action="deny")), facts())
    items, _ = run_chat(gate, _packed_stream(end_first))
    out = json.dumps(emitted(items))
    assert ALLOWED[0] not in out and "celsius" not in out
    final = chat_final(items).choices[0]
    assert [(c.index, c.id, c.function.arguments) for c in final.message.tool_calls or []] == [(0, *LATER[::2])]
    assert final.message.content == "Tool call 'get_weather' was blocked by policy rule 'lyon'."
    assert [d.label for d in gate.decisions] == ["team/lyon=deny"] and not gate.decisions[0].error


@pytest.mark.parametrize("approve", [True, False])
@pytest.mark.parametrize("end_first", [True, False], ids=["end-first", "start-first"])
def test_a_hold_on_a_call_ended_beside_the_next(tmp_path: Path, end_first: bool, approve: bool) -> None:
    gate = ChatStreamGate(tenant(tmp_path, CITY_RULE.format(action="require_approval")), facts())
    items, _ = run_chat(gate, _packed_stream(end_first), approve)
    [hold] = [item for item in items if isinstance(item, Hold)]
    assert (hold.call_key, hold.name, hold.arguments) == (0, ALLOWED[1], ALLOWED[2])
    final = chat_final(items).choices[0]
    calls = [(c.index, c.id, c.function.arguments) for c in final.message.tool_calls or []]
    # After the hold the chunk goes on where it stopped: the next call is taken in once.
    if approve:
        assert calls == [(0, ALLOWED[0], ALLOWED[2]), (1, LATER[0], LATER[2])] and not final.message.content
    else:
        assert calls == [(0, LATER[0], LATER[2])] and "not approved" in (final.message.content or "")
