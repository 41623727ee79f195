"""Guardrails on text: the built-in detectors, redaction of a secret split across
chunks at any point, prose that is never held, deny on text, and input redaction."""

from __future__ import annotations

import copy
import itertools
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.policy.detectors import DETECTORS, luhn_valid
from gateway.policy.matcher import ODD_CASE, TextMatcher
from gateway.policy.redact import MAX_HELD
from tests.test_policy_support import facts, tenant

OPENAI = "sk-proj-" + "A1b2C3d4E5f6G7h8I9j0K1l2"
ANTHROPIC = "sk-ant-api03-" + "x" * 30 + "-AbC_9"
AWS = "AKIA" + "IOSFODNN7EXAMPLE"
GITHUB = "ghp_" + "a" * 36
PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEow" + "A" * 64 + "\n-----END RSA PRIVATE KEY-----"

DETECTOR_CASES = [
    ("openai_key", f"key={OPENAI}.", OPENAI),
    ("openai_key", "sk-" + "a" * 19, None),                 # too short
    ("openai_key", "task-" + "a" * 30, None),              # not at a word boundary
    ("anthropic_key", f"use {ANTHROPIC} now", ANTHROPIC),
    ("aws_key", f"id {AWS} ok", AWS),
    ("aws_key", "AKIA1234", None),
    ("aws_key", "xAKIAIOSFODNN7EXAMPLE", None),            # inside a word
    ("github_token", f"token {GITHUB}", GITHUB),
    ("github_token", "github_pat_" + "B" * 30, "github_pat_" + "B" * 30),
    ("github_token", "ghp_short", None),
    ("private_key", f"here:\n{PEM}\nbye", PEM),
    ("credit_card", "card 4111 1111 1111 1111 exp", "4111 1111 1111 1111"),
    ("credit_card", "card 5500-0000-0000-0004.", "5500-0000-0000-0004"),
    ("credit_card", "amex 378282246310005", "378282246310005"),
    ("credit_card", "card 4111 1111 1111 1112", None),    # fails the Luhn check
    ("credit_card", "order 20240101123456", None),
]


@pytest.mark.parametrize(("detector", "text", "secret"), DETECTOR_CASES)
def test_detectors(detector: str, text: str, secret: str | None) -> None:
    matcher = TextMatcher.build(None, [detector])
    found = [text[start:end] for start, end, confirmed in matcher.spans(text) if confirmed]
    assert found == ([secret] if secret else [])


def test_luhn() -> None:
    assert luhn_valid("4111111111111111") and luhn_valid("4012-8888-8888-1881")
    assert not luhn_valid("4111111111111112") and not luhn_valid("1234")


RESPONSE_REDACT = """
policy: default
rules:
  - name: no-keys-out
    stage: response
    action: redact
    detectors: [openai_key, anthropic_key, aws_key, github_token, private_key, credit_card]
"""
SECRETS = [OPENAI, ANTHROPIC, AWS, GITHUB, PEM, "4111 1111 1111 1111"]


def _filter(tmp_path: Path, policy: str = RESPONSE_REDACT):
    text_filter = tenant(tmp_path, policy, names=()).response_text_filter(facts())
    assert text_filter is not None
    return text_filter


@pytest.mark.parametrize("secret", SECRETS)
def test_a_secret_split_anywhere_is_still_redacted(tmp_path: Path, secret: str) -> None:
    text = f"Here it is: {secret} - keep it safe."
    whole = _filter(tmp_path).whole(text)
    assert secret not in whole and whole.count("[REDACTED]") == 1
    for cut in range(1, len(text)):
        text_filter = _filter(tmp_path)
        pieces = [text_filter.feed(text[:cut]), text_filter.feed(text[cut:]), text_filter.flush()]
        assert "".join(pieces) == whole, cut


USER_PATTERN = """
policy: default
rules:
  - name: no-secrets
    stage: response
    action: redact
    pattern: '(?i)secret-[0-9]+'
"""


@pytest.mark.parametrize(("policy", "text", "secret"), [
    # "İ".lower() is two characters: positions in a lower-cased text are off by one per İ.
    # (No credit_card: its window would hold everything anyway.)
    (RESPONSE_REDACT.replace(", credit_card", ""), f"İstanbul key: {OPENAI} ok", OPENAI[3:]),
    (RESPONSE_REDACT.replace(", credit_card", ""), f"İİİİİİİİİİ {GITHUB} ok", GITHUB[3:]),
    # `re` matches the long s for "s" ignoring case, lower() does not.
    (USER_PATTERN, "my ſECRET-123456 ok", "123456"),
])
def test_a_secret_after_letters_with_odd_case_is_still_held(tmp_path: Path, policy: str, text: str,
                                                           secret: str) -> None:
    whole = _filter(tmp_path, policy).whole(text)
    assert secret not in whole
    for cut in range(1, len(text)):
        text_filter = _filter(tmp_path, policy)
        first = text_filter.feed(text[:cut])
        rest = text_filter.feed(text[cut:]) + text_filter.flush()
        assert first + rest == whole, cut


