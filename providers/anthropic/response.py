"""An Anthropic Message -> an OpenAI `chat.completion`.

The answer reads as OpenAI would have written it: text blocks joined into `content`,
`tool_use` blocks as `tool_calls` (arguments as compact JSON), the stop reason as a
`finish_reason`, and usage in OpenAI's terms. Two additions carry what OpenAI has no
field for:

- `message.reasoning_content`: the thinking text (the de facto field for it), and
  `message.thinking_blocks`: the thinking blocks unchanged, signatures included, so a
  client that sends the assistant message back lets a thinking model go on after a
  tool call (see `providers.anthropic.messages`);
- `usage.cache_creation_input_tokens`: the prompt tokens written to the cache (also in
  `prompt_tokens_details.cache_write_tokens`), which are priced apart.

With `legacy_functions` (the request used `functions`), the single call is answered as
`message.function_call` with finish reason `function_call`, as OpenAI does.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from providers.legacy_functions import legacy_finish_reason, legacy_message
from providers.shapes import answer_guard

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
THINKING_BLOCK_TYPES = frozenset({"thinking", "redacted_thinking"})


def finish_reason(stop_reason: str | None, *, legacy_functions: bool = False) -> str:
    """OpenAI's `finish_reason` for an Anthropic `stop_reason` (unknown ones read as `stop`)."""
    reason = FINISH_REASONS.get(stop_reason or "", "stop")
    return legacy_finish_reason(reason) if legacy_functions else reason


def usage_to_chat(usage: dict[str, Any]) -> dict[str, Any]:
    """OpenAI usage for Anthropic usage.

    Anthropic counts cache reads and cache writes apart from `input_tokens`; OpenAI's
    `prompt_tokens` is all of them, with the reads as `cached_tokens` and the writes as
    `cache_write_tokens` (OpenAI's own field). The writes are also kept as the extra key
    `cache_creation_input_tokens`, Anthropic's name, for pricing code that reads it.
    """
    cache_read = usage.get("cache_read_input_tokens") or 0
    cache_write = usage.get("cache_creation_input_tokens") or 0
    prompt = (usage.get("input_tokens") or 0) + cache_read + cache_write
    completion = usage.get("output_tokens") or 0
    chat: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cache_read, "cache_write_tokens": cache_write},
        "cache_creation_input_tokens": cache_write,
    }
    details = usage.get("output_tokens_details") or {}
    if details.get("thinking_tokens") is not None:
        chat["completion_tokens_details"] = {"reasoning_tokens": details["thinking_tokens"]}
    return chat


def completion_id_for(message_id: str | None) -> str:
    return f"chatcmpl-{message_id or 'anthropic'}"


def tool_arguments(tool_input: Any) -> str:
    """Tool input as the compact JSON string OpenAI sends as `arguments`."""
    return orjson.dumps(tool_input if tool_input is not None else {}).decode()


@answer_guard("anthropic")
def anthropic_to_chat(message: dict[str, Any], model: str, *, created: int | None = None,
                      completion_id: str | None = None, legacy_functions: bool = False) -> dict[str, Any]:
    """The `chat.completion` for an Anthropic Message (the JSON of a non-streamed answer)."""
    blocks = message.get("content") or []
    text = "".join(block["text"] for block in blocks if block.get("type") == "text")
    calls = [block for block in blocks if block.get("type") == "tool_use"]
    thinking = [block for block in blocks if block.get("type") in THINKING_BLOCK_TYPES]
    reply: dict[str, Any] = {"role": "assistant", "content": text or (None if calls else ""),
                             "refusal": None}
    if calls:
        reply["tool_calls"] = [
            {"id": call["id"], "type": "function",
             "function": {"name": call["name"], "arguments": tool_arguments(call.get("input"))}}
            for call in calls
        ]
    if thinking:
        reply["reasoning_content"] = "".join(block.get("thinking", "") for block in thinking)
        reply["thinking_blocks"] = thinking
    if legacy_functions:
        reply = legacy_message(reply)
    return {
        "id": completion_id or completion_id_for(message.get("id")),
        "object": "chat.completion",
        "created": int(time.time()) if created is None else created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": reply,
            "finish_reason": finish_reason(message.get("stop_reason"), legacy_functions=legacy_functions),
            "logprobs": None,
        }],
        "usage": usage_to_chat(message.get("usage") or {}),
    }
