"""Gemini `streamGenerateContent?alt=sse` events -> OpenAI `chat.completion.chunk`s.

Every Gemini event is a whole `GenerateContentResponse` carrying the next few parts.
Text and thought parts are relayed as they arrive, one chunk per part; a function call
arrives whole, so it becomes one complete `tool_calls` delta (id, name and arguments)
with a stable `index` 0, 1, ... per choice. A candidate's `finishReason` becomes a chunk
with `finish_reason` (one that means the answer broke off raises `UpstreamError`, as in
whole answers); the usage of the last event that had any becomes the final usage
chunk (`"choices": []`) that `finish()` returns. With `legacy_functions` the first call
of a choice streams as one `function_call` delta and later ones are dropped, as in whole
answers.
"""

from __future__ import annotations

import time
from typing import Any

from providers.gemini.response import (
    completion_id_for,
    finish_reason,
    part_kind,
    raise_if_blocked,
    raise_if_broken,
    usage_to_chat,
)
from providers.gemini.toolcalls import tool_call_from_part
from providers.legacy_functions import legacy_delta
from providers.shapes import answer_guard

_DELTA_FIELD = {"text": "content", "reasoning": "reasoning_content"}


class GeminiStreamTranslator:
    def __init__(self, model: str, *, created: int | None = None, completion_id: str | None = None,
                 legacy_functions: bool = False) -> None:
        self.model = model
        self._legacy = legacy_functions
        self.created = int(time.time()) if created is None else created
        self.completion_id = completion_id
        self._calls: dict[int, int] = {}
        """Per choice index: the tool calls sent so far (the next call's `index`)."""
        self._finished: set[int] = set()
        self._usage: dict[str, Any] | None = None
        self._prompt_reported = False
        self._output_reported = False

    @property
    def usage(self) -> dict[str, Any] | None:
        """Chat-shaped usage of the last event that reported any."""
        return self._usage

    @property
    def reported_usage(self) -> dict[str, Any] | None:
        """`usage` for a stream that stops before its end. Gemini's counts are cumulative, so
        the last report is the usage so far; `completion_tokens` is None when that report
        counted only the prompt (no candidates or thoughts yet). None while no report
        counted the prompt (0 prompt tokens would under-bill; an estimate will not)."""
        if self._usage is None or not self._prompt_reported:
            return None
        if self._output_reported:
            return self._usage
        return {**self._usage, "completion_tokens": None}

    @property
    def finished(self) -> bool:
        """Whether every choice seen so far has a finish reason (False: the stream was cut)."""
        return bool(self._calls) and self._finished == set(self._calls)

    @answer_guard("gemini")
    def feed(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        """One event's payload -> zero or more chunks. Raises `UpstreamError` on a blocked prompt."""
        raise_if_blocked(data)
        if self.completion_id is None:
            self.completion_id = completion_id_for(data)
        if data.get("usageMetadata"):
            metadata = data["usageMetadata"]
            self._usage = usage_to_chat(metadata)
            self._prompt_reported = "promptTokenCount" in metadata
            self._output_reported = "candidatesTokenCount" in metadata or "thoughtsTokenCount" in metadata
        chunks: list[dict[str, Any]] = []
        for position, candidate in enumerate(data.get("candidates") or ()):
            chunks.extend(self._candidate(candidate.get("index", position), candidate))
        return chunks

    def finish(self) -> list[dict[str, Any]]:
        """The chunks after the last event: the usage chunk, when Gemini reported usage."""
        if self._usage is None:
            return []
        return [self._envelope([], usage=self._usage)]

    def _candidate(self, index: int, candidate: dict[str, Any]) -> list[dict[str, Any]]:
        chunks = []
        if index not in self._calls:
            self._calls[index] = 0
            chunks.append(self._chunk(index, {"role": "assistant", "content": ""}))
        for part in (candidate.get("content") or {}).get("parts") or ():
            kind = part_kind(part)
            if kind == "call":
                chunks.extend(self._call(index, part))
            elif kind is not None:
                chunks.append(self._chunk(index, {_DELTA_FIELD[kind]: part["text"]}))
        reason = candidate.get("finishReason")
        # Nothing of this event goes out then. If earlier events reached the client the relay
        # ends its stream with an error event; if not, the router retries or fails over.
        raise_if_broken(reason)
        if reason and index not in self._finished:
            self._finished.add(index)
            chunks.append(self._chunk(index, {}, finish_reason(reason, self._calls[index] > 0,
                                                               legacy_functions=self._legacy)))
        return chunks

    def _call(self, index: int, part: dict[str, Any]) -> list[dict[str, Any]]:
        call = tool_call_from_part(part, self.completion_id or "", index, self._calls[index])
        delta: dict[str, Any] | None = {"tool_calls": [{"index": self._calls[index], **call}]}
        self._calls[index] += 1
        if self._legacy:
            delta = legacy_delta(delta)
        return [self._chunk(index, delta)] if delta is not None else []

    def _chunk(self, index: int, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return self._envelope([{"index": index, "delta": delta, "finish_reason": finish, "logprobs": None}])

    def _envelope(self, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {
            "id": self.completion_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
            **extra,
        }
