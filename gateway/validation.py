"""Read and check a client's request body: parsed once, rejected early and clearly.

Checks are what the gateway itself relies on (types of the fields it reads, sizes
and nesting that protect it); everything else is left for the upstream to judge, so
new OpenAI parameters pass through without a gateway release.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from gateway.config import ServerConfig
from gateway.errors import GatewayError, invalid_request
from gateway.shapes import check_shapes
from providers.base import CHAT, EMBEDDINGS, RESPONSES, Api


@dataclass(slots=True)
class ParsedRequest:
    api: Api
    body: dict[str, Any]
    raw: bytes
    alias: str
    stream: bool


def parse_request(api: Api, raw: bytes, limits: ServerConfig, body: dict[str, Any] | None = None) -> ParsedRequest:
    """The checked request; `body` is `raw` already decoded (`decode_body`), if it was."""
    body = decode_body(raw, limits) if body is None else body
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid_request("'model' is required: set it to one of the models GET /v1/models lists.",
                              param="model")
    stream = body.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise invalid_request(f"'stream' must be true or false, got {_kind(stream)}.", param="stream")
    CHECKS[api](body, limits)
    check_shapes(body)
    return ParsedRequest(api=api, body=body, raw=raw, alias=model, stream=bool(stream))


def decode_body(raw: bytes, limits: ServerConfig) -> dict[str, Any]:
    """The body as a JSON object, within `max_json_depth`; anything else is the client's 400."""
    max_depth = limits.max_json_depth
    if not raw:
        raise invalid_request("The request body is empty; send a JSON object.")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if not _is_utf8(raw):
            raise invalid_request("The request body is not valid UTF-8; send UTF-8 encoded JSON.") from None
        if "depth limit" in str(exc):  # orjson's own limit (1,024) is past any max_json_depth
            raise _too_deep(max_depth) from None
        raise invalid_request(f"The request body is not valid JSON ({exc}); check quoting and commas.") from None
    if not isinstance(body, dict):
        raise invalid_request(f"The request body must be a JSON object, got {_kind(body)}.")
    # Nesting can never be deeper than the number of opening brackets: most bodies are
    # ruled out by two C-speed counts and never walked.
    if raw.count(b"{") + raw.count(b"[") > max_depth and _depth(body, max_depth) > max_depth:
        raise _too_deep(max_depth)
    return body


def _too_deep(max_depth: int) -> GatewayError:
    return invalid_request(f"The request JSON is nested deeper than {max_depth} levels "
                           "(server.max_json_depth); flatten it.", code="json_too_deep")


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _depth(value: Any, limit: int) -> int:
    """Nesting depth, stopping as soon as it passes `limit`."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    deepest = 1
    while stack:
        node, level = stack.pop()
        if level > deepest:
            deepest = level
            if deepest > limit:
                return deepest
        children = node.values() if isinstance(node, dict) else node
        for child in children:
            if isinstance(child, dict | list):
                stack.append((child, level + 1))
    return deepest


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            int: "a number", float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def _expect(body: dict[str, Any], field: str, kinds: tuple[type, ...], what: str) -> None:
    value = body.get(field)
    if value is None:
        return
    if not isinstance(value, kinds) or (bool not in kinds and isinstance(value, bool)):
        raise invalid_request(f"'{field}' must be {what}, got {_kind(value)}.", param=field)


def _check_list(body: dict[str, Any], field: str, limit: int, limit_name: str, *, required: bool = False
                ) -> list[Any]:
    value = body.get(field)
    if value is None:
        if required:
            raise invalid_request(f"'{field}' is required: an array of message objects.", param=field)
        return []
    if not isinstance(value, list):
        raise invalid_request(f"'{field}' must be an array, got {_kind(value)}.", param=field)
    if len(value) > limit:
        raise invalid_request(f"'{field}' has {len(value)} items; the gateway allows at most {limit} "
                              f"(server.{limit_name}).", param=field, code="too_many_items")
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise invalid_request(f"'{field}[{index}]' must be an object, got {_kind(item)}.",
                                  param=f"{field}[{index}]")
    return value


def _check_common(body: dict[str, Any], limits: ServerConfig) -> None:
    _check_list(body, "tools", limits.max_tools, "max_tools")
    _expect(body, "metadata", (dict,), "an object of string values")
    _expect(body, "user", (str,), "a string")
    _expect(body, "stream_options", (dict,), "an object")
    _expect(body, "tool_choice", (str, dict), "a string or an object")
    _expect(body, "temperature", (int, float), "a number")
    _expect(body, "top_p", (int, float), "a number")
    _expect(body, "parallel_tool_calls", (bool,), "true or false")


def _check_chat(body: dict[str, Any], limits: ServerConfig) -> None:
    messages = _check_list(body, "messages", limits.max_messages, "max_messages", required=True)
    if not messages:
        raise invalid_request("'messages' must contain at least one message.", param="messages")
    for index, message in enumerate(messages):
        role = message.get("role")
        if not isinstance(role, str):
            raise invalid_request(f"'messages[{index}].role' is required (system, user, assistant or tool).",
                                  param=f"messages[{index}].role")
    _check_common(body, limits)
    _check_list(body, "functions", limits.max_tools, "max_tools")
    for field in ("max_tokens", "max_completion_tokens", "n"):
        _expect(body, field, (int,), "an integer")
    stop = body.get("stop")
    if stop is not None and not (isinstance(stop, str)
                                 or (isinstance(stop, list) and all(isinstance(each, str) for each in stop))):
        raise invalid_request("'stop' must be a string or an array of strings.", param="stop")


def _check_responses(body: dict[str, Any], limits: ServerConfig) -> None:
    items = body.get("input")
    if items is None:
        raise invalid_request("'input' is required: a string or an array of input items.", param="input")
    if isinstance(items, list):
        _check_list(body, "input", limits.max_messages, "max_messages")
    elif not isinstance(items, str):
        raise invalid_request(f"'input' must be a string or an array, got {_kind(items)}.", param="input")
    _expect(body, "instructions", (str,), "a string")
    _expect(body, "max_output_tokens", (int,), "an integer")
    _check_common(body, limits)


def _check_embeddings(body: dict[str, Any], limits: ServerConfig) -> None:
    items = body.get("input")
    if items is None or (isinstance(items, list | str) and len(items) == 0):
        raise invalid_request("'input' is required: a string or an array of strings or token arrays.",
                              param="input")
    if not isinstance(items, str | list):
        raise invalid_request(f"'input' must be a string or an array, got {_kind(items)}.", param="input")
    if body.get("stream"):
        raise invalid_request("Embeddings do not stream: remove 'stream' from the request.", param="stream")
    _expect(body, "encoding_format", (str,), "'float' or 'base64'")
    _expect(body, "dimensions", (int,), "an integer")


CHECKS = {CHAT: _check_chat, RESPONSES: _check_responses, EMBEDDINGS: _check_embeddings}


def agent_name(header: str | None, body: dict[str, Any]) -> str | None:
    """Who inside the tenant made the call: the header, else metadata.agent, else user."""
    if header:
        return header.strip()[:128] or None
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("agent"), str):
        return metadata["agent"][:128] or None
    user = body.get("user")
    return user[:128] if isinstance(user, str) and user else None

