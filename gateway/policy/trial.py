"""Conditions tried once at load time, on a sample request.

A condition that cannot be evaluated fails closed, so one that fails on every request
(text compared with a number, a result that is not true or false) would deny all
traffic once loaded: it is a load problem instead. Only failures that the data cannot
cause are reported: a wrong type on a variable whose type is fixed, a result that is
not a boolean. Failures that depend on the data (a missing map key, an index out of
range, text that is not a number) are left to run time: the sample cannot know them,
so its maps (`metadata`, `headers`, `tool_call.arguments`) are empty and its other
variables hold typical values of their type, never null.
"""

from __future__ import annotations

from typing import Any

from gateway.policy.conditions import Condition, ConditionError
from gateway.policy.facts import RequestFacts
from gateway.policy.scope import Scope

_SAMPLE = RequestFacts(
    tenant="acme",
    agent="support-bot",
    alias="gpt-4o-mini",
    api="chat",
    body={
        "model": "gpt-4o-mini",
        "messages": [{"role": "system", "content": "You are a helpful assistant."},
                     {"role": "user", "content": "What is the weather in Paris today?"}],
        "tools": [{"type": "function", "function": {"name": "get_weather"}}],
        "metadata": {},
    },
    headers={},
    target_model="gpt-4o-mini",
    provider="openai",
    estimate_tokens=lambda: 1200,
    estimate_cost=lambda: 0.01,
)
# The variables that exist only at one stage (conditions.STAGE_VARIABLES).
_AT_STAGE: dict[str | None, dict[str, Any]] = {
    "tool_call": {"tool_call": {"name": "get_weather", "arguments": {}}},
    "response": {"response_text": "It is sunny in Paris today, 24 degrees."},
}
# What a problem says to do, by how the sample evaluation failed.
_HINTS = {
    "the condition returned": "a condition must give true or false (compare the value with something)",
    "TypeError": "CEL does not convert between types: compare like with like, or convert with "
                 "int(x), double(x), string(x) or size(x)",
}


def trial_problem(condition: Condition, stage: str | None) -> str | None:
    """Why `condition` would fail on every request at `stage` (None: several), or None."""
    try:
        condition.evaluate(Scope(_SAMPLE, **_AT_STAGE.get(stage, {})))
    except ConditionError as exc:
        error = str(exc)
        hint = next((hint for start, hint in _HINTS.items() if error.startswith(start)), None)
        if hint is not None:
            # The runtime's type errors go on for several sentences: the first one says it.
            error = error.split(". ")[0]
            error = error if len(error) <= 160 else error[:157] + "..."
            return (f"the condition fails on a sample request ({error}), so it would fail closed on every "
                    f"request; {hint}")
    return None
