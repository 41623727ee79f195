"""The request checks of the fake Anthropic server: what the real API answers with a 400.

`check_request(body, version)` raises `RequestError` for the first problem found, with a
message in the style of Anthropic's (`messages.1.content.0: ...`). The checks are the
ones a translator can get wrong: required fields, unknown fields, roles that do not
alternate, tool results without their tool use (or after text), tool blocks in a
request that defines no tools, empty text blocks, image sources, thinking rules, and
sampling parameters under `2026-10-21`.
"""

from __future__ import annotations

import re
from typing import Any

_TOP_LEVEL = frozenset({
    "model", "max_tokens", "messages", "system", "stream", "stop_sequences", "temperature", "top_p",
    "top_k", "tools", "tool_choice", "thinking", "metadata", "output_config", "service_tier",
    "container", "cache_control", "inference_geo", "speed", "diagnostics",
})
_SAMPLING = ("temperature", "top_p", "top_k")
_TOOL_KEYS = frozenset({"name", "description", "input_schema", "strict", "cache_control", "type",
                        "input_examples", "defer_loading", "allowed_callers", "eager_input_streaming"})
_TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,128}")
_TOOL_ID = re.compile(r"[a-zA-Z0-9_-]+")
_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_EFFORTS = frozenset({"low", "medium", "high", "xhigh", "max"})
_ASSISTANT_ONLY = frozenset({"tool_use", "thinking", "redacted_thinking"})
_USER_ONLY = frozenset({"tool_result"})


class RequestError(Exception):
    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message


def _fail(message: str) -> RequestError:
    return RequestError(400, "invalid_request_error", message)


def check_request(body: Any, version: str) -> None:
    if not isinstance(body, dict):
        raise _fail("The request body is not a JSON object")
    for key in body:
        if key not in _TOP_LEVEL or (version >= "2026-10-21" and key in _SAMPLING):
            raise _fail(f"{key}: Extra inputs are not permitted")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise _fail("model: Field required")
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 0:
        raise _fail("max_tokens: Field required (a non-negative integer)")
    _check_system(body.get("system"))
    _check_messages(body.get("messages"))
    tool_names = _check_tools(body.get("tools"))
    if not tool_names and _has_tool_blocks(body["messages"]):
        # Anthropic has answered this with a 400 (BerriAI/litellm#4689); the fake stays strict.
        raise _fail("Requests which include `tool_use` or `tool_result` blocks must define tools.")
    _check_tool_choice(body.get("tool_choice"), tool_names)
    _check_thinking(body)
    _check_options(body)


def _check_system(system: Any) -> None:
    if system is None or isinstance(system, str):
        return
    if not isinstance(system, list):
        raise _fail("system: Input should be a valid string or a list of text blocks")
    for index, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise _fail(f"system.{index}.type: Input should be 'text'")
        _check_block(block, f"system.{index}", "system")


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list):
        raise _fail("messages: Field required")
    if not messages:
        raise _fail("messages: at least one message is required")
    pending: set[str] = set()
    for index, message in enumerate(messages):
        where = f"messages.{index}"
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("user", "assistant"):
            raise _fail(f"{where}.role: Input should be 'user' or 'assistant'")
        if index and messages[index - 1]["role"] == role:
            raise _fail(f'messages: roles must alternate between "user" and "assistant", but found '
                        f'multiple "{role}" roles in a row')
        content = message.get("content")
        final_assistant = role == "assistant" and index == len(messages) - 1
        if isinstance(content, str):
            content = [{"type": "text", "text": content}] if content or not final_assistant else []
        if not isinstance(content, list) or (not content and not final_assistant):
            raise _fail(f"{where}: all messages must have non-empty content except for the optional "
                        "final assistant message")
        pending = _check_turn(content, role, index, pending)


