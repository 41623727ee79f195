"""An Anthropic Messages event stream -> OpenAI `chat.completion.chunk`s.

`AnthropicStreamTranslator.feed` takes one event at a time (its `event:` name and its
decoded `data:`) and returns the chunks OpenAI would have streamed at that point, so
text is relayed as it arrives and nothing is buffered:

    message_start                    -> {"role": "assistant", "content": ""}
    text_delta                       -> {"content": ...}
    thinking_delta                   -> {"reasoning_content": ...}
    tool_use block start             -> {"tool_calls": [{index, id, type, function: {name, arguments: ""}}]}
    input_json_delta                 -> {"tool_calls": [{index, function: {arguments: fragment}}]}
    message_delta with stop_reason   -> {} with finish_reason
    message_stop                     -> a usage chunk: "choices": [], "usage": {...}
    error                            -> raises UpstreamError

Tool calls are numbered 0, 1, ... in the order their blocks start, whatever the
Anthropic block index (text and thinking blocks take indexes too). A tool block that
streamed no input gets arguments "{}", as the non-streamed answer has. A finished
thinking block is also sent whole as `{"thinking_blocks": [{"index": n, ...}]}` (see
`response`); the `index` lets OpenAI's stream accumulator collect the blocks in order.
Unknown event and block types are skipped: Anthropic adds new ones within a version.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from providers.anthropic.errors import stream_error
from providers.anthropic.response import completion_id_for, finish_reason, tool_arguments, usage_to_chat
from providers.legacy_functions import legacy_delta
from providers.shapes import answer_guard

Chunk = dict[str, Any]


@dataclass(slots=True)
class _Block:
    kind: str
    tool_index: int = -1
    sent_arguments: bool = False
    thinking: str = ""
    signature: str = ""


class AnthropicStreamTranslator:
    """Translates one Anthropic stream; make one per response."""

    def __init__(self, model: str, *, created: int | None = None, completion_id: str | None = None,
                 legacy_functions: bool = False) -> None:
        self._model = model
        self._created = int(time.time()) if created is None else created
        self._id = completion_id
        self._legacy = legacy_functions
        self._blocks: dict[int, _Block] = {}
        self._tool_count = 0
        self._thinking_count = 0
        self._usage: dict[str, Any] | None = None
        self._output_reported = False
        """Whether a `message_delta` counted the output: `message_start`'s `output_tokens` is a
        placeholder (1, or 0), not the answer's size."""
        self._handlers: dict[str, Callable[[dict[str, Any]], list[Chunk]]] = {
            "message_start": self._message_start,
            "content_block_start": self._block_start,
            "content_block_delta": self._block_delta,
            "content_block_stop": self._block_stop,
            "message_delta": self._message_delta,
            "message_stop": self._message_stop,
        }

    @property
    def usage(self) -> dict[str, Any] | None:
        """Chat-shaped usage so far: input counts from `message_start`, output updated by
        `message_delta` (None before `message_start`)."""
        return usage_to_chat(self._usage) if self._usage is not None else None

    @property
    def reported_usage(self) -> dict[str, Any] | None:
        """`usage` for a stream that stops before `message_stop`: the same prompt counts, but
        `completion_tokens` is None until a `message_delta` reported the output. None while
        no input count arrived (a prompt of 0 tokens would under-bill; an estimate will not)."""
        if self._usage is None or "input_tokens" not in self._usage:
            return None
        usage = usage_to_chat(self._usage)
        if self._output_reported:
            return usage
        return {**usage, "completion_tokens": None, "total_tokens": usage["prompt_tokens"]}

    @answer_guard("anthropic")
    def feed(self, event_type: str, data: dict[str, Any]) -> list[Chunk]:
        if event_type == "error":
            raise stream_error(data)
        handler = self._handlers.get(event_type)
        return handler(data) if handler is not None else []

    def _message_start(self, data: dict[str, Any]) -> list[Chunk]:
        message = data.get("message") or {}
        if self._id is None:
            self._id = completion_id_for(message.get("id"))
        self._usage = dict(message.get("usage") or {})
        return [self._chunk({"role": "assistant", "content": ""})]

    def _block_start(self, data: dict[str, Any]) -> list[Chunk]:
        block = data.get("content_block") or {}
        kind = block.get("type", "")
        state = self._blocks[data.get("index", -1)] = _Block(kind)
        if kind == "text":
            return self._content(block.get("text"))
        if kind == "thinking":
            state.thinking = block.get("thinking") or ""
            return self._reasoning(state.thinking)
        if kind == "redacted_thinking":
            return self._thinking_block(block)
        if kind != "tool_use":
            return []
        state.tool_index = self._tool_count
        self._tool_count += 1
        arguments = ""
        if block.get("input"):
            arguments, state.sent_arguments = tool_arguments(block["input"]), True
        return self._call(state, {"name": block.get("name"), "arguments": arguments}, block.get("id"))

    def _block_delta(self, data: dict[str, Any]) -> list[Chunk]:
        state = self._blocks.get(data.get("index", -1))
        delta = data.get("delta") or {}
        kind = delta.get("type")
        if state is None:
            return []
        if kind == "text_delta":
            return self._content(delta.get("text"))
        if kind == "thinking_delta":
            state.thinking += delta.get("thinking") or ""
            return self._reasoning(delta.get("thinking"))
        if kind == "signature_delta":
            state.signature += delta.get("signature") or ""
            return []
        if kind == "input_json_delta" and state.kind == "tool_use" and delta.get("partial_json"):
            state.sent_arguments = True
            return self._call(state, {"arguments": delta["partial_json"]})
        return []

    def _block_stop(self, data: dict[str, Any]) -> list[Chunk]:
        state = self._blocks.get(data.get("index", -1))
        if state is None:
            return []
        if state.kind == "tool_use" and not state.sent_arguments:
            return self._call(state, {"arguments": "{}"})
        if state.kind == "thinking":
            return self._thinking_block({"type": "thinking", "thinking": state.thinking,
                                         "signature": state.signature})
        return []

    def _message_delta(self, data: dict[str, Any]) -> list[Chunk]:
        usage = data.get("usage") or {}
        # message_delta counts are cumulative: they replace, never add to, message_start's.
        self._usage = {**(self._usage or {}), **{k: v for k, v in usage.items() if v is not None}}
        self._output_reported = self._output_reported or usage.get("output_tokens") is not None
        stop_reason = (data.get("delta") or {}).get("stop_reason")
        if stop_reason is None:
            return []
        return [self._chunk({}, finish_reason(stop_reason, legacy_functions=self._legacy))]

    def _message_stop(self, data: dict[str, Any]) -> list[Chunk]:
        if self._usage is None:
            return []
        return [{**self._envelope(), "choices": [], "usage": usage_to_chat(self._usage)}]

    def _content(self, text: str | None) -> list[Chunk]:
        return [self._chunk({"content": text})] if text else []

    def _reasoning(self, text: str | None) -> list[Chunk]:
        return [self._chunk({"reasoning_content": text})] if text else []

    def _thinking_block(self, block: dict[str, Any]) -> list[Chunk]:
        index, self._thinking_count = self._thinking_count, self._thinking_count + 1
        return [self._chunk({"thinking_blocks": [{"index": index, **block}]})]

    def _call(self, state: _Block, function: dict[str, Any], call_id: str | None = None) -> list[Chunk]:
        call: dict[str, Any] = {"index": state.tool_index}
        if call_id is not None:
            call.update(id=call_id, type="function")
        call["function"] = function
        delta: dict[str, Any] | None = {"tool_calls": [call]}
        if self._legacy:
            # A legacy client reads one call; the request disabled parallel tool use.
            delta = legacy_delta(delta)
        return [self._chunk(delta)] if delta is not None else []

    def _envelope(self) -> Chunk:
        return {"id": self._id or completion_id_for(None), "object": "chat.completion.chunk",
                "created": self._created, "model": self._model}

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> Chunk:
        return {**self._envelope(),
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}
