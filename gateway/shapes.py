"""The shapes of the request fields the gateway reads, checked before anything reads them.

Policies, token estimates and provider translators all read messages, content parts,
tool calls and tool declarations; a field of the wrong type there (a list where a string
belongs) is the client's mistake and gets a 400 naming the field, here, once. Tool
parameter schemas are not walked: JSON Schema has its own rules (`"type"` may be a list).
"""

from __future__ import annotations

from typing import Any

from gateway.errors import invalid_request

STRING_FIELDS = frozenset({"role", "type", "name", "tool_call_id", "call_id", "arguments", "text", "id",
                           "refusal", "detail", "status", "url", "description", "instructions"})
OPAQUE_FIELDS = frozenset({"parameters", "input_schema", "json_schema", "schema", "metadata", "input_audio",
                           "file", "annotations", "logprobs", "cache_control"})
"""Fields whose insides are not the gateway's business (schemas, attachments)."""
CONTAINER_FIELDS: dict[str, tuple[type, str]] = {"tool_calls": (list, "an array"), "function": (dict, "an object")}
MAX_SHAPE_DEPTH = 8


def check_shapes(body: dict[str, Any]) -> None:
    for field in ("messages", "input", "tools", "functions", "tool_choice", "function_call"):
        value = body.get(field)
        if isinstance(value, list | dict):
            _check(value, field, 0)


def _check(value: Any, path: str, depth: int) -> None:
    if depth > MAX_SHAPE_DEPTH:
        return
    if isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, dict):
                _check(item, f"{path}[{index}]", depth + 1)
            elif isinstance(item, list):
                raise invalid_request(f"'{path}[{index}]' must be an object or a string, got an array.",
                                      param=f"{path}[{index}]")
        return
    if not isinstance(value, dict):
        return
    for key in STRING_FIELDS.intersection(value):  # only the fields present (C-speed)
        if not isinstance(value[key], str | None):
            raise invalid_request(f"'{path}.{key}' must be a string.", param=f"{path}.{key}")
    content = value.get("content")
    if content is not None and not isinstance(content, str | list):
        raise invalid_request(f"'{path}.content' must be a string or an array of content parts.",
                              param=f"{path}.content")
    for key, (kind, kind_name) in CONTAINER_FIELDS.items():
        item = value.get(key)
        if item is not None and not isinstance(item, kind):
            raise invalid_request(f"'{path}.{key}' must be {kind_name}.", param=f"{path}.{key}")
    for key, item in value.items():
        if isinstance(item, list | dict) and key not in OPAQUE_FIELDS:
            _check(item, f"{path}.{key}", depth + 1)
