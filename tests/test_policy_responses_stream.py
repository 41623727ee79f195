"""The Responses stream gate: golden event streams validated by the OpenAI SDK, any
split of the arguments, consecutive sequence numbers, and tampering caught."""

from __future__ import annotations

import copy
import itertools
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.policy import Emit, Fail, ResponsesStreamGate
from tests.test_policy_support import FIXTURES, as_expected, emitted, facts, responses_final, run_responses, tenant

GOLDEN = sorted((FIXTURES / "responses_stream").glob("*.json"))
REQUEST = {"model": "m", "input": "hi"}


def _sequence(items: list) -> list[int]:
    return [item.payload["sequence_number"] for item in items if isinstance(item, Emit)]


@pytest.mark.parametrize("path", GOLDEN, ids=[path.stem for path in GOLDEN])
def test_golden_streams(tmp_path: Path, path: Path) -> None:
    case = json.loads(path.read_text())
    events = case["events"]
    gate = ResponsesStreamGate(tenant(tmp_path, case["policy"]), facts(REQUEST))
    items = run_responses(gate, events, case["approve"])
    assert [as_expected(item) for item in items] == case["expect"]
    assert [decision.label for decision in gate.decisions] == case["decisions"]
    assert _sequence(items) == list(range(len(_sequence(items))))
    for item in items:
        if isinstance(item, Emit):
            assert item.event == item.payload["type"]
            if item.original:
                assert any(item.payload is event for event in events)
    if not any(isinstance(item, Fail) for item in items):
        final = responses_final(items)  # every event validates and the SDK assembles them
        completed = next(i.payload for i in items if isinstance(i, Emit) and i.event == "response.completed")
        assert [o.type for o in final.output] == [o["type"] for o in completed["response"]["output"]]


# -- any split of the arguments -----------------------------------------------------

WHITELIST = "policy: team\nrules:\n  - name: weather-only\n    tools: {allow: [get_weather]}\n"
NOT_ROOT = """
policy: team
rules:
  - name: not-root
    stage: tool_call
    when: 'tool_call.name == "delete_files" && tool_call.arguments.path == "/"'
    action: deny
"""
ALLOWED = ("fc_1", "call_W1", "get_weather", '{"city": "Lyon", "unit": "celsius"}')
BLOCKED = ("fc_2", "call_D2", "delete_files", '{"path": "/", "recursive": true}')
BASE = json.loads((FIXTURES / "responses_stream" / "blocked_function_call.json").read_text())["events"]


def _pieces(text: str, cuts: list[int]) -> list[str]:
    bounds = sorted({0, len(text), *(c % (len(text) + 1) for c in cuts)})
    return [text[a:b] for a, b in itertools.pairwise(bounds)] or [""]


def _call_events(index: int, call: tuple[str, str, str, str], cuts: list[int]) -> list[dict]:
    item_id, call_id, name, arguments = call
    item = {"id": item_id, "type": "function_call", "status": "in_progress", "arguments": "",
            "call_id": call_id, "name": name}
    events = [{"type": "response.output_item.added", "output_index": index, "item": item}]
    events += [{"type": "response.function_call_arguments.delta", "item_id": item_id, "output_index": index,
                "delta": piece} for piece in _pieces(arguments, cuts)]
    events.append({"type": "response.function_call_arguments.done", "item_id": item_id, "output_index": index,
                   "arguments": arguments})
    done = {**item, "status": "completed", "arguments": arguments}
    events.append({"type": "response.output_item.done", "output_index": index, "item": done})
    return events


