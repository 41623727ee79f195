"""The text filter: guardrail rules (redact, deny, review, tag) applied to flowing text.

One algorithm serves streams and whole texts (a whole text is one `feed` and a
`flush`; `close` ends the response). Each `feed` returns the text that is safe to pass on now and keeps a short
tail back, so that a secret split across two chunks is still caught:

- a match followed by at least `SETTLE_MARGIN` characters is final: redacted (or
  the rule denies, ...);
- a match closer to the end of what has arrived may still grow (`sk-abc` + `def`,
  a PEM block whose END line is arriving), so everything from its start is held;
- otherwise the last `window` characters are held (the longest match a pattern can
  make, capped; 64 for unbounded patterns, which detectors write prefix-closed),
  and of those only the part from where a match could begin (see detectors' anchors).

A match that keeps growing past `MAX_HELD` characters fails closed (the text is
denied): no real secret is that long, and holding more would buffer the stream. A
shadow rule's match is only recorded so, and the text goes on unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from gateway.policy.model import Decision, Rule

MAX_HELD = 16384
# A rule with its matches in the text: (start, stop, confirmed).
Found = tuple[Rule, list[tuple[int, int, bool]]]
# A match is final once this much text follows it: enough for an optional closing part
# (a PEM END line) or a lookahead to have arrived.
SETTLE_MARGIN = 64


class TextFilter:
    """Applies text rules to a text that arrives in pieces."""

    def __init__(
        self,
        rules: Sequence[Rule],
        stage: str,
        decisions: list[Decision] | None = None,
        at_end: Callable[[str], list[Decision]] | None = None,
    ) -> None:
        self.rules = [rule for rule in rules if rule.matcher is not None]
        self.stage = stage
        self.decisions: list[Decision] = []
        self.failure: Decision | None = None
        # Rules whose condition reads the whole text: evaluated by `flush`.
        self._at_end = at_end
        self._seen_text: list[str] = []
        self._carry = ""
        self._recorded: set[tuple[str, str]] = set()
        self.changed = False
        # Set by `close` when rules read the whole text: a gate must not pass text that
        # arrives after it on (it was never part of the text they judged).
        self.judged = False
        for decision in decisions or []:
            self._record(decision)

    @property
    def active(self) -> bool:
        return bool(self.rules) or self._at_end is not None

    def feed(self, text: str) -> str:
        """Text that may go out now (possibly empty); the rest is held for the next call."""
        if self.failure is not None or not text:
            return ""
        if self._at_end is not None:
            self._seen_text.append(text)
        if not self.rules:
            return text
        return self._scan(self._carry + text, final=False)

    def whole(self, text: str) -> str:
        """One complete text (not streamed): scanned once, nothing held back. A text
        that is streaming meanwhile keeps its held tail: a Responses stream may state a
        part whole (in an item or snapshot) while another part's deltas are arriving."""
        if self.failure is not None:
            return ""
        if self._at_end is not None:
            self._seen_text.append(text)
        if not self.rules:
            return text
        carry, self._carry = self._carry, ""
        out = self._scan(text, final=True)
        self._carry = carry
        return "" if self.failure is not None else out

    def flush(self) -> str:
        """Everything still held, at the end of one text (a message, a content part)."""
        if self.failure is not None:
            return ""
        out = self._scan(self._carry, final=True)
        return "" if self.failure is not None else out

    def close(self) -> None:
        """The response is complete: run the rules whose condition reads the whole text.
        Text fed later is still redacted, but no such rule sees it (see `judged`)."""
        self.judged = self.judged or self._at_end is not None
        if self._at_end is not None and self.failure is None:
            for decision in self._at_end("".join(self._seen_text)):
                self._record(decision)
        self._seen_text.clear()
        self._at_end = None

    def _scan(self, buffer: str, *, final: bool) -> str:
        end = len(buffer)
        found = [(rule, rule.matcher.spans(buffer)) for rule in self.rules if rule.matcher]
        settled = end if final else end - SETTLE_MARGIN
        cut = end if final else self._cut(buffer, found, settled)
        if end - cut > MAX_HELD:
            cut = self._overgrown(buffer, found, settled, cut)
            if self.failure is not None:
                return ""
        edits: list[tuple[int, int, str]] = []
        for rule, spans in found:
            for start, stop, confirmed in spans:
                if start >= cut or not confirmed:
                    continue
                if self._apply(rule):
                    edits.append((start, stop, rule.replacement))
                if self.failure is not None:
                    return ""
        self._carry = buffer[cut:]
        if edits:
            self.changed = True
        return _splice(buffer, cut, edits)

    def _cut(self, buffer: str, found: list[Found], settled: int) -> int:
        """Where the held tail starts (see the module docstring)."""
        return _hold_growing(found, settled, self._hold_from(buffer, found, settled))

    def _overgrown(self, buffer: str, found: list[Found], settled: int, cut: int) -> int:
        """The cut once no match holds more than MAX_HELD characters back.

        Nothing real is that long: a match that never stops growing fails closed, under
        the rule whose match it is. A shadow rule must never change the text, so its
        match is recorded as it would have failed, and holds nothing back any more.
        """
        while len(buffer) - cut > MAX_HELD:
            # The cut was moved back to the start of the growing match (see _hold_growing).
            owners = [rule for rule, spans in found if any(start == cut for start, _, _ in spans)]
            owner = next((rule for rule in owners if not rule.shadow), owners[0] if owners else self.rules[0])
            self._record(owner.decision(self.stage, "deny", error=f"a match kept growing past {MAX_HELD} characters"))
            if not owner.shadow:
                break
            found = [(rule, spans) for rule, spans in found if rule not in owners]
            cut = self._cut(buffer, found, settled)
        return cut

    def _hold_from(self, buffer: str, found: list[Found], settled: int) -> int:
        """Where the held tail starts: the window, narrowed to where a match could begin
        after the last match that is already settled."""
        complete = max((stop for _, spans in found for _, stop, _ in spans if stop <= settled), default=0)
        return min((rule.matcher.hold_from(buffer, complete) for rule in self.rules if rule.matcher),
                   default=len(buffer))

    def _apply(self, rule: Rule) -> bool:
        """Record the rule's decision (once); True if the match must be replaced."""
        key = (rule.policy, rule.name)
        if key not in self._recorded:
            self._recorded.add(key)
            self._record(rule.decision(self.stage))
        return rule.action == "redact" and not rule.shadow

    def _record(self, decision: Decision) -> None:
        self.decisions.append(decision)
        if decision.action == "deny" and not decision.shadow and self.failure is None:
            self.failure = decision


def _hold_growing(found: list[Found], settled: int, cut: int) -> int:
    """Move `cut` back so that no match that may still change, or that crosses it, is split."""
    moved = True
    while moved:
        moved = False
        for _, spans in found:
            for start, stop, _ in spans:
                if start < cut and (stop > settled or stop > cut):
                    cut, moved = start, True
    return cut


def _splice(buffer: str, cut: int, edits: list[tuple[int, int, str]]) -> str:
    """buffer[:cut] with each (start, stop) range replaced, overlapping ranges merged."""
    if not edits:
        return buffer[:cut]
    edits.sort()
    parts: list[str] = []
    position = 0
    for start, stop, replacement in edits:
        if stop <= position:
            continue
        if start >= position:
            parts.append(buffer[position:start])
            parts.append(replacement)
        position = max(position, stop)
    parts.append(buffer[position:cut])
    return "".join(parts)


def redact_whole(text: str, rule: Rule) -> str:
    """`text` with every confirmed match of the rule's matcher replaced (no streaming)."""
    spans = rule.matcher.spans(text) if rule.matcher is not None else None
    if not spans:
        return text
    edits = [(start, stop, rule.replacement) for start, stop, ok in spans if ok]
    return _splice(text, len(text), edits)
