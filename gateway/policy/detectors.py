"""The built-in secret detectors that guardrail rules name in `detectors:`.

Detector patterns are written *prefix-closed* where they can be (every longer prefix
of a secret is still a match), which is what lets the streaming redactor hold back a
secret that is still arriving instead of letting its tail through.

Most secrets start with a fixed marker (`sk-`, `AKIA`, `ghp_`, `-----BEGIN`): these
*anchors* let the redactor hold text back only where a secret could begin, so plain
prose streams through untouched. A check without anchors (card numbers, a pattern
that does not start with literal text) falls back to holding a fixed window.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from dataclasses import dataclass


def luhn_valid(candidate: str) -> bool:
    """The Luhn checksum used by payment card numbers (separators ignored)."""
    digits = [int(char) for char in candidate if char.isdigit()]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for position, digit in enumerate(reversed(digits)):
        if position % 2 == 1:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


@dataclass(frozen=True, slots=True)
class Detector:
    name: str
    pattern: re.Pattern[str]
    # A second check on a regex match (a checksum); None accepts every match.
    validate: Callable[[str], bool] | None = None
    # Lower-cased texts every match starts with; empty when unknown.
    anchors: tuple[str, ...] = ()
    # Characters that may not come right before a match (`sk-` but not `task-`). Checked
    # in code rather than as a lookbehind, which would keep `re` from searching for
    # the literal start and make every scan several times slower.
    not_after: str = ""

    def starts_at(self, text: str, position: int) -> bool:
        return not (self.not_after and position > 0 and text[position - 1] in self.not_after)


_WORD = string.ascii_letters + string.digits + "_"

DETECTORS: dict[str, Detector] = {
    detector.name: detector
    for detector in (
        Detector("openai_key", re.compile(r"sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}"),
                 anchors=("sk-",), not_after=_WORD),
        Detector("anthropic_key", re.compile(r"sk-ant-[a-z]+\d{2}-[A-Za-z0-9_-]{20,}"),
                 anchors=("sk-ant-",), not_after=_WORD),
        # Access key IDs; a secret access key has no marker of its own to find it by.
        Detector("aws_key", re.compile(r"(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}(?![0-9A-Za-z])"),
                 anchors=("akia", "asia", "abia", "acca"), not_after=_WORD),
        Detector(
            "github_token",
            re.compile(r"(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})"),
            anchors=("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"), not_after=_WORD,
        ),
        Detector(
            "private_key",
            re.compile(
                r"-----BEGIN[A-Z ]{0,40} PRIVATE KEY(?: BLOCK)?-----(?:[A-Za-z0-9+/=\s:,.]|-(?!----END))*"
                r"(?:-----END[A-Z ]{0,40} PRIVATE KEY(?: BLOCK)?-----)?"
            ),
            anchors=("-----begin",),
        ),
        Detector("credit_card", re.compile(r"[0-9](?:[ -]?[0-9]){12,18}(?![0-9])"), luhn_valid,
                 not_after=string.digits + "-"),
    )
}
