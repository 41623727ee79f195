"""Reading and writing `chat.completion.chunk` dicts for the chat stream gate.

Pure helpers: what a tool-call delta carries (and whether clients could read it two
ways), whether a choice index is one every client reads alike, whether a chunk holds
one call delta and nothing else, chunks the gate writes itself, a call moved to another
index, and the rule that each choice's `role` is sent once.
"""

from __future__ import annotations

from typing import Any

from gateway.policy.gating import Emit, GateItem

LEGACY = "function_call"


# What a tool-call delta's `type` says to read, and the field its arguments are in.
_SPECS = {"function": "arguments", "custom": "input"}
_OTHER = {"function": "custom", "custom": "function"}


def declared_type(entry: dict, source: str) -> str | None:
    """The type a tool-call delta declares: "function", "custom", "" (none: continuation
    deltas name none), or None for a type the gate cannot read."""
    if source == LEGACY:
        return "function"
    kind = entry.get("type")
    if kind is None:
        return ""
    return kind if isinstance(kind, str) and kind in _SPECS else None


def _fragments(entry: dict, source: str, kind: str) -> tuple[str, str] | None:
    """(name fragment, arguments fragment) of a tool-call delta of `kind` ("function" or
    "custom"), read from the object its type names, as the non-streamed gate does. None
    when the other object says something else: clients differ on which one they read
    (some take `function` whatever the type), so no one reading is safe to judge."""
    if source == LEGACY:
        return _read(entry, "arguments")
    read = _read(entry.get(kind), _SPECS[kind])
    other_kind = _OTHER[kind]
    other = _read(entry.get(other_kind), _SPECS[other_kind])
    return read if other == ("", "") or other == read else None


def read_call(entry: dict, source: str, kind: str = "") -> tuple[str, str, str] | str:
    """(kind, name, arguments) of a chat tool call, or of a call delta read as the type an
    earlier delta fixed (`kind`, "" for none); or why it cannot be read one way only (an
    unknown type, or objects that disagree). The JSON gate and the stream gate read calls
    here alike, so they refuse the same calls with the same words."""
    declared = declared_type(entry, source)
    if declared is None:
        return f"a tool call has an unknown 'type' ({str(entry.get('type'))[:40]!r})"
    kind = kind or declared or "function"  # no `type`: a function call, as a stream's first delta
    read = _fragments(entry, source, kind)
    if read is None:
        return f"a tool call carries a 'function' and a 'custom' object that differ ({kind} call)"
    return kind, *read


def _read(spec: Any, field: str) -> tuple[str, str]:
    if not isinstance(spec, dict):
        return "", ""
    name, arguments = spec.get("name"), spec.get(field)
    return (name if isinstance(name, str) else "", arguments if isinstance(arguments, str) else "")


def plain_index(index: Any) -> bool:
    """Whether a choice index is a plain non-negative int. Clients coerce others their
    own way (1.0 or "1" to choice 1, True to 1, -1 to the last choice of a list), so
    the gate cannot know which choice such a delta joins. `type() is` is the cheap test
    that also excludes bool."""
    return type(index) is int and index >= 0


def meaningful(choice: dict) -> bool:
    """Whether a choice in a chunk still says anything (a value or a finish_reason)."""
    delta = choice.get("delta") or {}
    return choice.get("finish_reason") is not None or any(v not in (None, "", []) for v in delta.values())


def single_call_chunk(chunk: dict) -> bool:
    """Whether the chunk carries one tool-call delta and nothing else worth sending alone."""
    choices = chunk["choices"]
    if len(choices) != 1 or chunk.get("usage") or not isinstance(choices[0], dict):
        return False
    data = choices[0]
    delta = data.get("delta")
    if data.get("finish_reason") is not None or data.get("logprobs") or not isinstance(delta, dict):
        return False
    calls = delta.get("tool_calls")
    count = (len(calls) if isinstance(calls, list) else 0) + (delta.get(LEGACY) is not None)
    others = [key for key, value in delta.items()
              if key not in ("role", "tool_calls", LEGACY) and value not in (None, "", [])]
    return count == 1 and not others


def synthetic(envelope: dict, choice: int, delta: dict) -> dict:
    """A chunk the gate writes: the stream's id, model, ... around one choice's delta."""
    return {**envelope, "choices": [{"index": choice, "delta": delta, "finish_reason": None, "logprobs": None}]}


def with_index(entry: dict, index: int | None) -> dict:
    """A tool-call delta moved to `index` (the same object when nothing moves)."""
    if index is None or entry.get("index", index) == index:
        return entry
    return {**entry, "index": index}


def reindexed(item: Emit, choice: int, upstream: int, client: int) -> Emit:
    """A held chunk of a released call, with the call's index as the client sees it."""
    if client == upstream:
        return item
    choices = [
        {**data, "delta": {**data["delta"], "tool_calls": [
            with_index(entry, client) if entry.get("index") == upstream else entry
            for entry in data["delta"]["tool_calls"]]}}
        if data.get("index", 0) == choice else data
        for data in item.payload["choices"]
    ]
    return Emit({**item.payload, "choices": choices}, False)


class RoleOnce:
    """Sends each choice's `role` once. Clients concatenate repeated string fields, so a
    second role (on a stand-in text, or on a chunk that followed a blocked call's held
    first delta) would read "assistantassistant"."""

    def __init__(self) -> None:
        self._sent: set[Any] = set()

    def __call__(self, items: list[GateItem]) -> list[GateItem]:
        result: list[GateItem] = []
        for item in items:
            if isinstance(item, Emit):
                item = self._strip(item)
                if item is None:
                    continue
            result.append(item)
        return result

    def _strip(self, item: Emit) -> Emit | None:
        choices = item.payload.get("choices") if isinstance(item.payload, dict) else None
        changed = []
        for data in choices or ():
            delta = data.get("delta") if isinstance(data, dict) else None
            if not isinstance(delta, dict) or not delta.get("role"):
                changed.append(data)
            elif data.get("index", 0) not in self._sent:
                self._sent.add(data.get("index", 0))
                changed.append(data)
            else:
                changed.append({**data, "delta": {k: v for k, v in delta.items() if k != "role"}})
        if not choices or all(new is old for new, old in zip(changed, choices, strict=True)):
            return item
        if not (any(meaningful(data) for data in changed) or item.payload.get("usage")):
            return None
        return Emit({**item.payload, "choices": changed}, False)
