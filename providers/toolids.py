"""Tool call ids that cross from one provider to another.

The ids of Gemini's tool calls carry its thought signature (see
providers/gemini/toolcalls.py), which makes them hundreds of characters long. When the
conversation goes on at an OpenAI(-compatible) target (a failover, or an alias moved to
another provider), such ids are refused: OpenAI allows 64 characters. Only Gemini needs
the signature, so other targets get the call id without it, the same in the assistant's
tool call and in the tool result that answers it.
"""

from __future__ import annotations

from typing import Any

from providers.base import CHAT, RESPONSES, Api
from providers.gemini.toolcalls import SIGNATURE_SEPARATOR, split_tool_call_id

SIGNATURE_MARK = SIGNATURE_SEPARATOR.encode()
"""Cheap test on the request bytes: no body without it needs walking."""
_RESPONSES_ID_ITEMS = frozenset({"function_call", "function_call_output", "custom_tool_call",
                                 "custom_tool_call_output"})


def _short(value: Any) -> Any:
    return split_tool_call_id(value)[0] if isinstance(value, str) and SIGNATURE_SEPARATOR in value else value


def _with(entry: Any, key: str) -> Any:
    if not isinstance(entry, dict):
        return entry
    short = _short(entry.get(key))
    return entry if short is entry.get(key) else {**entry, key: short}


def without_gemini_signatures(api: Api, body: dict[str, Any]) -> dict[str, Any] | None:
    """`body` with thought signatures cut from its tool call ids, or None if none had one."""
    if api == CHAT and isinstance(body.get("messages"), list):
        messages = [_chat_message(message) for message in body["messages"]]
        changed = any(new is not old for new, old in zip(messages, body["messages"], strict=True))
        return {**body, "messages": messages} if changed else None
    if api == RESPONSES and isinstance(body.get("input"), list):
        items = [_with(item, "call_id") if isinstance(item, dict) and item.get("type") in _RESPONSES_ID_ITEMS
                 else item for item in body["input"]]
        changed = any(new is not old for new, old in zip(items, body["input"], strict=True))
        return {**body, "input": items} if changed else None
    return None


def _chat_message(message: Any) -> Any:
    message = _with(message, "tool_call_id")
    calls = message.get("tool_calls") if isinstance(message, dict) else None
    if not isinstance(calls, list):
        return message
    shortened = [_with(call, "id") for call in calls]
    if all(new is old for new, old in zip(shortened, calls, strict=True)):
        return message
    return {**message, "tool_calls": shortened}
