"""The Chat Completions stream gate: `chat.completion.chunk` dicts in, `GateItem`s out.

Text deltas go out in the same `feed` call (a response-stage redaction rule may keep
a short tail back). A tool call's own deltas are held only until the rules can judge
it: its name is treated as known once its arguments start (the name comes whole in
one delta: a second piece fails the stream, see `streamcalls`), and when a rule reads
arguments, until they are complete (the next call starts, the choice finishes, or the
stream ends). Calls are judged only
once every delta of a chunk is taken in, because one chunk may carry the end of a call
and the start of the next (in either order). An allowed call is then released as it
came: the same chunk objects when a chunk held nothing else, otherwise one chunk per
held delta; only its `index` changes when an earlier call was removed, because clients
keep tool calls in a list by index. A blocked call never reaches the client: it is
replaced by a text delta naming the rule, or ends the stream (`on_violation: error`).
A call that changes after it was checked, a delta without a valid index, an index
that goes back to a new call, a choice index that is not a plain int, or a call delta
clients could read two ways (a `function` and a `custom` object that disagree, a type
the gate does not know or that changes), and text for a choice that finished once rules
reading its whole text judged it, fail the stream closed.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from gateway.policy.chat_chunks import (
    LEGACY,
    RoleOnce,
    declared_type,
    meaningful,
    plain_index,
    read_call,
    reindexed,
    single_call_chunk,
    synthetic,
    with_index,
)
from gateway.policy.engine import TenantPolicies
from gateway.policy.facts import RequestFacts
from gateway.policy.gating import (
    Emit,
    Fail,
    GateItem,
    Hold,
    blocked_text,
    denial_failure,
    denied_text,
    failure,
    separated,
)
from gateway.policy.model import Decision
from gateway.policy.redact import TextFilter
from gateway.policy.streamcalls import CallChecker, Step, StreamCall

_END = object()


@dataclass(eq=False)
class _Choice:
    index: int
    text: TextFilter | None
    wrote_text: bool = False
    released: int = 0
    blocked: int = 0
    last_call: int = -1
    finished: bool = False
    # upstream tool-call index -> the index the client sees. Clients keep tool calls
    # in a list by index, so the calls after a removed one move up to close the gap.
    client_index: dict[int, int] = field(default_factory=dict)


@dataclass(eq=False)
class _Part:
    """One choice of a chunk, once its tool-call deltas were taken in."""

    choice: _Choice
    data: dict
    delta: dict  # as it came ({} when it is not an object)
    # The delta as it goes on: without the tool-call deltas that were held or dropped.
    kept: dict


@dataclass(eq=False)
class _Fed:
    """A chunk in the backlog. Its deltas are taken in once (`parts`); settling the calls
    it completes may stop at a hold, and then goes on from there after `resolve`."""

    chunk: dict
    parts: list[_Part] | None = None
    # The whole chunk went into a call's held output (it carried nothing else).
    consumed: bool = False


class ChatStreamGate:
    """Gates one streamed chat completion (see the module docstring)."""

    def __init__(self, policies: TenantPolicies, facts: RequestFacts) -> None:
        self._call_decisions: list[Decision] = []
        self._policies = policies
        self._facts = facts
        self._checker = CallChecker(policies, facts, self._call_decisions)
        self._gate_tools = policies.has_tool_rules
        self._filter_text = policies.has_response_rules
        self._choices: dict[int, _Choice] = {}
        self._calls: dict[tuple[int, int | str], StreamCall] = {}
        self._backlog: deque[Any] = deque()
        self._holding: tuple[_Choice, StreamCall] | None = None
        self._failed = False
        # Set by a malformed stream that only shadow rules look at (see `_pass_on`).
        self._passing = False
        self._envelope: dict[str, Any] = {}
        self._roles = RoleOnce()
        # Choices that finished after the rules reading their whole text judged it.
        self._judged: set[int] = set()

    # -- the driver's API ---------------------------------------------------------

    @property
    def decisions(self) -> list[Decision]:
        """Every decision so far: tool calls first, then response text, per choice."""
        text = [d for choice in self._choices.values() if choice.text for d in choice.text.decisions]
        return [*self._call_decisions, *text]

    def feed(self, chunk: dict) -> list[GateItem]:
        if self._failed:
            return []
        self._backlog.append(_Fed(chunk))
        return self._drain()

    def finish(self) -> list[GateItem]:
        """The stream ended: settle held calls (failing closed) and flush held text."""
        if self._failed:
            return []
        self._backlog.append(_END)
        return self._drain()

    def resolve(self, call_key: int | str, approved: bool, reason: str | None = None) -> list[GateItem]:
        if self._holding is None or self._holding[1].key != call_key:
            raise ValueError(f"no tool call {call_key!r} is waiting for approval")
        choice, call = self._holding
        self._holding = None
        out = self._apply(self._checker.resolve(call, approved), choice, call, denied=not approved,
                          reason=reason)
        return self._roles(out) + self._drain()

    # -- processing ---------------------------------------------------------------

    def _drain(self) -> list[GateItem]:
        out: list[GateItem] = []
        while self._backlog and self._holding is None and not self._failed:
            item = self._backlog[0]
            out.extend(self._finish_all() if item is _END else self._chunk(item))
            if self._holding is None:
                self._backlog.popleft()
        if self._failed:
            self._backlog.clear()
        return self._roles(out)

    def _chunk(self, fed: _Fed) -> list[GateItem]:
        chunk = fed.chunk
        choices = chunk.get("choices")
        if not (self._gate_tools or self._filter_text) or not choices:
            return [Emit(chunk, True)]
        out: list[GateItem] = []
        if fed.parts is None:
            # A chunk the gate cannot read is never passed on unjudged: it fails closed.
            if not isinstance(choices, list) or not all(isinstance(data, dict) for data in choices):
                return self._malformed("the chunk's choices are not a list of objects", unreadable=fed)
            # One pass: this runs for every text delta.
            for data in choices:
                delta = data.get("delta", {})
                if not isinstance(delta, dict):
                    return self._malformed("a choice's delta is not an object", unreadable=fed)
                # Which choice its deltas (text included) belong to is unknown, so the
                # chunk is unreadable: clients would put "1.0" in choice 1, the gate could
                # only guess (and once merged it into choice 0).
                if not plain_index(data.get("index")):
                    return self._malformed("a choice has no valid 'index'", unreadable=fed)
                # Clients append it to the answer that was judged without it (a deny on
                # `response_text` would have missed it): it cannot be judged any more.
                if self._judged and delta.get("content") and data["index"] in self._judged:
                    return self._malformed("text after the choice finished", unreadable=fed)
            self._envelope = {key: value for key, value in chunk.items() if key not in ("choices", "usage")}
            # How much each call held before this chunk, should it have to go on as it came.
            held_before = ({key: len(call.held) for key, call in self._calls.items()}
                           if self._policies.tool_rules_shadow else None)
            fed.parts = self._take_in(fed, choices, out)
            if self._passing:
                return self._pass_on(fed, held_before, text=False)
            if self._failed:
                return out
        for part in fed.parts:
            out.extend(self._settle(part.choice, finishing=part.data.get("finish_reason") is not None))
            if self._holding is not None or self._failed:
                return out
        if not fed.consumed:
            out.extend(self._rest(fed.chunk, fed.parts))
        # A call named in this chunk is judged after the chunk's other deltas went out,
        # so the client still sees the calls in the order of their indexes.
        for part in fed.parts:
            out.extend(self._check_named(part.choice))
        return out

    def _take_in(self, fed: _Fed, choices: list[dict], out: list[GateItem]) -> list[_Part]:
        """Route every tool-call delta of the chunk: kept in it, held for its call, or dropped."""
        whole = self._gate_tools and single_call_chunk(fed.chunk)
        parts = []
        for data in choices:
            choice = self._choice(data["index"])
            delta = data.get("delta") if isinstance(data.get("delta"), dict) else {}
            kept = dict(delta)
            if self._gate_tools:
                routed, held = self._tool_deltas(choice, delta, fed.chunk if whole else None, out)
                if self._failed or self._passing:
                    return parts
                fed.consumed = fed.consumed or (whole and held)
                for key in ("tool_calls", LEGACY):
                    if key in routed:
                        kept[key] = routed[key]
                    else:
                        kept.pop(key, None)
            parts.append(_Part(choice, data, delta, kept))
        return parts

    def _settle(self, choice: _Choice, *, finishing: bool) -> list[GateItem]:
        """Judge the choice's calls that are complete: a later call started, or the choice finishes."""
        out: list[GateItem] = []
        for call in self._calls_of(choice):
            if call.settled or not (finishing or 0 <= call.index < choice.last_call):
                continue
            out.extend(self._apply(self._checker.check(call, complete=True), choice, call))
            if self._holding is not None or self._failed:
                break
        return out

    def _check_named(self, choice: _Choice) -> list[GateItem]:
        """Check the choice's open call once its name is complete (its arguments started)."""
        out: list[GateItem] = []
        for call in self._calls_of(choice):
            if self._failed:
                break
            if call.state == "pending" and call.arguments:
                out.extend(self._apply(self._checker.check(call, complete=False), choice, call))
        return out

    def _calls_of(self, choice: _Choice) -> list[StreamCall]:
        return [call for (index, _), call in self._calls.items() if index == choice.index]

    def _rest(self, chunk: dict, parts: list[_Part]) -> list[GateItem]:
        """What goes on of the chunk: text filtered, finish_reason rewritten, tool calls kept."""
        new_choices = []
        changed = False
        for part in parts:
            new_data = self._text(part.choice, part.data, part.kept)
            if self._failed:
                return self._failure(part.choice)
            changed = changed or new_data is not part.data or part.kept != part.delta
            new_choices.append(new_data)
        if not changed:
            return [Emit(chunk, True)]
        rest = {**chunk, "choices": new_choices}
        if any(meaningful(c) for c in new_choices) or chunk.get("usage"):
            return [Emit(rest, False)]
        return []

    def _tool_deltas(self, choice: _Choice, delta: dict, whole: dict | None,
                     out: list[GateItem]) -> tuple[dict[str, Any], bool]:
        """Route this choice's tool-call deltas; returns (what stays in the chunk, held any)."""
        kept: dict[str, Any] = {}
        held = False
        entries = delta.get("tool_calls")
        if entries is not None and not isinstance(entries, list):
            out.extend(self._malformed("'tool_calls' is not a list"))
            return kept, held
        pieces = [(entry, "tool_calls") for entry in entries or ()]
        if delta.get(LEGACY) is not None:
            pieces.append((delta[LEGACY], LEGACY))
        for entry, source in pieces:
            call = self._call_for(choice, entry, source, out)
            if call is None:
                return kept, held
            read = self._fragments(call, entry, source)
            if isinstance(read, str):
                out.extend(self._malformed(read, call))
                return kept, held
            name, arguments = read
            why = self._checker.tampered(call, name, arguments)
            if why is not None:
                out.extend(self._malformed(why, call))
                return kept, held
            if call.state == "released":
                kept.setdefault(source, []).append(with_index(entry, choice.client_index.get(call.index)))
                continue
            if call.state == "blocked":
                continue
            held = True
            call.name_parts.append(name)
            call.argument_parts.append(arguments)
            call.held.append(Emit(whole, True) if whole is not None else self._piece(choice, entry, source))
        if LEGACY in kept:
            kept[LEGACY] = kept[LEGACY][0]
        return kept, held

    @staticmethod
    def _fragments(call: StreamCall, entry: dict, source: str) -> tuple[str, str] | str:
        """(name, arguments) of a call's delta, read as its type says; or why it cannot be
        read one way only. The call's first delta fixes its type (continuation deltas
        name none); clients that switch objects mid-call would assemble something else."""
        declared = declared_type(entry, source)
        if call.kind and declared and declared != call.kind:
            return f"tool call '{call.name}' changed its type from {call.kind} to {declared}"
        read = read_call(entry, source, call.kind)
        if isinstance(read, str):
            return read
        kind, name, arguments = read
        if not call.kind:
            call.kind, call.is_json = kind, kind == "function"
        return name, arguments

    def _call_for(self, choice: _Choice, entry: Any, source: str, out: list[GateItem]) -> StreamCall | None:
        if not isinstance(entry, dict):
            out.extend(self._malformed("a tool call delta is not an object"))
            return None
        if source == LEGACY:
            key: int | str = LEGACY
        else:
            key = entry.get("index")
            if not isinstance(key, int) or isinstance(key, bool) or key < 0:
                out.extend(self._malformed("a tool call delta has no valid 'index'"))
                return None
        call = self._calls.get((choice.index, key))
        if call is None:
            if isinstance(key, int):
                if key <= choice.last_call:
                    out.extend(self._malformed(f"tool call index {key} arrived after index {choice.last_call}"))
                    return None
                choice.last_call = key
            driver_key = key if choice.index == 0 else f"{choice.index}:{key}"
            call = StreamCall(driver_key, index=key if isinstance(key, int) else -1)
            self._calls[(choice.index, key)] = call
        return call

    def _text(self, choice: _Choice, data: dict, delta: dict) -> dict:
        """Pass the choice's text through the response filter; rewrite finish_reason."""
        finish = data.get("finish_reason")
        if delta.get("content"):
            choice.wrote_text = True
        if choice.text is not None:
            content = delta.get("content")
            text = choice.text.feed(content) if isinstance(content, str) else ""
            if finish is not None and not choice.finished:
                choice.finished = True
                text += choice.text.flush()
                choice.text.close()
                if choice.text.judged:
                    self._judged.add(choice.index)
            if choice.text.failure is not None:
                self._failed = True
                return data
            if isinstance(content, str) or text:
                delta["content"] = text
        if finish in ("tool_calls", LEGACY) and choice.blocked and not choice.released:
            finish = "stop"
        if delta == data.get("delta") and finish == data.get("finish_reason"):
            return data
        return {**data, "delta": delta, "finish_reason": finish}

    def _finish_all(self) -> list[GateItem]:
        out: list[GateItem] = []
        for (index, _), call in list(self._calls.items()):
            if not call.settled:
                out.extend(self._apply(self._checker.check(call, complete=True), self._choice(index), call))
                if self._holding is not None or self._failed:
                    return out
        for choice in self._choices.values():
            out.extend(self._end_text(choice))
            if self._failed:
                break
        return out

    def _end_text(self, choice: _Choice) -> list[GateItem]:
        """The text the choice's filter still holds (or its failure), once the text ended."""
        if choice.text is None or choice.finished:
            return []
        choice.finished = True
        rest = choice.text.flush()
        choice.text.close()
        if choice.text.failure is not None:
            return self._failure(choice)
        return [self._text_chunk(choice, rest, filtered=True)] if rest else []

    # -- outcomes -----------------------------------------------------------------

    def _apply(self, step: Step, choice: _Choice, call: StreamCall, *, denied: bool = False,
               reason: str | None = None) -> list[GateItem]:
        if step == "release":
            choice.released += 1
            released, call.held = call.held, []
            # Calls move up to close the gap a removed call left; shadow rules remove none,
            # and must not change the stream.
            if call.index >= 0 and not self._policies.tool_rules_shadow:
                choice.client_index[call.index] = len(choice.client_index)
                client = choice.client_index[call.index]
                released = [reindexed(item, choice.index, call.index, client) for item in released]
            return released
        if step == "hold":
            self._holding = (choice, call)
            assert call.deciding is not None
            return [Hold(call.key, call.name, call.arguments, call.deciding)]
        if step == "block":
            call.held = []
            choice.blocked += 1
            decision = call.deciding
            assert decision is not None
            if decision.on_violation == "error":
                self._failed = True
                return [denial_failure(call.name, decision, reason) if denied else failure(decision)]
            text = denied_text(call.name, decision, reason) if denied else blocked_text(call.name, decision)
            return [self._text_chunk(choice, text)]
        return []

    def _malformed(self, error: str, call: StreamCall | None = None, *,
                   unreadable: _Fed | None = None) -> list[GateItem]:
        """Fail the stream closed: its tool calls cannot be read (or, given `unreadable`,
        that chunk at all, text included). When only shadow rules look at what cannot
        be read, `_passing` is set instead (and an `unreadable` chunk goes on at once)."""
        text = unreadable is not None and self._filter_text
        decision = self._policies.malformed_call(error, call.name if call else None, text=text)
        self._call_decisions.append(decision)
        if decision.shadow:
            self._passing = True
            return self._pass_on(unreadable, None, text=True) if unreadable is not None else []
        self._failed = True
        return [Fail("blocked_by_policy", f"{decision.message} ({error})", decision.rule)]

    def _pass_on(self, fed: _Fed, held_before: dict[tuple[int, int | str], int] | None, *,
                 text: bool) -> list[GateItem]:
        """A malformed stream that only shadow rules look at goes on as it came, as it
        would without them: what the calls held before this chunk (`held_before`, None:
        all), then the chunk. The rest of the stream is no longer gated: its tool calls,
        and with `text` (the chunk could not be read at all, and only shadow rules look
        at the text either), its text."""
        out: list[GateItem] = []
        for key, call in self._calls.items():
            out.extend(call.held if held_before is None else call.held[:held_before.get(key, 0)])
        self._calls.clear()
        self._gate_tools = self._passing = False
        if text and self._filter_text:
            for choice in self._choices.values():
                out.extend(self._end_text(choice))
            self._filter_text = False
        fed.parts, fed.consumed = None, False
        return out + self._chunk(fed)

    def _failure(self, choice: _Choice) -> list[GateItem]:
        assert choice.text is not None and choice.text.failure is not None
        self._failed = True
        return [failure(choice.text.failure)]

    # -- chunk building -----------------------------------------------------------

    def _choice(self, index: int) -> _Choice:
        choice = self._choices.get(index)
        if choice is None:
            text = self._policies.response_text_filter(self._facts) if self._filter_text else None
            choice = self._choices[index] = _Choice(index, text)
        return choice

    def _piece(self, choice: _Choice, entry: dict, source: str) -> Emit:
        delta = {"tool_calls": [entry]} if source == "tool_calls" else {LEGACY: entry}
        return Emit(self._synthetic(choice, delta), False)

    def _text_chunk(self, choice: _Choice, text: str, *, filtered: bool = False) -> Emit:
        if not filtered:
            text = separated(text, choice.wrote_text)
            choice.wrote_text = True
            if choice.text is not None:
                text = choice.text.feed(text)
        # The role goes with the first delta the client sees: `RoleOnce` drops it here
        # if the choice's role already went out.
        return Emit(self._synthetic(choice, {"role": "assistant", "content": text}), False)

    def _synthetic(self, choice: _Choice, delta: dict) -> dict:
        return synthetic(self._envelope, choice.index, delta)
