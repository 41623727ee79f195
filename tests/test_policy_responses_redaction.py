"""Response-stage redaction in Responses streams, wherever the model's text can reach
the client: deltas, text that arrives whole (item and part events, `response.completed`,
lifecycle snapshots), and events the gate cannot place, which fail closed.

Every stream here goes through the gate, then through the OpenAI SDK's own stream
accumulator where it is valid, and nothing a client can read (any string in any event,
the text it assembles from prefilled parts and deltas, the final response) may hold a key.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.policy import Emit, Fail, ResponsesStreamGate
from tests.test_policy_support import FIXTURES, emitted, facts, responses_final, run_responses, tenant

SECRET = "sk-proj-ABCDEFGHIJKLMNOPQRSTUVWX"
KEY = re.compile(r"sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}")
REDACT = "policy: team\nrules:\n  - name: no-keys-out\n    stage: response\n    action: redact\n" \
         "    detectors: [openai_key]\n"
ENVELOPE = json.loads((FIXTURES / "responses_stream" / "redacted_text.json").read_text())["events"][0]["response"]
REQUEST = {"model": "m", "input": "hi"}
SAID = f"Your key is {SECRET} - keep it safe."


# -- event builders ------------------------------------------------------------------

def response(status: str, output: list[dict]) -> dict:
    return {**ENVELOPE, "status": status, "output": output}


def message(item_id: str, *texts: str, status: str = "completed") -> dict:
    return {"id": item_id, "type": "message", "status": status, "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []} for text in texts]}


def added(index: Any, item: dict) -> dict:
    return {"type": "response.output_item.added", "output_index": index, "item": item}


def item_done(index: Any, item: dict) -> dict:
    return {"type": "response.output_item.done", "output_index": index, "item": item}


def _where(index: Any, part: Any) -> dict:
    return {"item_id": f"msg_{index}", "output_index": index, "content_index": part}


def part_added(index: Any, text: str = "", part: Any = 0) -> dict:
    return {"type": "response.content_part.added", **_where(index, part),
            "part": {"type": "output_text", "text": text, "annotations": []}}


def part_done(index: Any, text: str, part: Any = 0) -> dict:
    return {"type": "response.content_part.done", **_where(index, part),
            "part": {"type": "output_text", "text": text, "annotations": []}}


def delta(index: Any, text: str, part: Any = 0) -> dict:
    return {"type": "response.output_text.delta", **_where(index, part), "delta": text, "logprobs": []}


def text_done(index: Any, text: str, part: Any = 0) -> dict:
    return {"type": "response.output_text.done", **_where(index, part), "text": text, "logprobs": []}


def completed(*output: dict) -> dict:
    return {"type": "response.completed", "response": response("completed", list(output))}


def stream(*events: dict) -> list[dict]:
    """`events` after `response.created`, numbered as the API numbers them."""
    events = ({"type": "response.created", "response": response("in_progress", [])}, *events)
    return [{**event, "sequence_number": number} for number, event in enumerate(events)]


def streamed(index: int, *pieces: str) -> list[dict]:
    """A message at `index` whose one part streams as `pieces`, then is done."""
    text = "".join(pieces)
    return [added(index, message(f"msg_{index}", status="in_progress")), part_added(index),
            *(delta(index, piece) for piece in pieces), text_done(index, text), part_done(index, text),
            item_done(index, message(f"msg_{index}", text))]


EMPTY = message("msg_0", status="in_progress")
# Streams whose text arrives somewhere else than in deltas; each is valid, so it is redacted.
REDACTED: dict[str, Callable[[], list[dict]]] = {
    "item done, no deltas": lambda: stream(added(0, EMPTY), item_done(0, message("msg_0", SAID)),
                                           completed(message("msg_0", SAID))),
    "part done, no deltas": lambda: stream(added(0, EMPTY), part_added(0), part_done(0, SAID),
                                           item_done(0, message("msg_0", SAID)), completed(message("msg_0", SAID))),
    "part added filled": lambda: stream(added(0, EMPTY), part_added(0, SAID), text_done(0, SAID), part_done(0, SAID),
                                        item_done(0, message("msg_0", SAID)), completed(message("msg_0", SAID))),
    "item added filled": lambda: stream(added(0, message("msg_0", SAID, status="in_progress")),
                                        item_done(0, message("msg_0", SAID)), completed(message("msg_0", SAID))),
    "filled part goes on in deltas": lambda: stream(
        added(0, EMPTY), part_added(0, "Your key is sk-proj-ABCD"), delta(0, "EFGHIJKLMNOPQRSTUVWX - keep it"),
        delta(0, " safe."), text_done(0, SAID), part_done(0, SAID), item_done(0, message("msg_0", SAID)),
        completed(message("msg_0", SAID))),
    "extra part in completed": lambda: stream(*streamed(0, "Hel", "lo."), completed(message("msg_0", "Hello.", SAID))),
    "message only in completed": lambda: stream(*streamed(0, "Hello."),
                                                completed(message("msg_0", "Hello."), message("msg_1", SAID))),
    "in_progress snapshot": lambda: [
        *stream({"type": "response.in_progress", "response": response("in_progress", [message("msg_0", SAID)])},
                *streamed(0, "Hello."), completed(message("msg_0", "Hello.")))],
}

# Streams with output text the gate cannot place: they end in an error instead.
FAILED: dict[str, Callable[[], list[dict]]] = {
    "delta at an unannounced index": lambda: stream(added(0, EMPTY), part_added(0), delta(1, SAID)),
    "delta at index 0.0": lambda: stream(added(0, EMPTY), part_added(0), delta(0.0, SAID)),
    "delta at content index 0.0": lambda: stream(added(0, EMPTY), part_added(0), delta(0, SAID, part=0.0)),
    "delta after its part was done": lambda: stream(
        added(0, EMPTY), part_added(0), delta(0, "Your key is sk-proj-ABCD"), text_done(0, "Your key is sk-proj-ABCD"),
        delta(0, "EFGHIJKLMNOPQRSTUVWX")),
    "item added at index 0.0": lambda: stream(added(0.0, message("msg_0", SAID, status="in_progress"))),
    "item done, never added": lambda: stream(item_done(0, message("msg_0", SAID))),
    "delta that is not a string": lambda: stream(added(0, EMPTY), part_added(0), {**delta(0, ""), "delta": [SAID]}),
}


# -- what a client can read ------------------------------------------------------------

def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for entry in value.values() for text in _strings(entry)]
    if isinstance(value, list):
        return [text for entry in value for text in _strings(entry)]
    return []


def _assembled(payloads: list[dict]) -> list[str]:
    """Each part's text as a client builds it: prefilled text, then the deltas."""
    parts: dict[tuple[Any, Any], str] = {}
    for event in payloads:
        kind = event.get("type")
        if kind == "response.output_item.added":
            for number, part in enumerate(event["item"].get("content") or []):
                parts[(event["output_index"], number)] = part.get("text") or ""
        elif kind == "response.content_part.added":
            key = (event["output_index"], event["content_index"])
            parts[key] = parts.get(key, "") + (event["part"].get("text") or "")
        elif kind == "response.output_text.delta":
            key = (event["output_index"], event["content_index"])
            parts[key] = parts.get(key, "") + str(event["delta"])
    return list(parts.values())


