"""The `Usage` record, and reading it from every OpenAI-shaped answer the gateway relays.

Every provider answer reaches the meter in an OpenAI shape (translators map Anthropic and
Gemini usage first, see docs/metering.md), so three readers cover it all: Chat Completions,
Responses and Embeddings. Stream trackers watch the chunks or events of a stream as they are
relayed, keep the usage report wherever it turns up, and count the text seen so a stream cut
before its report can still be billed as an estimate.

Usage reports come from upstream servers of every quality, so the readers never raise:
a missing, null, negative, boolean or non-numeric count reads as 0, and a report whose
parts exceed its whole (cached > prompt, reasoning > completion) is repaired by raising the
whole, because dropping reported tokens would under-bill.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.tokens import tokens_for_bytes, utf8_len


@dataclass(slots=True)
class Usage:
    """Tokens of one upstream call. The subsets are included in their totals, never added to them."""

    input_tokens: int = 0
    """ALL prompt tokens: uncached, cache reads and cache writes."""
    output_tokens: int = 0
    """All completion tokens, reasoning included."""
    cached_tokens: int = 0
    """Prompt tokens read from a cache (subset of input_tokens)."""
    cache_write_tokens: int = 0
    """Prompt tokens written to a cache (subset of input_tokens)."""
    reasoning_tokens: int = 0
    """Hidden reasoning/thinking tokens (subset of output_tokens)."""
    estimated: bool = False
    """True when no upstream report was seen and the counts are the gateway's estimate."""

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cached_tokens=self.cached_tokens + other.cached_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
            estimated=self.estimated or other.estimated,
        )


def usage_from_chat(usage: Any) -> Usage | None:
    """Read a Chat Completions `usage` object; None when it carries no token counts.

    Reads `prompt_tokens`, `completion_tokens`, `prompt_tokens_details.cached_tokens`,
    `prompt_tokens_details.cache_write_tokens`, `completion_tokens_details.reasoning_tokens`,
    and `cache_creation_input_tokens`, which the Anthropic translator adds (its
    `prompt_tokens` already includes cache reads and writes).
    """
    return _read(usage, "prompt_tokens", "completion_tokens", "prompt_tokens_details",
                 "completion_tokens_details")


def usage_from_responses(usage: Any) -> Usage | None:
    """Read a Responses API `usage` object; None when it carries no token counts.

    Reads `input_tokens`, `output_tokens`, `input_tokens_details.cached_tokens`,
    `input_tokens_details.cache_write_tokens` and `output_tokens_details.reasoning_tokens`.
    """
    return _read(usage, "input_tokens", "output_tokens", "input_tokens_details",
                 "output_tokens_details")


def usage_reported_by(payload: Any) -> Usage | None:
    """The usage in what a failed attempt reported (`UpstreamError.event`), whatever its API:
    a Chat answer or chunk, a Responses answer, or a `response.failed` / `.incomplete` event."""
    if not isinstance(payload, Mapping):
        return None
    response = payload.get("response")
    if isinstance(response, Mapping):
        return usage_from_responses(response.get("usage"))
    if payload.get("object") == "response":
        return usage_from_responses(payload.get("usage"))
    return usage_from_chat(payload.get("usage"))


def usage_from_embeddings(usage: Any) -> Usage | None:
    """Read an Embeddings `usage` object (`prompt_tokens`, or `total_tokens` when it is alone)."""
    if not isinstance(usage, Mapping):
        return None
    for key in ("prompt_tokens", "total_tokens"):
        if _is_count(usage.get(key)):
            return Usage(input_tokens=_count(usage.get(key)))
    return None


def _read(usage: Any, input_key: str, output_key: str, input_details_key: str,
          output_details_key: str) -> Usage | None:
    if not isinstance(usage, Mapping):
        return None
    if not (_is_count(usage.get(input_key)) or _is_count(usage.get(output_key))):
        return None
    input_details = _mapping(usage.get(input_details_key))
    output_details = _mapping(usage.get(output_details_key))
    cached = _count(input_details.get("cached_tokens"))
    # OpenAI reports writes in the details, our Anthropic translator at the top level; a
    # server that sent both means the same tokens twice.
    cache_write = max(_count(input_details.get("cache_write_tokens")),
                      _count(usage.get("cache_creation_input_tokens")))
    reasoning = _count(output_details.get("reasoning_tokens"))
    return Usage(
        input_tokens=max(_count(usage.get(input_key)), cached + cache_write),
        output_tokens=max(_count(usage.get(output_key)), reasoning),
        cached_tokens=cached,
        cache_write_tokens=cache_write,
        reasoning_tokens=reasoning,
    )


