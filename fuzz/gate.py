"""The tool-call stream gate under fire: generated chat streams with several tool calls.

A scenario is one streamed chat completion: one or two choices, each with text and tool
calls (allowed ones, and denied ones under many disguises: other case, fullwidth,
zero-width and combining characters, look-alike letters, dash variants), call indexes
with gaps, names and arguments split at arbitrary points, choices interleaved, deltas
of one choice packed into one chunk, and now and then one chunk broken (a missing or
non-numeric index, a non-list `tool_calls`, a non-object delta) or a later call started
before the previous one finished.

Whatever happens, nothing of a denied call reaches the client (its id, its arguments,
its name as a tool call), and when the gate did not end the stream with an error,
every allowed call comes out byte-identical, in order, at contiguous indexes.
"""

from __future__ import annotations

import functools
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from hypothesis import strategies as st

from fuzz.known import Violation
from fuzz.strategies import split_at
from gateway.policy import ChatStreamGate, Emit, Fail, Hold, RequestFacts, load_policies
from gateway.policy.engine import TenantPolicies

DENY_LIST = """\
policy: default
rules:
  - name: no-delete
    tools: {deny: [delete_file]}
"""
ALLOW_LIST = """\
policy: default
rules:
  - name: weather-only
    tools: {allow: [get_weather, lookup, search_web]}
"""
ARGUMENT_RULE = """\
policy: default
rules:
  - name: no-delete
    tools: {deny: [delete_file]}
  - name: not-root
    stage: tool_call
    when: 'has(tool_call.arguments.path) && tool_call.arguments.path == "/"'
    action: deny
"""
POLICIES = (DENY_LIST, ALLOW_LIST, ARGUMENT_RULE)
ALLOWED_NAMES = ("get_weather", "lookup", "search_web")
DENIED = "delete_file"
MARKER = "SECRET-ARGUMENT"

# Per character of the denied name: ways to write it that a deny-list must still catch.
_LOOKALIKES = {"e": ["E", "\u0435", "\u0415", "\uff45", "\u03b5"], "l": ["L", "1", "\u04cf", "\u0406", "|"],
               "d": ["D", "\u0501", "\uff44"], "t": ["T", "\u0442", "\uff54"], "f": ["F", "\uff46"],
               "i": ["I", "\u0456", "\u0131", "\uff49"], "_": ["-", "\u2010", "\u2013", "\uff3f", "\ufe58"]}
_INVISIBLE = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u0301", " ", "\u00a0", "\u3000"]


@st.composite
def denied_names(draw: st.DrawFn) -> str:
    """`delete_file` in disguise (its deny-list skeleton is unchanged)."""
    out = []
    for char in DENIED:
        out.append(draw(st.sampled_from([char, *_LOOKALIKES.get(char, [])])))
        out.extend(draw(st.lists(st.sampled_from(_INVISIBLE), max_size=1)))
    return "".join(out)


# Names an allow-list must refuse: near misses of the allowed names.
_NEAR_MISSES = ["Get_weather", "GET_WEATHER", " get_weather", "lookup ", "\uff4c\uff4f\uff4f\uff4b\uff55\uff50",
                "get\u200b_weather", "get_w\u0435ather", "search_web\u2060", "l00kup", "search-web"]


@dataclass(frozen=True)
class Call:
    choice: int
    index: int
    id: str
    name: str
    arguments: str
    allowed: bool


@dataclass(frozen=True)
class Scenario:
    policy: str
    calls: tuple[Call, ...]
    chunks: tuple[dict[str, Any], ...]
    breakage: str | None
    """How one chunk was broken on purpose, if it was."""
    interleaved: bool
    """A call's last delta came after the next call began."""


def _pieces(draw: st.DrawFn, text: str) -> list[str]:
    return split_at(text, draw(st.lists(st.integers(min_value=0, max_value=64), max_size=4))) or [""]


def _arguments(draw: st.DrawFn, path: str, marked: str | None) -> str:
    note = marked if marked is not None else draw(st.text(max_size=6))
    return orjson.dumps({"path": path, "n": draw(st.integers(-5, 5)), "note": note}).decode()


def _call(draw: st.DrawFn, policy: str, choice: int, index: int, serial: int) -> Call:
    path = draw(st.sampled_from(["/tmp", "/home", "/"]))
    if draw(st.booleans()):
        name = draw(st.sampled_from(ALLOWED_NAMES))
    elif policy == ALLOW_LIST:
        name = draw(st.sampled_from(_NEAR_MISSES) | denied_names())
    else:
        name = draw(denied_names())
    allowed = name in ALLOWED_NAMES and not (policy == ARGUMENT_RULE and path == "/")
    arguments = _arguments(draw, path, None if allowed else f"{MARKER}-{serial}")
    return Call(choice, index, f"call_{'ok' if allowed else 'DENIED'}_{serial}", name, arguments, allowed)