def assert_no_key(payloads: list[dict]) -> None:
    readable = _strings(payloads) + _assembled(payloads)
    assert not [text for text in readable if KEY.search(text)]


def _gate(tmp_path: Path, policy: str = REDACT) -> ResponsesStreamGate:
    return ResponsesStreamGate(tenant(tmp_path, policy), facts(REQUEST))


@pytest.mark.parametrize("name", REDACTED)
def test_text_that_did_not_stream_is_redacted(tmp_path: Path, name: str) -> None:
    gate = _gate(tmp_path)
    items = run_responses(gate, REDACTED[name]())
    payloads = emitted(items)
    assert_no_key(payloads)
    assert [p["sequence_number"] for p in payloads] == list(range(len(payloads)))
    final = responses_final(items)  # every event validates, and the SDK assembles them
    texts = "".join(part.text for item in final.output if item.type == "message" for part in item.content)
    assert not KEY.search(texts) and "[REDACTED]" in (texts if "snapshot" not in name else json.dumps(payloads))
    assert [d.label for d in gate.decisions] == ["team/no-keys-out=redact"]


def test_done_events_state_what_streamed(tmp_path: Path) -> None:
    """A filled part that goes on in deltas: the done events, the item and the final
    response state exactly the text the client assembled from them."""
    items = run_responses(_gate(tmp_path), REDACTED["filled part goes on in deltas"]())
    payloads = emitted(items)
    [assembled] = _assembled(payloads)
    assert assembled == "Your key is [REDACTED] - keep it safe."
    stated = [p["text"] for p in payloads if p["type"] == "response.output_text.done"]
    stated += [p["part"]["text"] for p in payloads if p["type"] == "response.content_part.done"]
    stated += [p["item"]["content"][0]["text"] for p in payloads if p["type"] == "response.output_item.done"]
    assert stated == [assembled] * 3
    assert responses_final(items).output_text == assembled