_cuts = st.lists(st.integers(min_value=0, max_value=60), max_size=6)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(policy=st.sampled_from([WHITELIST, NOT_ROOT]), blocked_first=st.booleans(), cuts=st.tuples(_cuts, _cuts))
def test_any_split_never_leaks_the_blocked_call(tmp_path: Path, policy: str, blocked_first: bool,
                                                cuts: tuple) -> None:
    calls = [BLOCKED, ALLOWED] if blocked_first else [ALLOWED, BLOCKED]
    head = [event for event in BASE if event.get("output_index", 0) == 0 and event["type"] != "response.completed"]
    events = copy.deepcopy(head)
    for offset, call in enumerate(calls):
        events += _call_events(1 + offset, call, cuts[offset])
    output = [copy.deepcopy(BASE[-1]["response"]["output"][0])] + [
        {"id": c[0], "type": "function_call", "status": "completed", "arguments": c[3], "call_id": c[1], "name": c[2]}
        for c in calls]
    events.append({"type": "response.completed", "response": {**BASE[-1]["response"], "output": output}})
    for number, event in enumerate(events):
        event["sequence_number"] = number

    gate = ResponsesStreamGate(tenant(tmp_path, policy), facts(REQUEST))
    items = run_responses(gate, events)
    text = json.dumps(emitted(items))
    assert "call_D2" not in text and '\\"recursive\\"' not in text
    assert _sequence(items) == list(range(len(items)))
    final = responses_final(items)
    calls_out = [(o.id, o.call_id, o.name, o.arguments) for o in final.output if o.type == "function_call"]
    assert calls_out == [ALLOWED]
    blocked_at = 1 + calls.index(BLOCKED)
    assert final.output[blocked_at].type == "message"
    assert "was blocked by policy rule" in final.output[blocked_at].content[0].text


def test_a_released_call_that_changes_at_done_fails_closed(tmp_path: Path) -> None:
    events = _call_events(0, ("fc_1", "c1", "delete_files", '{"path": "/tmp"}'), [])
    events[-1]["item"]["arguments"] = '{"path": "/"}'
    gate = ResponsesStreamGate(tenant(tmp_path, NOT_ROOT), facts(REQUEST))
    items = run_responses(gate, events)
    assert isinstance(items[-1], Fail) and "changed its arguments" in items[-1].message


def test_a_renamed_call_in_the_final_output_fails_closed(tmp_path: Path) -> None:
    events = _call_events(0, ("fc_1", "c1", "get_weather", "{}"), [])
    renamed = {**events[-1]["item"], "name": "delete_files"}
    events.append({"type": "response.completed", "response": {**BASE[-1]["response"], "output": [renamed]}})
    gate = ResponsesStreamGate(tenant(tmp_path, WHITELIST), facts(REQUEST))
    items = run_responses(gate, events)
    assert isinstance(items[-1], Fail) and "changed its name" in items[-1].message


def test_an_output_item_without_an_index_fails_closed(tmp_path: Path) -> None:
    gate = ResponsesStreamGate(tenant(tmp_path, WHITELIST), facts(REQUEST))
    [fail] = gate.feed("response.output_item.added", {"type": "response.output_item.added", "item": {}})
    assert isinstance(fail, Fail) and fail.code == "blocked_by_policy"


def test_without_rules_every_event_passes_as_is(tmp_path: Path) -> None:
    gate = ResponsesStreamGate(tenant(tmp_path, "policy: team\nrules: []\n"), facts(REQUEST))
    for event in BASE:
        [item] = gate.feed(event["type"], event)
        assert isinstance(item, Emit) and item.payload is event and item.original


# -- calls that change after they were judged, or were never announced ----------------

APPROVE_TRANSFERS = ("policy: team\nrules:\n  - name: transfers\n    stage: tool_call\n"
                     "    when: 'tool_call.name == \"transfer\"'\n    action: require_approval\n")
DENY_DELETES = "policy: team\nrules:\n  - name: never-delete\n    tools: {deny: [delete_file, delete_repo]}\n"
DELETE = {"id": "fc_9", "type": "function_call", "status": "completed", "call_id": "c9", "name": "delete_file",
          "arguments": '{"path": "/"}'}


def _completed(output: list[dict]) -> dict:
    return {"type": "response.completed", "response": {**BASE[-1]["response"], "output": output}}


def _fails(items: list, says: str) -> bool:
    return isinstance(items[-1], Fail) and says in items[-1].message


