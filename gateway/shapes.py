"""The shapes of the request fields the gateway reads, checked before anything reads them.

Policies, token estimates and provider translators all read messages, content parts,
tool calls and tool declarations; a field of the wrong type there (a list where a string
belongs) is the client's mistake and gets a 400 naming the field, here, once. Tool
parameter schemas are not walked: JSON Schema has its own rules (`"type"` may be a list).
"""

from __future__ import annotations

from typing import Any

from gateway.errors import GatewayError, invalid_request

STRING_FIELDS = frozenset({"role", "type", "name", "tool_call_id", "call_id", "arguments", "text", "id",
                           "refusal", "detail", "status", "url", "description", "instructions"})
OPAQUE_FIELDS = frozenset({"parameters", "input_schema", "json_schema", "schema", "metadata", "input_audio",
                           "file", "annotations", "logprobs", "cache_control"})
"""Fields whose insides are not the gateway's business (schemas, attachments)."""
CONTAINER_FIELDS: dict[str, tuple[type, str]] = {"tool_calls": (list, "an array"), "function": (dict, "an object")}
MAX_SHAPE_DEPTH = 8


Path = str | tuple["Path", str | int]
"""Where a value sits, built only when it is named in an error: (parent, key) pairs."""


def check_shapes(body: dict[str, Any]) -> None:
    for field in ("messages", "input", "tools", "functions", "tool_choice", "function_call"):
        value = body.get(field)
        if isinstance(value, list):
            _check_items(value, field, 0)
        elif isinstance(value, dict):
            _check_object(value, field, 0)


def _check_items(items: list[Any], path: Path, depth: int) -> None:
    if depth > MAX_SHAPE_DEPTH:
        return
    for index, item in enumerate(items):
        if isinstance(item, dict):
            _check_object(item, (path, index), depth + 1)
        elif isinstance(item, list):
            raise _wrong((path, index), "must be an object or a string, got an array")


def _check_object(value: dict[str, Any], path: Path, depth: int) -> None:
    """One pass over the fields that are there (a request's objects have a handful each)."""
    if depth > MAX_SHAPE_DEPTH:
        return
    for key, item in value.items():
        if item is None:
            continue
        if isinstance(item, str):
            if key in CONTAINER_FIELDS:
                raise _wrong((path, key), f"must be {CONTAINER_FIELDS[key][1]}")
            continue
        if key in STRING_FIELDS:
            raise _wrong((path, key), "must be a string")
        if key == "content":
            if not isinstance(item, list):
                raise _wrong((path, key), "must be a string or an array of content parts")
        elif key in CONTAINER_FIELDS and not isinstance(item, CONTAINER_FIELDS[key][0]):
            raise _wrong((path, key), f"must be {CONTAINER_FIELDS[key][1]}")
        if key in OPAQUE_FIELDS:
            continue
        if isinstance(item, dict):
            _check_object(item, (path, key), depth + 1)
        elif isinstance(item, list):
            _check_items(item, (path, key), depth + 1)


def _wrong(path: Path, what: str) -> GatewayError:
    name = _name(path)
    return invalid_request(f"'{name}' {what}.", param=name)


def _name(path: Path) -> str:
    """`messages[0].content` from the (parent, key) pairs."""
    parts: list[str] = []
    while isinstance(path, tuple):
        path, key = path
        parts.append(f"[{key}]" if isinstance(key, int) else f".{key}")
    return path + "".join(reversed(parts))