def _is_count(value: Any) -> bool:
    if type(value) is int:  # nearly every report: skip the checks below (a bool is not an int here)
        return True
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _count(value: Any) -> int:
    if type(value) is int:
        return value if value > 0 else 0
    return max(int(value), 0) if _is_count(value) else 0


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if type(value) is dict or isinstance(value, Mapping) else {}


# --- streams -----------------------------------------------------------------------------------


class _StreamUsage:
    """What the trackers share: the last usage report seen, and the size of the text seen."""

    __slots__ = ("text_bytes", "text_chars", "usage")

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.text_chars = 0
        """Characters of output text, refusals, reasoning text and tool-call names/arguments."""
        self.text_bytes = 0
        """The same text's UTF-8 size, which the token heuristic is calibrated on."""

    def final_usage(self, estimated_input_tokens: int) -> Usage:
        """The reported usage, or an estimate marked `estimated` when no report arrived.

        The estimate's output is the visible text seen; hidden reasoning is not in it, so a
        cut reasoning-model stream is under-estimated.
        """
        if self.usage is not None:
            return self.usage
        return Usage(input_tokens=max(estimated_input_tokens, 0),
                     output_tokens=tokens_for_bytes(self.text_bytes), estimated=True)

    def _see_text(self, text: Any) -> None:
        if isinstance(text, str) and text:
            self.text_chars += len(text)
            self.text_bytes += utf8_len(text)


class ChatStreamUsage(_StreamUsage):
    """Watches `chat.completion.chunk` dicts.

    Usage is taken from whichever chunk carries it: usually a last chunk with `"choices": []`
    (`stream_options.include_usage`), on some servers the finish chunk, and on vLLM with
    continuous usage stats every chunk, cumulatively, so the last report wins.
    """

    __slots__ = ()

    def feed(self, chunk: Any) -> None:
        if not isinstance(chunk, Mapping):
            return
        reported = usage_from_chat(chunk.get("usage"))
        if reported is not None:
            self.usage = reported
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            return
        for choice in choices:
            delta = choice.get("delta") if isinstance(choice, Mapping) else None
            if isinstance(delta, Mapping):
                self._see_delta(delta)

    def _see_delta(self, delta: Mapping[str, Any]) -> None:
        # `reasoning_content` (vLLM, DeepSeek) and `reasoning` (OpenRouter) carry visible
        # reasoning text, billed as output like the answer.
        for key in ("content", "refusal", "reasoning_content", "reasoning"):
            self._see_text(delta.get(key))
        calls = delta.get("tool_calls")
        for call in calls if isinstance(calls, list) else ():
            if isinstance(call, Mapping):
                self._see_function(call.get("function"))
        self._see_function(delta.get("function_call"))

    def _see_function(self, function: Any) -> None:
        if isinstance(function, Mapping):
            self._see_text(function.get("name"))
            self._see_text(function.get("arguments"))


_RESPONSES_TEXT_DELTAS = frozenset({
    "response.output_text.delta",
    "response.refusal.delta",
    "response.function_call_arguments.delta",
    "response.custom_tool_call_input.delta",
    "response.reasoning_text.delta",
    "response.reasoning_summary_text.delta",
})
_RESPONSES_FINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})


class ResponsesStreamUsage(_StreamUsage):
    """Watches Responses API stream events (the parsed `data` of each SSE event).

    Usage comes from the `response` of `response.completed`, `response.incomplete` or
    `response.failed`; text from the output-text, refusal, reasoning and tool-argument deltas.
    """

    __slots__ = ()

    def feed(self, event: Any) -> None:
        if not isinstance(event, Mapping):
            return
        kind = event.get("type")
        if kind in _RESPONSES_TEXT_DELTAS:
            self._see_text(event.get("delta"))
        elif kind in _RESPONSES_FINAL_EVENTS:
            reported = usage_from_responses(_mapping(event.get("response")).get("usage"))
            if reported is not None:
                self.usage = reported
