"""Literal prefilters: a text is skipped only when the regex could not match it.

Checked against `re` itself on generated patterns and texts, with the characters that
`re` folds differently from `str.lower()` (long s, dotless i, Kelvin sign, dotted
capital I) in both.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.policy.conditions import regex
from gateway.policy.literals import prefilter
from gateway.policy.matcher import TextMatcher
from tests.test_policy_support import facts, tenant

ALPHABET = "abkisSKI-_ ſıKİé"
_piece = st.sampled_from([*"abkisSKI-é", "ſ", "ı", "K", "[ab]", "[^a]", "[sk]", ".", r"\b", r"\d", "[ſx]"])


@st.composite
def bodies(draw: st.DrawFn, depth: int = 2) -> str:
    def sequence() -> str:
        parts = []
        for _ in range(draw(st.integers(1, 4))):
            if depth == 0 or draw(st.booleans()):
                parts.append(draw(_piece) + draw(st.sampled_from(["", "", "?", "*", "+", "{2}", "{0,2}"])))
            else:
                # Bounded repeats of a group only: an unbounded repeat of a group that itself
                # repeats (`(a*)*`) backtracks exponentially and would hang the test, not test it.
                parts.append(f"({draw(bodies(depth - 1))})" + draw(st.sampled_from(["", "", "?", "{2}", "{0,2}"])))
        return "".join(parts)

    body = "|".join(sequence() for _ in range(draw(st.integers(1, 3))))
    scoped = draw(st.sampled_from(["", "", "(?i:", "(?-i:", "(?:"]))
    return f"{scoped}{body})" if scoped else body


def _compiles(pattern: str) -> bool:
    try:
        re.compile(pattern)
    except re.error:  # `\\b*`: nothing to repeat
        return False
    return True


patterns = st.builds(str.__add__, st.sampled_from(["", "(?i)"]), bodies()).filter(_compiles)
texts = st.text(alphabet=ALPHABET, max_size=12)


@settings(max_examples=500, deadline=None)
@given(pattern=patterns, text=texts)
def test_regex_with_a_prefilter_finds_what_re_finds(pattern: str, text: str) -> None:
    assert regex(text, pattern) == (re.search(pattern, text) is not None)


@settings(max_examples=300, deadline=None)
@given(pattern=patterns, text=texts)
def test_a_matcher_skips_only_texts_without_a_match(pattern: str, text: str) -> None:
    compiled = re.compile(pattern)
    spans = TextMatcher.build(compiled, []).spans(text)
    expected = sorted((m.start(), m.end()) for m in compiled.finditer(text) if m.end() > m.start())
    assert bool(spans) == bool(expected)


@pytest.mark.parametrize(("pattern", "literals", "folded"), [
    (r"(?i)\b(passwords?|secrets?|tokens?)\b", ("password", "secret", "token"), True),
    (r"(?:AKIA|ASIA)[0-9A-Z]{16}", ("KIA", "SIA"), False),
    (r"gh[pos]_[A-Za-z0-9]{36}", ("ghp_", "gho_", "ghs_"), False),
    (r"(ab)+cd?", ("ab",), False),
    (r"[0-9](?:[ -]?[0-9]){12,18}", None, False),   # no fixed text: every text is searched
    (r"a(?i:b)c", None, False),                     # a scoped case flag: not analysed
    (r"(?i)straße", None, False),                   # folded non-ASCII: re folds beyond lower()
])
def test_what_each_pattern_requires(pattern: str, literals: tuple[str, ...] | None, folded: bool) -> None:
    found = prefilter(re.compile(pattern))
    assert (found and (found.literals, found.folded)) == (literals and (literals, folded))


GUARD = """
policy: team
rules:
  - name: no-secrets
    action: deny
    pattern: '(?i)secret'
"""


@pytest.mark.parametrize("text", ["my SECRET", "my ſecret", "my secret, café"])
def test_a_case_insensitive_guardrail_sees_what_re_sees(tmp_path: Path, text: str) -> None:
    # `re` matches the long s (U+017F) for `s` under (?i); str.lower() does not map it.
    body = {"model": "m", "messages": [{"role": "user", "content": text}]}
    assert tenant(tmp_path, GUARD).evaluate_request(facts(body)).outcome == "deny"
