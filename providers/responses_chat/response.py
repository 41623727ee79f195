"""A Chat Completions answer, rewritten as a Responses API `response` object.

The output lists what the model produced in the order OpenAI uses: a reasoning item (when
the chat message carries `reasoning_content`), the assistant message (text and refusal
parts), then one `function_call` item per tool call. The envelope echoes the request's
settings with the defaults OpenAI reports when they were omitted, so clients that read
them back (the Agents SDK does) see what they would see from OpenAI.

The builders here (items, usage, envelope, ids) are shared with the stream translation,
so a streamed answer ends in exactly the object a non-streamed one returns.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

IdFactory = Callable[[str], str]
"""Makes a new id from a prefix such as "resp", "msg", "fc" or "rs"."""

INCOMPLETE_REASONS = {"length": "max_output_tokens", "content_filter": "content_filter"}
"""Chat finish reasons that leave a Responses answer `incomplete`, with the reason reported."""


def random_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(24)}"


def counting_ids() -> IdFactory:
    """Deterministic ids (`msg_1`, `msg_2`, `fc_1`, ...) for golden tests."""
    counts: dict[str, int] = {}

    def new_id(prefix: str) -> str:
        counts[prefix] = counts.get(prefix, 0) + 1
        return f"{prefix}_{counts[prefix]}"

    return new_id


def chat_to_responses_response(
    completion: dict[str, Any],
    request: dict[str, Any],
    response_id: str | None = None,
    *,
    created_at: int | None = None,
    new_id: IdFactory = random_id,
) -> dict[str, Any]:
    """Translate a `chat.completion` into the `response` answering the Responses `request`.

    `created_at` defaults to the completion's `created`; ids come from `new_id`.
    """
    choices = completion.get("choices") or [{}]
    message = choices[0].get("message") or {}
    status, reason = terminal_status(choices[0].get("finish_reason"))

    output: list[dict[str, Any]] = []
    if message.get("reasoning_content"):
        reasoning = [reasoning_text_part(message["reasoning_content"])]
        output.append(reasoning_item(new_id("rs"), reasoning, "completed"))
    parts = _content_parts(message)
    if parts:
        output.append(message_item(new_id("msg"), parts, "completed"))
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        output.append(function_call_item(
            new_id("fc"), call.get("id") or new_id("call"), function.get("name") or "",
            function.get("arguments") or "", "completed",
        ))
    if status == "incomplete" and output:
        output[-1]["status"] = "incomplete"

    return response_object(
        request,
        response_id=response_id or new_id("resp"),
        created_at=created_at_of(created_at, completion),
        model=completion.get("model") or request.get("model") or "",
        status=status,
        output=output,
        usage=responses_usage(completion.get("usage")),
        incomplete_reason=reason,
    )


def _content_parts(message: dict[str, Any]) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    content = chat_text(message.get("content"))
    if content:
        parts.append(output_text_part(content))
    if message.get("refusal"):
        parts.append(refusal_part(message["refusal"]))
    return parts


def chat_text(content: Any) -> str:
    """The text of a chat `content`: a string, or (from some servers) a list of text parts."""
    if isinstance(content, list):
        return "".join(part.get("text") or "" for part in content if isinstance(part, dict))
    return content if isinstance(content, str) else ""


def created_at_of(explicit: int | None, chat_object: dict[str, Any]) -> int:
    """The creation time to report: the caller's, else the chat object's `created`, else now."""
    if explicit is not None:
        return explicit
    created = chat_object.get("created")
    return int(created) if isinstance(created, int | float) else int(time.time())


# --- shared builders ----------------------------------------------------------------


def terminal_status(finish_reason: str | None) -> tuple[str, str | None]:
    """The response status for a chat finish reason, and the incomplete reason if any."""
    reason = INCOMPLETE_REASONS.get(finish_reason or "")
    return ("incomplete", reason) if reason else ("completed", None)


def output_text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def refusal_part(refusal: str) -> dict[str, Any]:
    return {"type": "refusal", "refusal": refusal}


def reasoning_text_part(text: str) -> dict[str, Any]:
    return {"type": "reasoning_text", "text": text}


def message_item(item_id: str, content: list[dict[str, Any]], status: str) -> dict[str, Any]:
    return {"id": item_id, "type": "message", "status": status, "content": content, "role": "assistant"}


def function_call_item(item_id: str, call_id: str, name: str, arguments: str, status: str
                       ) -> dict[str, Any]:
    return {"id": item_id, "type": "function_call", "status": status, "arguments": arguments,
            "call_id": call_id, "name": name}


def reasoning_item(item_id: str, content: list[dict[str, Any]], status: str) -> dict[str, Any]:
    return {"id": item_id, "type": "reasoning", "status": status, "summary": [], "content": content}


def responses_usage(usage: dict[str, Any] | None) -> dict[str, Any] | None:
    """Chat `usage` in Responses terms (prompt -> input, completion -> output)."""
    if not usage:
        return None
    input_tokens = usage.get("prompt_tokens") or 0
    output_tokens = usage.get("completion_tokens") or 0
    prompt_details = usage.get("prompt_tokens_details") or {}
    completion_details = usage.get("completion_tokens_details") or {}
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {
            "cached_tokens": prompt_details.get("cached_tokens") or 0,
            "cache_write_tokens": prompt_details.get("cache_write_tokens") or 0,
        },
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": completion_details.get("reasoning_tokens") or 0},
        "total_tokens": usage.get("total_tokens") or input_tokens + output_tokens,
    }


def response_object(
    request: dict[str, Any],
    *,
    response_id: str,
    created_at: int,
    model: str,
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None,
    incomplete_reason: str | None = None,
) -> dict[str, Any]:
    """The `response` envelope, echoing the request's settings with OpenAI's defaults."""
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": {"reason": incomplete_reason} if incomplete_reason else None,
        "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"),
        "max_tool_calls": request.get("max_tool_calls"),
        "model": model,
        "output": output,
        "parallel_tool_calls": _given(request, "parallel_tool_calls", True),
        "previous_response_id": None,
        "prompt_cache_key": request.get("prompt_cache_key"),
        "reasoning": {"effort": None, "summary": None, **_present(request.get("reasoning"))},
        "safety_identifier": request.get("safety_identifier"),
        "service_tier": "default",
        # Nothing is kept: the response cannot be fetched or chained later.
        "store": False,
        "temperature": _given(request, "temperature", 1.0),
        "text": {"format": {"type": "text"}, "verbosity": "medium", **_present(request.get("text"))},
        "tool_choice": _given(request, "tool_choice", "auto"),
        "tools": [_echo_tool(tool) for tool in request.get("tools") or []],
        "top_logprobs": _given(request, "top_logprobs", 0),
        "top_p": _given(request, "top_p", 1.0),
        "truncation": _given(request, "truncation", "disabled"),
        "usage": usage,
        "user": request.get("user"),
        "metadata": _given(request, "metadata", {}),
    }


def _given(request: dict[str, Any], key: str, default: Any) -> Any:
    value = request.get(key)
    return default if value is None else value


def _present(settings: Any) -> dict[str, Any]:
    if not isinstance(settings, dict):
        return {}
    return {key: value for key, value in settings.items() if value is not None}


def _echo_tool(tool: dict[str, Any]) -> dict[str, Any]:
    if tool.get("type") != "function":
        return tool
    return {"type": "function", "name": tool.get("name"), "description": None, "parameters": None,
            "strict": None, **_present(tool)}
