"""Tool call ids that carry Gemini's thought signatures through OpenAI clients.

Gemini attaches an opaque `thoughtSignature` to function call parts (on parallel calls,
only to the first one) and Gemini 3 answers 400 when the next request does not send it
back on the same part. OpenAI clients keep nothing of a tool call but its `id`, `name`
and `arguments` (the Agents SDK included), so the signature rides inside the id:

    <call id> + "__gts_" + <signature in URL-safe base64, without padding>

The call id is Gemini's `functionCall.id` when it sent one, else a stable id derived
from the completion id. The URL-safe alphabet keeps the whole id within
`[A-Za-z0-9_-]`, which every provider accepts as a tool call id; a canonical (standard,
padded) base64 signature comes back out byte for byte. A call without a signature keeps
a plain id. Other adapters that forward such ids elsewhere can shorten them with
`split_tool_call_id`.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

SIGNATURE_SEPARATOR = "__gts_"
SKIP_SIGNATURE = "skip_thought_signature_validator"
"""Google's documented stand-in for calls Gemini did not make (another model's, hand-built)."""


def join_tool_call_id(call_id: str, signature: str | None) -> str:
    if not signature:
        return call_id
    urlsafe = signature.rstrip("=").replace("+", "-").replace("/", "_")
    return f"{call_id}{SIGNATURE_SEPARATOR}{urlsafe}"


def split_tool_call_id(tool_call_id: str) -> tuple[str, str | None]:
    """(the Gemini call id, the thought signature as Gemini sent it, or None)."""
    call_id, found, urlsafe = tool_call_id.partition(SIGNATURE_SEPARATOR)
    if not found or not urlsafe:
        return tool_call_id, None
    standard = urlsafe.replace("-", "+").replace("_", "/")
    return call_id, standard + "=" * (-len(standard) % 4)


def stable_call_id(completion_id: str, choice_index: int, call_index: int) -> str:
    """The id of a call Gemini sent without one: the same in streamed and whole answers."""
    digest = hashlib.sha256(f"{completion_id}:{choice_index}:{call_index}".encode()).hexdigest()
    return f"call_{digest[:24]}"


def tool_call_from_part(part: dict[str, Any], completion_id: str, choice_index: int,
                        call_index: int) -> dict[str, Any]:
    """A Gemini `functionCall` part as an OpenAI tool call (arguments as compact JSON)."""
    call = part["functionCall"]
    call_id = call.get("id") or stable_call_id(completion_id, choice_index, call_index)
    return {
        "id": join_tool_call_id(call_id, part.get("thoughtSignature")),
        "type": "function",
        "function": {
            "name": call.get("name", ""),
            "arguments": orjson.dumps(call.get("args") or {}).decode(),
        },
    }
