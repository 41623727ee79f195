"""Gemini `GenerateContentResponse` -> OpenAI `chat.completion`.

Each candidate becomes a choice: text parts are concatenated into `content`, thought
summaries into `reasoning_content`, and function calls become `tool_calls` whose ids
carry the thought signature (see `providers.gemini.toolcalls`). Signatures Gemini puts
on text parts are dropped: Gemini validates only those on function calls. With
`legacy_functions` (the request declared `functions`, not `tools`) the first call is
answered as `message.function_call` with finish reason `function_call`, as OpenAI does
(`providers.legacy_functions`). A finish reason that means the answer broke off
(MALFORMED_FUNCTION_CALL, UNEXPECTED_TOOL_CALL, ...) raises a retryable `UpstreamError`
instead of becoming an empty answer. The helpers below are shared with the stream translator,
so both answers agree to the token.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from providers.base import UpstreamError
from providers.gemini.toolcalls import tool_call_from_part
from providers.legacy_functions import legacy_finish_reason, legacy_message
from providers.shapes import answer_guard

PartKind = Literal["text", "reasoning", "call"]

_FILTERED = frozenset({
    "SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION", "MODEL_ARMOR",
})
_BROKEN = {
    "MALFORMED_FUNCTION_CALL": "the model generated a function call that cannot be parsed",
    "UNEXPECTED_TOOL_CALL": "the model called a function that was not declared or not allowed",
    "TOO_MANY_TOOL_CALLS": "the model made too many tool calls before a final answer",
    "MALFORMED_RESPONSE": "the model's response was malformed",
}
"""Finish reasons of an answer that broke off: what came back is no answer (often nothing at all)."""


@answer_guard("gemini")
def gemini_to_chat(response: dict[str, Any], model: str, *, created: int | None = None,
                   completion_id: str | None = None, legacy_functions: bool = False) -> dict[str, Any]:
    raise_if_blocked(response)
    candidates = response.get("candidates") or []
    if not candidates:
        raise UpstreamError("Gemini answered without any candidate", kind="malformed", retryable=True)
    for candidate in candidates:
        raise_if_broken(candidate.get("finishReason"), response.get("usageMetadata"))
    completion_id = completion_id or completion_id_for(response)
    completion: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()) if created is None else created,
        "model": model,
        "choices": [_choice(candidate, position, completion_id, legacy_functions)
                    for position, candidate in enumerate(candidates)],
    }
    if response.get("usageMetadata"):
        completion["usage"] = usage_to_chat(response["usageMetadata"])
    return completion


def usage_to_chat(usage_metadata: dict[str, Any]) -> dict[str, Any]:
    """Gemini's token counts in OpenAI's terms (reasoning counts as completion, as OpenAI does)."""
    prompt = usage_metadata.get("promptTokenCount", 0) + usage_metadata.get("toolUsePromptTokenCount", 0)
    thoughts = usage_metadata.get("thoughtsTokenCount", 0)
    completion = usage_metadata.get("candidatesTokenCount", 0) + thoughts
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": usage_metadata.get("totalTokenCount", prompt + completion),
        "prompt_tokens_details": {"cached_tokens": usage_metadata.get("cachedContentTokenCount", 0)},
        "completion_tokens_details": {"reasoning_tokens": thoughts},
    }


def raise_if_blocked(response: dict[str, Any]) -> None:
    """A prompt Gemini refused to answer at all: a client error, not worth a retry."""
    feedback = response.get("promptFeedback") or {}
    reason = feedback.get("blockReason")
    if not reason or response.get("candidates"):
        return
    message = f"Gemini blocked the prompt (blockReason {reason})"
    if feedback.get("blockReasonMessage"):
        message += f": {feedback['blockReasonMessage'].rstrip('.')}"
    raise UpstreamError(
        f"{message}. Change the request's content; retrying it unchanged will not help.",
        status=400, kind="safety", retryable=False,
        error_type="invalid_request_error", error_code="content_filter",
    )


def raise_if_broken(gemini_reason: str | None, usage_metadata: Any = None) -> None:
    """A finish reason that means the answer broke off is a failed attempt, never an answer.

    Read as a plain stop it would hand the client a successful, empty answer. The same
    request usually succeeds when sent again (the model samples anew), so it is retryable:
    the router retries it or fails over. Gemini bills it all the same: its usage goes with
    the error, to be metered.
    """
    why = _BROKEN.get(gemini_reason or "")
    if why is not None:
        reported = {"usage": usage_to_chat(usage_metadata)} if isinstance(usage_metadata, dict) else None
        raise UpstreamError(f"Gemini ended the answer with finishReason {gemini_reason}: {why}",
                            kind="malformed", retryable=True, event=reported)


def completion_id_for(response: dict[str, Any]) -> str:
    response_id = response.get("responseId")
    return f"chatcmpl-{response_id}" if response_id else f"chatcmpl-{uuid.uuid4().hex}"


def finish_reason(gemini_reason: str | None, made_calls: bool, *, legacy_functions: bool = False) -> str:
    if gemini_reason in _FILTERED:
        return "content_filter"
    if gemini_reason == "MAX_TOKENS":
        return "length"
    if not made_calls:
        return "stop"
    return legacy_finish_reason("tool_calls") if legacy_functions else "tool_calls"


def part_kind(part: dict[str, Any]) -> PartKind | None:
    """What a part becomes in a chat answer; None for parts with nothing to show."""
    if "functionCall" in part:
        return "call"
    if not part.get("text"):
        return None
    return "reasoning" if part.get("thought") else "text"


def _choice(candidate: dict[str, Any], position: int, completion_id: str,
            legacy_functions: bool) -> dict[str, Any]:
    index = candidate.get("index", position)
    texts: dict[str, list[str]] = {"text": [], "reasoning": []}
    tool_calls: list[dict[str, Any]] = []
    for part in (candidate.get("content") or {}).get("parts") or ():
        kind = part_kind(part)
        if kind == "call":
            tool_calls.append(tool_call_from_part(part, completion_id, index, len(tool_calls)))
        elif kind is not None:
            texts[kind].append(part["text"])
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts["text"]) if texts["text"] else None,
        "refusal": None,
    }
    if texts["reasoning"]:
        message["reasoning_content"] = "".join(texts["reasoning"])
    if tool_calls:
        message["tool_calls"] = tool_calls
    if legacy_functions:
        message = legacy_message(message)
    return {
        "index": index,
        "message": message,
        "finish_reason": finish_reason(candidate.get("finishReason"), bool(tool_calls),
                                       legacy_functions=legacy_functions),
        "logprobs": None,
    }
