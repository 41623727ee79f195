"""How many output tokens an upstream may produce, and bill, for a request.

Budgets and token rate limits reserve this before the call, so it must be what is sent
upstream, not only what the client asked for: an adapter that raises the limit (Anthropic
adds the thinking budget of `reasoning_effort` to `max_tokens`) says so through its
`output_allowance` (every provider has one: `providers.base.Provider`).
"""

from __future__ import annotations

from typing import Any

CAP_FIELDS = ("max_completion_tokens", "max_tokens", "max_output_tokens")


def requested_output_cap(body: dict[str, Any]) -> int | None:
    """The client's own output limit (Chat or Responses field), or None when it sets none."""
    for field in CAP_FIELDS:
        value = body.get(field)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def requested_output(body: dict[str, Any]) -> int | None:
    """The most output the client asked to be billed for: its output limit for each of the
    `n` choices it asks for (OpenAI-compatible servers and Gemini's `candidateCount` generate
    every one); None when it sets no limit."""
    cap = requested_output_cap(body)
    if cap is None:
        return None
    n = body.get("n")
    return cap * n if isinstance(n, int) and not isinstance(n, bool) and n > 1 else cap
