"""Literal prefilters: fixed text that every match of a regular expression contains.

Looking for a few fixed strings (`in`, done in C) costs a fraction of a regex search
that finds nothing, and finding nothing is the common case: most texts hold no
password, no key. `prefilter(pattern)` works out, from the standard library's own
parse of the pattern, strings of which every match contains at least one; a text
that holds none of them cannot match, and the regex need not run.

Case-insensitive patterns: `re` folds more than `str.lower()` does (the long s U+017F
matches `s`, the dotless i U+0131 matches `i`, the Kelvin sign matches `k`), so the
folded test is exact only for an ASCII text and ASCII literals; any other text goes
to the regex.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# re._parser / re._constants are the stdlib's regex parser, the only way to read the
# structure of a compiled pattern.
_c = re._constants  # type: ignore[attr-defined]
_REPEATS = (_c.MAX_REPEAT, _c.MIN_REPEAT, _c.POSSESSIVE_REPEAT)
# A class of literals multiplies the strings of a run; beyond this many, the run ends.
_MAX_STRINGS = 16


class _Unknown(Exception):
    """Part of the pattern cannot be analysed (a scoped case flag)."""


@dataclass(frozen=True, slots=True)
class Prefilter:
    """Strings of which every match contains one (lower-cased when `folded`)."""

    literals: tuple[str, ...]
    folded: bool

    def excludes(self, text: str) -> bool:
        """True when `text` cannot contain a match (False means: run the regex)."""
        if self.folded:
            if not text.isascii():
                return False
            text = text.lower()
        return not any(map(text.__contains__, self.literals))  # the loop stays in C

    @staticmethod
    def union(prefilters: tuple[Prefilter | None, ...]) -> Prefilter | None:
        """One prefilter that excludes a text only when each of `prefilters` does."""
        present = [each for each in prefilters if each is not None]
        folded = {each.folded for each in present}
        if not present or len(present) != len(prefilters) or len(folded) != 1:
            return None
        return Prefilter(tuple(dict.fromkeys(text for each in present for text in each.literals)), folded.pop())


def prefilter(pattern: re.Pattern[str]) -> Prefilter | None:
    """The pattern's prefilter, or None when some match may contain no fixed text."""
    try:
        parsed = re._parser.parse(pattern.pattern, pattern.flags)  # type: ignore[attr-defined]
        folded = bool(parsed.state.flags & re.IGNORECASE)
        literals = _required(list(parsed), folded)
    except (_Unknown, re.error, RecursionError):
        return None
    if literals is None:
        return None
    return Prefilter(tuple(literal.lower() for literal in literals) if folded else literals, folded)


def _required(items: list[tuple[Any, Any]], folded: bool) -> tuple[str, ...] | None:
    """Strings of which every match of the sequence `items` contains one; None if unknown.

    Each run of literal characters is required (a small class such as `[pos]` inside a
    run makes one string per character), and so is whatever a group, a branch (one of
    each alternative's) or a repeat of at least once requires; of those, the most
    selective is kept (its shortest string the longest).
    """
    candidates: list[tuple[str, ...]] = []
    run: tuple[str, ...] = ()
    for op, argument in items:
        characters = _characters(op, argument)
        if characters and len(run or ("",)) * len(characters) <= _MAX_STRINGS:
            run = tuple(prefix + character for prefix in run or ("",) for character in characters)
            continue
        if run:
            candidates.append(run)
            run = ()
        inner = _required_of(op, argument, folded)
        if inner is not None:
            candidates.append(inner)
    if run:
        candidates.append(run)
    usable = [c for c in candidates if all(c) and (not folded or all(s.isascii() for s in c))]
    return max(usable, key=lambda c: (min(map(len, c)), -len(c)), default=None)


def _characters(op: Any, argument: Any) -> tuple[str, ...]:
    """The characters a literal or a class of literals (`[pos]`) matches; () otherwise."""
    if op is _c.LITERAL:
        return (chr(argument),)
    if op is _c.IN and all(item_op is _c.LITERAL for item_op, _ in argument):
        return tuple(chr(code) for _, code in argument)
    return ()


def _required_of(op: Any, argument: Any, folded: bool) -> tuple[str, ...] | None:
    if op is _c.SUBPATTERN:
        _group, add_flags, del_flags, items = argument
        if (add_flags | del_flags) & re.IGNORECASE:
            raise _Unknown("a scoped case flag")
        return _required(list(items), folded)
    if op is _c.ATOMIC_GROUP:
        return _required(list(argument), folded)
    if op in _REPEATS:
        low, _high, items = argument
        return _required(list(items), folded) if low >= 1 else None
    if op is _c.BRANCH:
        alternatives = [_required(list(items), folded) for items in argument[1]]
        if any(alternative is None for alternative in alternatives):
            return None
        return tuple(dict.fromkeys(text for alternative in alternatives for text in alternative))
    return None
