"""One rule's `pattern` and `detectors` as a single scanner over text.

Besides finding matches (`spans`), a matcher tells a stream how much of the text
that has arrived must still be held back (`hold_from`): from the first place a match
could begin. An anchored check (one whose matches start with fixed text, such as
`sk-`) can only begin at an anchor, or at the start of one cut off by the end of the
text; an unanchored check may begin anywhere in its window.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.policy.detectors import DETECTORS, Detector
from gateway.policy.literals import Prefilter, prefilter

# How far back a stream looks for the start of a match of unbounded length.
DEFAULT_WINDOW = 64
# A bounded pattern longer than this still only gets this much look-back.
MAX_WINDOW = 256

Span = tuple[int, int, bool]  # (start, end, confirmed)


def _width(pattern: re.Pattern[str]) -> tuple[int, int | None]:
    """(min, max) length of a match; max None when unbounded or unknown."""
    try:
        # re._parser is the stdlib's own regex parser; it is the only way to ask a
        # compiled pattern how long its matches can be.
        low, high = re._parser.parse(pattern.pattern, pattern.flags).getwidth()  # type: ignore[attr-defined]
    except Exception:
        return 0, None
    return low, (None if high >= re._constants.MAXREPEAT else high)  # type: ignore[attr-defined]


def window_for(check: Detector) -> int:
    """How many trailing characters a stream must keep in view for `check`.

    Unanchored: the longest match (capped), or 64 for unbounded (prefix-closed)
    patterns. Anchored: long enough for the shortest match to appear after its anchor.
    """
    low, high = _width(check.pattern)
    if check.anchors or high is None:
        return min(max(DEFAULT_WINDOW, low), MAX_WINDOW)
    return min(high, MAX_WINDOW)


def _literal_start(pattern: re.Pattern[str]) -> tuple[str, ...]:
    """The literal text a user pattern starts with, as an anchor; () if it has none."""
    try:
        items = list(re._parser.parse(pattern.pattern, pattern.flags))  # type: ignore[attr-defined]
    except Exception:
        return ()
    literal = re._constants.LITERAL  # type: ignore[attr-defined]
    at = re._constants.AT  # type: ignore[attr-defined]
    prefix = []
    for op, value in items:
        if op is at and not prefix:
            continue
        if op is not literal:
            break
        prefix.append(chr(value))
    return ("".join(prefix).lower(),) if prefix else ()


@dataclass(frozen=True, slots=True)
class TextMatcher:
    """The checks of one rule, with what a stream needs to hold back, worked out once."""

    checks: tuple[Detector, ...]
    # Per check, fixed text every match contains: a text without it is not searched.
    prefilters: tuple[Prefilter | None, ...]
    # All of them as one test, when every check has one: most texts hold no marker at all.
    any_literal: Prefilter | None
    # The look-back of the unanchored checks (0: every check is anchored).
    open_window: int
    anchored_window: int
    # All anchors as one search; the checks each anchor (or partial anchor) starts.
    anchor_search: re.Pattern[str] | None
    by_anchor: dict[str, tuple[Detector, ...]]
    by_prefix: dict[str, tuple[Detector, ...]]
    longest_anchor: int

    @classmethod
    def build(cls, pattern: re.Pattern[str] | None, detectors: list[str]) -> TextMatcher:
        checks = [DETECTORS[name] for name in detectors]
        if pattern is not None:
            checks.insert(0, Detector("pattern", pattern, anchors=_literal_start(pattern)))
        anchored = [check for check in checks if check.anchors]
        by_anchor: dict[str, tuple[Detector, ...]] = {}
        by_prefix: dict[str, tuple[Detector, ...]] = {}
        for check in anchored:
            for anchor in check.anchors:
                by_anchor[anchor] = (*by_anchor.get(anchor, ()), check)
                for size in range(1, len(anchor)):
                    by_prefix[anchor[:size]] = (*by_prefix.get(anchor[:size], ()), check)
        longest_first = sorted(by_anchor, key=len, reverse=True)
        prefilters = tuple(prefilter(check.pattern) for check in checks)
        return cls(
            checks=tuple(checks),
            prefilters=prefilters,
            any_literal=Prefilter.union(prefilters),
            open_window=max((window_for(c) for c in checks if not c.anchors), default=0),
            anchored_window=max((window_for(c) for c in anchored), default=0),
            anchor_search=re.compile("|".join(map(re.escape, longest_first))) if anchored else None,
            by_anchor=by_anchor,
            by_prefix=by_prefix,
            longest_anchor=max(map(len, by_anchor), default=0),
        )

    def hold_from(self, text: str, floor: int) -> int:
        """The first position (at or after `floor`) where a match could still begin."""
        end = len(text)
        earliest = max(floor, end - self.open_window) if self.open_window else end
        if self.anchor_search is None:
            return earliest
        start = max(floor, end - self.anchored_window)
        lowered = text[start:].lower()
        for found in self.anchor_search.finditer(lowered):
            position = start + found.start()
            if position >= earliest:
                break
            if any(check.starts_at(text, position) for check in self.by_anchor[found.group()]):
                return position
        for size in range(min(len(lowered), self.longest_anchor - 1), 0, -1):
            checks = self.by_prefix.get(lowered[-size:])
            if checks and any(check.starts_at(text, end - size) for check in checks):
                return min(earliest, end - size)
        return earliest

    def spans(self, text: str) -> list[Span]:
        """Every match as (start, end, confirmed), sorted, overlaps merged.

        `confirmed` is False for a match that failed its checksum: not a secret as it
        stands, but a stream must still hold it back while more may arrive.
        """
        if self.any_literal is not None and self.any_literal.excludes(text):
            return []
        found: list[Span] = []
        for check, literals in zip(self.checks, self.prefilters, strict=True):
            # Substring tests in C are far cheaper than a regex scan that finds nothing.
            if literals is not None and literals.excludes(text):
                continue
            for match in check.pattern.finditer(text):
                if match.end() == match.start() or not check.starts_at(text, match.start()):
                    continue
                confirmed = check.validate is None or check.validate(match.group())
                found.append((match.start(), match.end(), confirmed))
        return _merge(found)

    def search(self, text: str) -> bool:
        return any(confirmed for _, _, confirmed in self.spans(text))


def _merge(spans: list[Span]) -> list[Span]:
    if len(spans) < 2:
        return spans
    spans.sort()
    merged: list[Span] = []
    for start, end, confirmed in spans:
        if merged and start < merged[-1][1]:
            last_start, last_end, last_confirmed = merged[-1]
            merged[-1] = (last_start, max(last_end, end), last_confirmed or confirmed)
        else:
            merged.append((start, end, confirmed))
    return merged