@pytest.mark.parametrize("where", ["item-done", "completed"])
def test_an_approved_call_that_changes_its_arguments_after_fails_closed(tmp_path: Path, where: str) -> None:
    # The rule reads only the name: the human approves the arguments the hold shows.
    events = _call_events(0, ("fc_1", "c1", "transfer", '{"amount": 1}'), [])
    larger = {**events[-1]["item"], "arguments": '{"amount": 999999}'}
    if where == "item-done":
        events[-1]["item"] = larger
    events.append(_completed([larger]))
    gate = ResponsesStreamGate(tenant(tmp_path, APPROVE_TRANSFERS), facts(REQUEST))
    items = run_responses(gate, events, approve=True)
    assert _fails(items, "changed its arguments") and "999999" not in json.dumps(emitted(items[1:-1]))


@pytest.mark.parametrize("kind", ["mcp_call", "mcp_approval_request"])
def test_an_mcp_call_that_changes_its_tool_after_the_check_fails_closed(tmp_path: Path, kind: str) -> None:
    added = {"id": "mcp_1", "type": kind, "server_label": "github", "name": "list_repos", "arguments": ""}
    done = {**added, "name": "delete_repo", "arguments": '{"repo": "prod"}'}
    events = [{"type": "response.output_item.added", "output_index": 0, "item": added},
              {"type": "response.output_item.done", "output_index": 0, "item": done}, _completed([done])]
    gate = ResponsesStreamGate(tenant(tmp_path, DENY_DELETES), facts(REQUEST))
    items = run_responses(gate, events)
    assert _fails(items, "changed its name") and "delete_repo" not in json.dumps(emitted(items[:-1]))


def test_arguments_done_unlike_their_deltas_fail_closed(tmp_path: Path) -> None:
    events = _call_events(0, ("fc_1", "c1", "delete_files", '{"path": "/"}'), [])
    events[-2]["arguments"] = events[-1]["item"]["arguments"] = '{"path": "/tmp"}'
    gate = ResponsesStreamGate(tenant(tmp_path, NOT_ROOT), facts(REQUEST))
    items = run_responses(gate, events)
    assert [type(item) for item in items] == [Fail] and "other arguments than it streamed" in items[0].message


MESSAGE_ADDED = {"type": "response.output_item.added", "output_index": 0,
                 "item": {"id": "m1", "type": "message", "role": "assistant", "status": "in_progress", "content": []}}
UNANNOUNCED = {
    "item done, never added": [{"type": "response.output_item.done", "output_index": 0, "item": DELETE}],
    "item done, added as a message": [MESSAGE_ADDED,
                                      {"type": "response.output_item.done", "output_index": 0, "item": DELETE}],
    "argument delta, never added": [{"type": "response.function_call_arguments.delta", "output_index": 0,
                                     "item_id": "fc_9", "delta": '{"path": "/"}'}],
}


@pytest.mark.parametrize("events", UNANNOUNCED.values(), ids=UNANNOUNCED.keys())
def test_a_call_no_item_added_announced_fails_closed(tmp_path: Path, events: list[dict]) -> None:
    gate = ResponsesStreamGate(tenant(tmp_path, DENY_DELETES), facts(REQUEST))
    items = run_responses(gate, [*events, _completed([DELETE])])
    assert _fails(items, "no 'response.output_item.added' announced")
    assert "delete_file" not in json.dumps([item.payload for item in items if isinstance(item, Emit)])


def test_a_malformed_stream_only_shadow_rules_look_at_goes_on_as_it_came(tmp_path: Path) -> None:
    events = [*_call_events(0, ("fc_1", "c1", "get_weather", "{}"), []), *UNANNOUNCED["item done, never added"]]
    events = [{**event, "sequence_number": number} for number, event in enumerate(events)]
    gate = ResponsesStreamGate(tenant(tmp_path, WHITELIST + "    shadow: true\n"), facts(REQUEST))
    assert emitted(run_responses(gate, events)) == events
    assert [(d.shadow, bool(d.error)) for d in gate.decisions] == [(True, True)]