def test_the_odd_case_letters_are_all_known() -> None:
    """A text without them may be searched lower-cased: lower() keeps its length and
    folds its case onto ASCII exactly as `re` does ignoring case."""
    ascii_like = re.compile(r"[\x00-\x7f]", re.IGNORECASE)
    odd = [char for char in map(chr, range(0x80, 0x110000)) if not "\ud800" <= char <= "\udfff"
           and (ascii_like.fullmatch(char) or len(char.lower()) != 1 or char.lower().isascii())]
    assert odd == [char for char in odd if ODD_CASE.fullmatch(char)] == list(ODD_CASE.pattern[1:-1])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(min_value=1, max_value=400), max_size=25))
def test_any_chunking_gives_the_whole_text_result(tmp_path: Path, cuts: list[int]) -> None:
    text = " and ".join(f"item {i}: {secret}" for i, secret in enumerate(SECRETS)) + ". Done sk-"
    expected = _filter(tmp_path).whole(text)
    text_filter = _filter(tmp_path)
    bounds = [0, *sorted({c for c in cuts if c < len(text)}), len(text)]
    out = [text_filter.feed(text[a:b]) for a, b in itertools.pairwise(bounds)]
    assert "".join(out) + text_filter.flush() == expected
    assert not any(secret in "".join(out) for secret in SECRETS)


def test_prose_is_not_held_back(tmp_path: Path) -> None:
    policy = RESPONSE_REDACT.replace(", credit_card", "")
    text_filter = _filter(tmp_path, policy)
    for piece in ["The weather ", "in Paris is ", "mild today; ", "take a jacket."]:
        assert text_filter.feed(piece) == piece
    assert text_filter.feed("Ask me: s") == "Ask me: "   # 's' may begin 'sk-'
    assert text_filter.feed("ure thing") == "sure thing"


def test_an_unanchored_detector_holds_at_most_its_window(tmp_path: Path) -> None:
    text_filter = _filter(tmp_path)   # credit_card has no fixed start: the window applies
    text = "x" * 200
    out = text_filter.feed(text)
    assert text.startswith(out) and 0 < len(text) - len(out) <= 64
    assert out + text_filter.flush() == text


def test_deny_on_text_stops_the_text(tmp_path: Path) -> None:
    policy = """
    policy: default
    rules:
      - name: no-cards
        stage: response
        action: deny
        detectors: [credit_card]
    """
    text_filter = _filter(tmp_path, policy)
    pieces = ["As you asked me to repeat it, your card number is 4111 1111 ", "1111 1111, ok? ",
              "Anything else I can help you with today, my friend? Just ask.", " More text."]
    out = "".join(text_filter.feed(piece) for piece in pieces) + text_filter.flush()
    # text before the card may pass; nothing from the card on ever does
    assert out and "As you asked me to repeat it, your card number is ".startswith(out)
    assert text_filter.failure is not None and text_filter.failure.rule == "no-cards"


