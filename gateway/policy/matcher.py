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


# The only characters that `re` folds onto an ASCII one, or that lower() turns into
# ASCII or into two characters (a test checks every character).
ODD_CASE = re.compile("[\u0130\u0131\u017f\u212a]")


@dataclass(frozen=True, slots=True)
class _Anchors:
    """Lower-cased texts a match may start with (anchors, or their beginnings), and
    the checks each one starts.

    lower() may lengthen a text ("İ" -> "i̇"), moving every position after it, and `re`
    folds a few letters onto ASCII ones that lower() leaves alone (the long s matches
    "s"). So a text is matched lower-cased, which is fastest, only when it holds none
    of those (and the keys are ASCII); otherwise as it is, case-insensitively: `re`
    folds case one character for one, so a match's positions are positions in the text.
    """

    checks: dict[str, tuple[Detector, ...]]
    keys: tuple[str, ...]  # longest first
    search: re.Pattern[str]  # any key, in a lower-cased text
    folded: re.Pattern[str]  # any key, in any text, case-insensitively
    grouped: re.Pattern[str]  # the same, with group i + 1 for keys[i]: which one matched
    ascii: bool

    @classmethod
    def of(cls, checks: dict[str, tuple[Detector, ...]]) -> _Anchors | None:
        if not checks:
            return None
        keys = tuple(sorted(checks, key=len, reverse=True))
        alternatives = "|".join(map(re.escape, keys))
        grouped = "|".join(f"({re.escape(key)})" for key in keys)
        return cls(checks, keys, re.compile(alternatives), re.compile(alternatives, re.IGNORECASE),
                   re.compile(grouped, re.IGNORECASE), all(key.isascii() for key in keys))

    def lowered(self, text: str) -> str | None:
        """`text` lower-cased, when that keeps its length and matches the keys as `re`
        would ignoring case; else None (search it as it is)."""
        if self.ascii and (text.isascii() or not ODD_CASE.search(text)):
            return text.lower()
        return None

    def which(self, text: str) -> tuple[Detector, ...]:
        """The checks of the key that `text` is, case-insensitively; () if it is none."""
        found = self.grouped.fullmatch(text)
        return self.checks[self.keys[found.lastindex - 1]] if found and found.lastindex else ()


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
    # The anchors of the anchored checks, and their beginnings (for an anchor cut off
    # by the end of the text).
    anchors: _Anchors | None
    partial_anchors: _Anchors | None

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
        prefilters = tuple(prefilter(check.pattern) for check in checks)
        return cls(
            checks=tuple(checks),
            prefilters=prefilters,
            any_literal=Prefilter.union(prefilters),
            open_window=max((window_for(c) for c in checks if not c.anchors), default=0),
            anchored_window=max((window_for(c) for c in anchored), default=0),
            anchors=_Anchors.of(by_anchor),
            partial_anchors=_Anchors.of(by_prefix),
        )

    def hold_from(self, text: str, floor: int) -> int:
        """The first position (at or after `floor`) where a match could still begin."""
        end = len(text)
        earliest = max(floor, end - self.open_window) if self.open_window else end
        if self.anchors is None:
            return earliest
        start = max(floor, end - self.anchored_window)
        window = text[start:]
        # Searched lower-cased when that is exact, else as it is (see _Anchors). This is
        # the hot path of a redacted stream: no helper generators, one lower() per call.
        lowered = self.anchors.lowered(window)
        search = self.anchors.folded if lowered is None else self.anchors.search
        for found in search.finditer(window if lowered is None else lowered):
            position = start + found.start()
            if position >= earliest:
                break
            checks = self.anchors.which(found.group()) if lowered is None else self.anchors.checks[found.group()]
            if any(check.starts_at(text, position) for check in checks):
                return position
        partial = self.partial_anchors
        if partial is None:
            return earliest
        # An anchor cut off by the end of the text: the longest partial one that may start a match.
        for offset in range(max(0, len(window) - len(partial.keys[0])), len(window)):
            checks = partial.which(window[offset:]) if lowered is None else partial.checks.get(lowered[offset:], ())
            if checks and any(check.starts_at(text, start + offset) for check in checks):
                return min(earliest, start + offset)
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