def _check_turn(content: list[Any], role: str, index: int, pending: set[str]) -> set[str]:
    """Check turn `index`; returns the tool_use ids it leaves waiting for results."""
    where = f"messages.{index}"
    answered: set[str] = set()
    seen_other = False
    calls: set[str] = set()
    for number, block in enumerate(content):
        here = f"{where}.content.{number}"
        kind = block.get("type") if isinstance(block, dict) else None
        if (kind in _ASSISTANT_ONLY and role != "assistant") or (kind in _USER_ONLY and role != "user"):
            raise _fail(f"{here}: `{kind}` blocks are not allowed in `{role}` messages")
        _check_block(block, here, role)
        if kind == "tool_result":
            if seen_other:
                raise _fail(f"{here}: tool_result blocks must come first in the user message, before "
                            "any other content")
            if block["tool_use_id"] not in pending:
                raise _fail(f"{here}: unexpected `tool_use_id` found in `tool_result` blocks: "
                            f"{block['tool_use_id']}. Each `tool_result` block must have a corresponding "
                            "`tool_use` block in the previous message.")
            answered.add(block["tool_use_id"])
        else:
            seen_other = True
        if kind == "tool_use":
            calls.add(block["id"])
    if pending and (role != "user" or pending - answered):
        raise _fail(_missing_results(index - 1, pending - answered))
    return calls


def _has_tool_blocks(messages: list[dict[str, Any]]) -> bool:
    return any(isinstance(block, dict) and block.get("type") in ("tool_use", "tool_result")
               for message in messages if isinstance(message.get("content"), list)
               for block in message["content"])


def _missing_results(index: int, ids: set[str]) -> str:
    return (f"messages.{index}: `tool_use` ids were found without `tool_result` blocks immediately "
            f"after: {', '.join(sorted(ids))}. Each `tool_use` block must have a corresponding "
            "`tool_result` block in the next message.")


def _check_block(block: dict[str, Any], here: str, role: str) -> None:
    kind = block.get("type")
    if kind == "text":
        if not isinstance(block.get("text"), str) or not block["text"]:
            raise _fail("messages: text content blocks must be non-empty")
    elif kind == "image":
        _check_source(block.get("source"), here, image=True)
    elif kind == "document":
        _check_source(block.get("source"), here, image=False)
    elif kind == "tool_use":
        if not _TOOL_ID.fullmatch(str(block.get("id"))) or not isinstance(block.get("name"), str):
            raise _fail(f"{here}.id: String should match pattern '^[a-zA-Z0-9_-]+$'")
        if not isinstance(block.get("input"), dict):
            raise _fail(f"{here}.input: Input should be a valid dictionary")
    elif kind == "tool_result":
        if not isinstance(block.get("tool_use_id"), str):
            raise _fail(f"{here}.tool_use_id: Field required")
        content = block.get("content")
        if isinstance(content, list):
            for number, inner in enumerate(content):
                if not isinstance(inner, dict) or inner.get("type") not in ("text", "image", "document"):
                    raise _fail(f"{here}.content.{number}: Input tag does not match any of the expected tags")
                _check_block(inner, f"{here}.content.{number}", role)
        elif content is not None and not isinstance(content, str):
            raise _fail(f"{here}.content: Input should be a valid string or list")
    elif kind == "thinking":
        if not isinstance(block.get("thinking"), str) or not isinstance(block.get("signature"), str):
            raise _fail(f"{here}: thinking blocks need `thinking` and `signature`")
    elif kind == "redacted_thinking":
        if not isinstance(block.get("data"), str):
            raise _fail(f"{here}.data: Field required")
    else:
        raise _fail(f"{here}: Input tag {kind!r} found using 'type' does not match any of the expected tags")


def _check_source(source: Any, here: str, *, image: bool) -> None:
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "url" and isinstance(source.get("url"), str):
        return
    if kind == "base64" and isinstance(source.get("data"), str):
        allowed = _IMAGE_TYPES if image else {"application/pdf"}
        if source.get("media_type") in allowed:
            return
        raise _fail(f"{here}.source.media_type: Input should be one of {sorted(allowed)}")
    if not image and kind == "text" and isinstance(source.get("data"), str):
        return
    raise _fail(f"{here}.source: Input tag does not match any of the expected tags")


