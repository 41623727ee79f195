"""`match: judge` cases: what the judge model is asked, and how its reply becomes a verdict.

The judge (any alias, `--judge`) gets the rubric, the question, the optional reference
answer and the answer to grade, and must reply with a JSON object `{"score": <0..1>,
"reason": "..."}` (a ``` fence or text around the object is tolerated). A score of at
least `CORRECT_FROM` is correct, at least `PARTIAL_FROM` partial, anything lower
incorrect. A reply without a usable score is a judge failure, not a grade. Pure.
"""

from __future__ import annotations

import json
import re
from typing import Any

from gateway.eval.dataset import Case
from gateway.eval.scoring import CORRECT, INCORRECT, PARTIAL, Score, parse_json_answer

CORRECT_FROM = 0.8
PARTIAL_FROM = 0.4

_INSTRUCTIONS = (
    "You are grading an AI assistant's answer against a rubric. Judge only what the rubric asks. "
    'Reply with a single JSON object and nothing else: {"score": <a number from 0 to 1>, '
    '"reason": "<one sentence>"}. 1 means the answer fully meets the rubric, 0 means not at all.'
)
_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


class JudgeReplyError(ValueError):
    """The judge's reply carries no usable score."""


def judge_messages(case: Case, answer: str) -> list[dict[str, str]]:
    """The chat messages sent to the judge for one answer."""
    parts = [f"Rubric:\n{case.rubric}", f"Question:\n{question_text(case)}"]
    if case.expected:
        parts.append(f"Reference answer:\n{case.expected}")
    parts.append(f"Answer to grade:\n{answer or '(empty answer)'}")
    return [{"role": "system", "content": _INSTRUCTIONS}, {"role": "user", "content": "\n\n".join(parts)}]


def question_text(case: Case) -> str:
    """The last user message of the case, as text."""
    for message in reversed(case.messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
            return str(content or "")
    return ""


def read_grade(reply: str) -> tuple[float, str]:
    """(score, reason) from the judge's reply; JudgeReplyError says what was wrong with it."""
    document: Any
    try:
        document = parse_json_answer(reply)
    except ValueError:
        found = _OBJECT.search(reply)
        try:
            document = json.loads(found.group(0)) if found else None
        except json.JSONDecodeError:
            document = None
    if not isinstance(document, dict):
        raise JudgeReplyError(f"the judge did not reply with a JSON object: {reply[:120]!r}")
    value = document.get("score")
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise JudgeReplyError(f"the judge's 'score' must be a number from 0 to 1, got {value!r}")
    reason = document.get("reason")
    return float(value), reason if isinstance(reason, str) else ""


def verdict_for(judge_score: float, reason: str = "") -> Score:
    """Correct from `CORRECT_FROM`, partial from `PARTIAL_FROM`, else incorrect."""
    verdict = CORRECT if judge_score >= CORRECT_FROM else PARTIAL if judge_score >= PARTIAL_FROM else INCORRECT
    detail = f"judge score {judge_score:g}" + (f": {reason}" if reason else "")
    return Score(verdict, " ".join(detail.split())[:160], judge_score=judge_score)