def _deltas(draw: st.DrawFn, call: Call) -> list[dict[str, Any]]:
    names = _pieces(draw, call.name)
    first = {"index": call.index, "id": call.id, "type": "function", "function": {"name": names[0], "arguments": ""}}
    deltas = [first, *({"index": call.index, "function": {"name": part}} for part in names[1:])]
    deltas += [{"index": call.index, "function": {"arguments": part}} for part in _pieces(draw, call.arguments)]
    return deltas


def _chunk(choice: int, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"id": "chatcmpl-fuzz", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": choice, "delta": delta, "finish_reason": finish, "logprobs": None}]}


def _choice_stream(draw: st.DrawFn, policy: str, choice: int, serial: int) -> tuple[list[Call], list[dict], bool]:
    index = draw(st.integers(0, 2))
    calls = []
    for number in range(draw(st.integers(0, 4))):
        calls.append(_call(draw, policy, choice, index, serial + number))
        index += 1 + draw(st.integers(0, 2) | st.just(0))  # gaps between indexes
    text = draw(st.text(max_size=20))
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
    deltas += [{"content": part} for part in _pieces(draw, text) if part]
    per_call = [[{"tool_calls": [entry]} for entry in _deltas(draw, call)] for call in calls]
    interleaved = False
    if len(per_call) > 1 and draw(st.integers(0, 5)) == 0:
        at = draw(st.integers(0, len(per_call) - 2))
        per_call[at + 1].insert(1, per_call[at].pop())
        interleaved = True
    for call_deltas in per_call:
        deltas += call_deltas
    packed = _pack(draw, deltas)
    chunks = [_chunk(choice, delta) for delta in packed]
    chunks.append(_chunk(choice, {}, "tool_calls" if calls else "stop"))
    return calls, chunks, interleaved


def _pack(draw: st.DrawFn, deltas: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Merge some neighbouring deltas into one (parallel tool-call entries, text beside a call)."""
    packed: list[dict[str, Any]] = []
    for delta in deltas:
        if packed and draw(st.integers(0, 3)) == 0 and not (set(delta) & set(packed[-1]) - {"tool_calls"}):
            merged = dict(packed[-1])
            for key, value in delta.items():
                merged[key] = [*merged.get(key, []), *value] if key == "tool_calls" else value
            packed[-1] = merged
        else:
            packed.append(delta)
    return packed


def _interleave(draw: st.DrawFn, streams: list[list[dict]]) -> list[dict]:
    out: list[dict] = []
    queues = [list(stream) for stream in streams]
    while any(queues):
        live = [queue for queue in queues if queue]
        out.append(draw(st.sampled_from(live)).pop(0) if len(live) > 1 else live[0].pop(0))
    return out


_BREAKAGES = ("drop index", "string index", "tool_calls object", "delta list", "choices object", "choice string")
# Breakages that leave a chunk the gate cannot read at all.
_UNREADABLE = frozenset({"delta list", "choices object"})


def _break(chunk: dict[str, Any], how: str) -> dict[str, Any]:
    broken = orjson.loads(orjson.dumps(chunk))
    choice = broken["choices"][0]
    calls = choice["delta"].get("tool_calls")
    if how == "drop index" and calls:
        calls[0].pop("index")
    elif how == "string index" and calls:
        calls[0]["index"] = str(calls[0]["index"])
    elif how == "tool_calls object" and calls:
        choice["delta"]["tool_calls"] = calls[0]
    elif how == "delta list":
        choice["delta"] = [choice["delta"]]
    elif how == "choices object":
        broken["choices"] = choice
    elif how == "choice string":
        broken["choices"] = [orjson.dumps(choice).decode()]
    return broken


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    policy = draw(st.sampled_from(POLICIES))
    calls: list[Call] = []
    streams: list[list[dict]] = []
    interleaved = False
    for choice in range(draw(st.integers(1, 2))):
        choice_calls, chunks, calls_interleaved = _choice_stream(draw, policy, choice, serial=10 * choice)
        calls += choice_calls
        streams.append(chunks)
        interleaved = interleaved or calls_interleaved
    chunks = _interleave(draw, streams)
    breakage = None
    if chunks and draw(st.integers(0, 7)) == 0:
        at = draw(st.integers(0, len(chunks) - 1))
        breakage = draw(st.sampled_from(_BREAKAGES))
        chunks[at] = _break(chunks[at], breakage)
    if draw(st.booleans()):
        chunks.append({**_chunk(0, {}), "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 5,
                                                                 "total_tokens": 8}})
    return Scenario(policy, tuple(calls), tuple(chunks), breakage, interleaved)


@functools.cache
def tenant_policies(*documents: str) -> TenantPolicies:
    """A tenant under every one of these policy documents (`default` first)."""
    directory = Path(tempfile.mkdtemp(prefix="lockgate-fuzz-policy-"))
    for number, text in enumerate(documents):
        (directory / f"p{number}.yaml").write_text(text)
    policies, problems = load_policies(directory)
    assert policies is not None, problems
    return policies.for_tenant([name for name in policies.names() if name != "default"])


def request_facts() -> RequestFacts:
    return RequestFacts(tenant="acme", agent=None, alias="m", api="chat", headers={},
                        body={"model": "m", "messages": [{"role": "user", "content": "hi"}]})


def run_gate(gate: ChatStreamGate, chunks: tuple[dict[str, Any], ...]) -> tuple[list[Any], bool]:
    """Feed every chunk, then finish; (emitted payloads, whether the gate failed the stream)."""
    items = []
    for chunk in chunks:
        items += gate.feed(chunk)
    items += gate.finish()
    assert not any(isinstance(item, Hold) for item in items), "no rule here asks for approval"
    return [item.payload for item in items if isinstance(item, Emit)], any(isinstance(i, Fail) for i in items)


def reassembled(payloads: list[Any]) -> dict[tuple[int, int], dict[str, str]]:
    """Tool calls as a lenient client assembles them: fragments joined per (choice, index)."""
    calls: dict[tuple[int, int], dict[str, str]] = {}
    for payload in payloads:
        choices = payload.get("choices")
        for choice in choices if isinstance(choices, list) else [choices]:
            delta = choice.get("delta") if isinstance(choice, dict) else None
            for part in delta if isinstance(delta, list) else [delta]:
                entries = part.get("tool_calls") if isinstance(part, dict) else None
                for entry in entries if isinstance(entries, list) else [entries]:
                    if isinstance(entry, dict):
                        _add_fragment(calls, (choice["index"], entry.get("index", -1)), entry)
    return calls


def _add_fragment(calls: dict[tuple[int, int], dict[str, str]], key: tuple[int, int], entry: dict) -> None:
    call = calls.setdefault(key, {"id": "", "name": "", "arguments": ""})
    function = entry.get("function") if isinstance(entry.get("function"), dict) else {}
    for field, value in (("id", entry.get("id")), ("name", function.get("name")),
                         ("arguments", function.get("arguments"))):
        call[field] += value if isinstance(value, str) else ""


def packs_a_continuation(chunks: tuple[dict[str, Any], ...]) -> bool:
    """Whether one chunk carries more of a call after (or beside) the start of a later one."""
    for chunk in chunks:
        for choice in chunk.get("choices") if isinstance(chunk.get("choices"), list) else ():
            delta = choice.get("delta") if isinstance(choice, dict) else None
            entries = delta.get("tool_calls") if isinstance(delta, dict) else None
            indexes = {entry.get("index") for entry in entries or () if isinstance(entry, dict)}
            if len(indexes) > 1:
                return True
    return False


def check_scenario(scenario: Scenario) -> None:
    fed = orjson.dumps(scenario.chunks)
    gate = ChatStreamGate(tenant_policies(scenario.policy), request_facts())
    payloads, failed = run_gate(gate, scenario.chunks)
    if orjson.dumps(scenario.chunks) != fed:
        raise Violation("gate-mutates-input", "the gate changed the chunks it was fed")
    leak = "gate-leak-unreadable-chunk" if scenario.breakage in _UNREADABLE else "gate-leak"
    wire = orjson.dumps(payloads).decode("utf-8")
    if MARKER in wire:
        raise Violation(leak, "the arguments of a denied call reached the client")
    out = reassembled(payloads)
    denied = {call.name for call in scenario.calls if call.name not in ALLOWED_NAMES}
    for key, seen in out.items():
        if seen["name"] in denied or (not failed and seen["name"] not in ALLOWED_NAMES):
            raise Violation(leak, f"a tool call named {seen['name']!r} reached the client at {key}")
    if failed or scenario.breakage or scenario.interleaved:
        return
    for call in scenario.calls:
        if not call.allowed and call.id in wire:
            raise Violation(leak, f"the id of denied call {call.id} reached the client")
    mangled = "gate-early-settle" if packs_a_continuation(scenario.chunks) else "gate-mangles-allowed-call"
    for choice in {call.choice for call in scenario.calls}:
        expected = [(c.id, c.name, c.arguments) for c in scenario.calls if c.allowed and c.choice == choice]
        got = [(v["id"], v["name"], v["arguments"]) for (c, _), v in sorted(out.items()) if c == choice]
        if got != expected:
            raise Violation(mangled, f"choice {choice}: allowed calls came out as {got}, not {expected}")
        indexes = sorted(index for (c, index) in out if c == choice)
        if indexes != list(range(len(indexes))):
            raise Violation("gate-index-gaps", f"choice {choice}: client indexes {indexes} have gaps")