def _check_tools(tools: Any) -> set[str]:
    if tools is None:
        return set()
    if not isinstance(tools, list):
        raise _fail("tools: Input should be a valid list")
    names: set[str] = set()
    for index, tool in enumerate(tools):
        where = f"tools.{index}"
        if not isinstance(tool, dict):
            raise _fail(f"{where}: Input should be a valid dictionary")
        extra = set(tool) - _TOOL_KEYS
        if extra:
            raise _fail(f"{where}.{sorted(extra)[0]}: Extra inputs are not permitted")
        if not _TOOL_NAME.fullmatch(str(tool.get("name"))):
            raise _fail(f"{where}.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'")
        schema = tool.get("input_schema")
        if not isinstance(schema, dict) or schema.get("type") != "object":
            raise _fail(f"{where}.input_schema.type: Input should be 'object'")
        if tool["name"] in names:
            raise _fail("tools: Tool names must be unique.")
        names.add(tool["name"])
    return names


def _check_tool_choice(choice: Any, tool_names: set[str]) -> None:
    if choice is None:
        return
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind not in ("auto", "any", "tool", "none"):
        raise _fail("tool_choice: Input tag does not match any of the expected tags: 'auto', 'any', "
                    "'tool', 'none'")
    if kind == "tool" and choice.get("name") not in tool_names:
        raise _fail(f"tool_choice.name: tool {choice.get('name')!r} is not in the request's tools")
    if kind == "none" and "disable_parallel_tool_use" in choice:
        raise _fail("tool_choice.none.disable_parallel_tool_use: Extra inputs are not permitted")


def _check_thinking(body: dict[str, Any]) -> None:
    thinking = body.get("thinking")
    if thinking is None:
        return
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    if kind not in ("enabled", "adaptive", "disabled"):
        raise _fail("thinking: Input tag does not match any of the expected tags")
    if kind == "disabled":
        return
    if kind == "enabled":
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int) or budget < 1024:
            raise _fail("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
        if budget >= body["max_tokens"]:
            raise _fail("`max_tokens` must be greater than `thinking.budget_tokens`")
    if body.get("temperature") not in (None, 1):
        raise _fail("`temperature` may only be set to 1 when thinking is enabled")
    if body.get("top_k") is not None:
        raise _fail("`top_k` cannot be set when thinking is enabled")
    if body.get("top_p") is not None and not 0.95 <= body["top_p"] <= 1:
        raise _fail("`top_p` must be between 0.95 and 1 when thinking is enabled")
    if (body.get("tool_choice") or {}).get("type") in ("any", "tool"):
        raise _fail("Thinking may not be enabled when tool_choice forces tool use.")


def _check_options(body: dict[str, Any]) -> None:
    stops = body.get("stop_sequences")
    if stops is not None and (not isinstance(stops, list) or not all(isinstance(s, str) for s in stops)):
        raise _fail("stop_sequences: Input should be a valid list of strings")
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is not None and not (isinstance(value, int | float) and 0 <= value <= 1):
            raise _fail(f"{name}: Input should be less than or equal to 1")
    metadata = body.get("metadata")
    if metadata is not None and (not isinstance(metadata, dict) or set(metadata) - {"user_id"}):
        raise _fail("metadata: Extra inputs are not permitted")
    config = body.get("output_config")
    if config is None:
        return
    if not isinstance(config, dict) or set(config) - {"effort", "format"}:
        raise _fail("output_config: Extra inputs are not permitted")
    if config.get("effort") is not None and config["effort"] not in _EFFORTS:
        raise _fail("output_config.effort: Input should be 'low', 'medium', 'high', 'xhigh' or 'max'")
    output_format = config.get("format")
    if output_format is not None and (not isinstance(output_format, dict)
                                      or output_format.get("type") != "json_schema"
                                      or not isinstance(output_format.get("schema"), dict)):
        raise _fail("output_config.format: a json_schema format needs a `schema` object")