@pytest.mark.parametrize("name", FAILED)
def test_text_the_gate_cannot_place_fails_closed(tmp_path: Path, name: str) -> None:
    items = run_responses(_gate(tmp_path), FAILED[name]())
    assert isinstance(items[-1], Fail) and items[-1].code == "blocked_by_policy"
    assert items[-1].rule == "no-keys-out"
    assert_no_key(emitted(items[:-1]))


def test_a_stream_only_shadow_rules_read_goes_on_as_it_came(tmp_path: Path) -> None:
    events = FAILED["delta at an unannounced index"]()
    gate = _gate(tmp_path, REDACT + "    shadow: true\n")
    assert emitted(run_responses(gate, events)) == events
    assert [(d.shadow, bool(d.error)) for d in gate.decisions][:1] == [(True, True)]


def test_prose_deltas_pass_as_they_came(tmp_path: Path) -> None:
    events = stream(*streamed(0, "Hello ", "there."), completed(message("msg_0", "Hello there.")))
    items = run_responses(_gate(tmp_path), events)
    assert all(isinstance(item, Emit) and item.original for item in items)


def test_a_snapshot_while_a_part_streams_keeps_the_held_tail_in_its_part(tmp_path: Path) -> None:
    """The filter holds a possible key's head back from the open part; a text redacted
    whole meanwhile (here a snapshot's other message) must neither take it nor drop it."""
    so_far = [message("msg_0", "Your key is sk-proj-ABCD", status="in_progress"), message("msg_1", "Hello.")]
    snapshot = {"type": "response.in_progress", "response": response("in_progress", so_far)}
    events = stream(added(0, EMPTY), part_added(0), delta(0, "Your key is sk-proj-ABCD"), snapshot,
                    delta(0, "EFGHIJKLMNOPQRSTUVWX - keep it safe."), text_done(0, SAID), part_done(0, SAID),
                    item_done(0, message("msg_0", SAID)), completed(message("msg_0", SAID)))
    items = run_responses(_gate(tmp_path), events)
    payloads = emitted(items)
    assert_no_key(payloads)
    [stated] = [p for p in payloads if p["type"] == "response.in_progress"]
    assert [m["content"][0]["text"] for m in stated["response"]["output"]] == ["Your key is ", "Hello."]
    assert _assembled(payloads) == ["Your key is [REDACTED] - keep it safe."]
    assert responses_final(items).output_text == "Your key is [REDACTED] - keep it safe."