def test_a_match_that_never_ends_fails_closed(tmp_path: Path) -> None:
    text_filter = _filter(tmp_path, RESPONSE_REDACT.replace(", credit_card", ""))
    text_filter.feed("sk-")
    for _ in range(MAX_HELD // 1000 + 2):
        assert text_filter.feed("a" * 1000) == ""
    assert text_filter.failure is not None and "kept growing" in (text_filter.failure.error or "")


def _rules(*rules: tuple[str, str, bool]) -> str:
    """A response-stage policy of redact rules: (name, detector, shadow) each."""
    return "policy: default\nrules:\n" + "".join(
        f"  - {{name: {name}, stage: response, action: redact, detectors: [{detector}], "
        f"shadow: {str(shadow).lower()}}}\n" for name, detector, shadow in rules)


LONG_PEM = "-----BEGIN RSA PRIVATE KEY-----\n" + ("A" * 64 + "\n") * 300   # no END: it keeps growing


def _feed_in_pieces(text_filter, text: str, size: int = 1000) -> str:
    out = [text_filter.feed(text[at:at + size]) for at in range(0, len(text), size)]
    return "".join(out) + text_filter.flush()


def test_a_shadow_match_that_never_ends_changes_nothing(tmp_path: Path) -> None:
    text_filter = _filter(tmp_path, _rules(("watch-keys", "private_key", True)))
    text = LONG_PEM + "\nbye"
    assert _feed_in_pieces(text_filter, text) == text and text_filter.failure is None
    assert [(d.rule, d.action, d.shadow, bool(d.error)) for d in text_filter.decisions] == [
        ("watch-keys", "deny", True, True), ("watch-keys", "redact", True, False)]


def test_a_match_that_never_ends_fails_under_its_own_rule(tmp_path: Path) -> None:
    # A shadow rule first, with a match of its own: the failure is the PEM rule's.
    text_filter = _filter(tmp_path, _rules(("watch-openai", "openai_key", True), ("no-pem", "private_key", False)))
    _feed_in_pieces(text_filter, f"{OPENAI} {LONG_PEM}")
    assert text_filter.failure is not None and text_filter.failure.rule == "no-pem"
    # A real rule first, with a match of its own: a shadow rule's growing match fails nothing.
    text_filter = _filter(tmp_path, _rules(("no-openai", "openai_key", False), ("watch-pem", "private_key", True)))
    text = f"{OPENAI} {LONG_PEM}"
    assert _feed_in_pieces(text_filter, text) == text.replace(OPENAI, "[REDACTED]")
    assert text_filter.failure is None


def test_conditions_on_the_whole_response_run_at_close(tmp_path: Path) -> None:
    policy = """
    policy: default
    rules:
      - name: too-long
        stage: response
        action: deny
        when: 'response_text.size() > 10'
      - name: mentions-refund
        stage: response
        action: tag
        tags: [refund]
        when: 'response_text.contains("refund")'
    """
    text_filter = _filter(tmp_path, policy)
    assert text_filter.feed("a refund") == "a refund"
    assert text_filter.flush() == "" and text_filter.failure is None
    text_filter.close()
    assert text_filter.failure is None and [d.rule for d in text_filter.decisions] == ["mentions-refund"]
    text_filter = _filter(tmp_path, policy)
    text_filter.feed("a much longer answer")
    text_filter.close()
    assert text_filter.failure is not None and text_filter.failure.rule == "too-long"


INPUT_REDACT = """
policy: team
rules:
  - name: cards-in
    action: redact
    detectors: [credit_card]
    replacement: "[CARD]"
  - name: keys-in
    action: deny
    detectors: [openai_key]
"""


def test_input_redaction_copies_the_body(tmp_path: Path) -> None:
    body = {"model": "m", "messages": [
        {"role": "system", "content": "card on file 4111 1111 1111 1111"},
        {"role": "user", "content": [{"type": "text", "text": "pay with 5500-0000-0000-0004"},
                                     {"type": "image_url", "image_url": {"url": "https://x"}}]},
        {"role": "tool", "tool_call_id": "c", "content": "nothing here"},
    ]}
    original = copy.deepcopy(body)
    verdict = tenant(tmp_path, INPUT_REDACT).evaluate_request(facts(body))
    assert body == original and verdict.outcome == "allow" and verdict.body is not None
    assert verdict.body["messages"][0]["content"] == "card on file [CARD]"
    assert verdict.body["messages"][1]["content"][0]["text"] == "pay with [CARD]"
    assert verdict.body["messages"][1]["content"][1] is body["messages"][1]["content"][1]
    assert verdict.body["messages"][2] is body["messages"][2]
    assert [d.rule for d in verdict.decisions] == ["cards-in"]


def test_input_redaction_in_responses_requests(tmp_path: Path) -> None:
    body = {"model": "m", "instructions": "card 4111 1111 1111 1111", "input": [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "4111-1111-1111-1111"}]},
        {"type": "function_call_output", "call_id": "c", "output": "card 378282246310005"},
    ]}
    verdict = tenant(tmp_path, INPUT_REDACT).evaluate_request(facts(body))
    assert verdict.body is not None
    assert verdict.body["instructions"] == "card [CARD]"
    assert verdict.body["input"][0]["content"][0]["text"] == "[CARD]"
    assert verdict.body["input"][1]["output"] == "card [CARD]"


def test_a_secret_anywhere_in_the_input_can_deny(tmp_path: Path) -> None:
    body = {"model": "m", "messages": [{"role": "tool", "tool_call_id": "c", "content": f"env: {OPENAI}"},
                                       {"role": "user", "content": "summarize"}]}
    verdict = tenant(tmp_path, INPUT_REDACT).evaluate_request(facts(body))
    assert verdict.outcome == "deny" and verdict.error_code == "blocked_by_policy"
    assert verdict.deciding is not None and verdict.deciding.rule == "keys-in"


def test_every_detector_is_documented() -> None:
    docs = (Path(__file__).parent.parent / "docs" / "policies.md").read_text()
    for name in DETECTORS:
        assert f"`{name}`" in docs
