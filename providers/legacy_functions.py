"""Answers for clients that declared the legacy `functions` instead of `tools`.

Such a client (written for the 2023 API) reads at most one call, as
`message.function_call` (in a stream, `delta.function_call`), with finish reason
`function_call`; it knows nothing of `tool_calls`. OpenAI answers it that way, so the
translating adapters build their answer with tool calls as usual and reshape it here
when the request used `functions`: every provider answers a legacy client alike.
"""

from __future__ import annotations

from typing import Any


def uses_legacy_functions(body: dict[str, Any]) -> bool:
    """Whether the request declared its functions the legacy way."""
    return bool(body.get("functions"))


def legacy_finish_reason(reason: str) -> str:
    return "function_call" if reason == "tool_calls" else reason


def legacy_message(message: dict[str, Any]) -> dict[str, Any]:
    """A whole answer's message with its first tool call as `function_call`.

    Later calls are dropped: the client would read only one (Anthropic is asked for one,
    Gemini cannot be, and its first call is the one a sequential client would make first).
    """
    calls = message.get("tool_calls")
    if not calls:
        return message
    legacy = {key: value for key, value in message.items() if key != "tool_calls"}
    function = calls[0]["function"]
    legacy["function_call"] = {"name": function["name"], "arguments": function["arguments"]}
    return legacy


def legacy_delta(delta: dict[str, Any]) -> dict[str, Any] | None:
    """A stream delta with the first call's part as `function_call`; None when nothing is left
    (the delta was only about a later call, which the client must not see)."""
    calls = delta.get("tool_calls")
    if not calls:
        return delta
    legacy = {key: value for key, value in delta.items() if key != "tool_calls"}
    first = [call for call in calls if call.get("index", 0) == 0]
    if first:
        # Only name and arguments: a legacy call has no id (the name pairs it with its result).
        function = first[0].get("function") or {}
        legacy["function_call"] = {key: function[key] for key in ("name", "arguments") if key in function}
    return legacy or None
