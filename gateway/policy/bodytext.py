"""Where the text of a request lives, for conditions and input guardrails.

Chat Completions: each message's `content` (a string or a list of parts, of which the
`text` parts count). Responses: `instructions`, and `input` (a string or a list of
items: messages with string or part content, and tool outputs). `map_texts` visits
every one of those texts and copies only what it changes, so the caller's body (kept
for approval binding and metering) is never modified.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_TEXT_PARTS = frozenset({"text", "input_text", "output_text"})
_TOOL_OUTPUT_ITEMS = frozenset({"function_call_output", "custom_tool_call_output"})

TextFn = Callable[[str], str]


def _map_content(content: Any, fn: TextFn) -> Any:
    """`content` (a string or a list of parts) with fn applied to its texts; same object
    when nothing changed."""
    if isinstance(content, str):
        return fn(content)
    if not isinstance(content, list):
        return content
    changed = False
    parts = []
    for part in content:
        if isinstance(part, dict) and part.get("type") in _TEXT_PARTS and isinstance(part.get("text"), str):
            text = fn(part["text"])
            if text != part["text"]:
                part, changed = {**part, "text": text}, True
        parts.append(part)
    return parts if changed else content


def _map_items(items: Any, fn: TextFn, key_of: Callable[[dict], str | None]) -> Any:
    if not isinstance(items, list):
        return items
    changed = False
    result = []
    for item in items:
        key = key_of(item) if isinstance(item, dict) else None
        if key is not None and key in item:
            value = _map_content(item[key], fn)
            if value is not item[key]:
                item, changed = {**item, key: value}, True
        result.append(item)
    return result if changed else items


def _chat_key(message: dict) -> str | None:
    return "content"


def _responses_key(item: dict) -> str | None:
    if item.get("type") in _TOOL_OUTPUT_ITEMS:
        return "output"
    if item.get("type", "message") == "message":
        return "content"
    return None


def map_texts(body: dict, api: str, fn: TextFn) -> dict | None:
    """A copy of `body` with `fn` applied to every text in it, or None if none changed."""
    changes: dict[str, Any] = {}
    if api == "responses":
        for field in ("instructions", "input"):
            if field not in body:
                continue
            value = body[field]
            mapped = (fn(value) if isinstance(value, str)
                      else _map_items(value, fn, _responses_key))
            if mapped is not value and mapped != value:
                changes[field] = mapped
    else:
        mapped = _map_items(body.get("messages"), fn, _chat_key)
        if mapped is not body.get("messages"):
            changes["messages"] = mapped
    return {**body, **changes} if changes else None


def content_text(content: Any) -> str:
    """A message content as one string (text parts joined by newlines)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            part["text"] for part in content
            if isinstance(part, dict) and part.get("type") in _TEXT_PARTS and isinstance(part.get("text"), str)
        )
    return ""


def conversation(body: dict, api: str) -> list[dict[str, str]]:
    """The request's messages as [{role, content}] with content as text."""
    if api == "responses":
        messages = []
        if isinstance(body.get("instructions"), str):
            messages.append({"role": "system", "content": body["instructions"]})
        items = body.get("input")
        if isinstance(items, str):
            return [*messages, {"role": "user", "content": items}]
        for item in items if isinstance(items, list) else ():
            if not isinstance(item, dict):
                continue
            key = _responses_key(item)
            if key == "output":
                messages.append({"role": "tool", "content": content_text(item.get("output"))})
            elif key == "content":
                messages.append({"role": str(item.get("role", "user")),
                                 "content": content_text(item.get("content"))})
        return messages
    return [
        {"role": str(message.get("role", "")), "content": content_text(message.get("content"))}
        for message in body.get("messages") or ()
        if isinstance(message, dict)
    ]


def last_user_text(messages: list[dict[str, str]]) -> str:
    for message in reversed(messages):
        if message["role"] == "user":
            return message["content"]
    return ""
