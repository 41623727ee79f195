"""A small JSON Schema subset, for `match: json_schema` eval cases.

Supported keywords: `type` (one name or a list: object, array, string, number, integer,
boolean, null), `properties`, `required`, `additionalProperties` (true or false),
`items` (one schema for every element), `enum` and `const`. `title`, `description`,
`$schema`, `$id`, `examples` and `default` are accepted and ignored. Any other keyword
is refused when the dataset loads, so a schema never looks stricter than it is (a
`minLength` that nobody checks would pass answers it was written to fail).

As in JSON Schema, an integer is also a number, a boolean is neither, and `1.0` is an
integer. Both functions are pure and return messages with the JSON path of the problem.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

TYPE_NAMES = ("object", "array", "string", "number", "integer", "boolean", "null")
_CHECKED = frozenset({"type", "properties", "required", "additionalProperties", "items", "enum", "const"})
_ANNOTATIONS = frozenset({"title", "description", "$schema", "$id", "examples", "default"})


def schema_problems(schema: Any, path: str = "$") -> list[str]:
    """What is wrong with `schema` itself (empty when it is usable)."""
    if isinstance(schema, bool):
        return []
    if not isinstance(schema, Mapping):
        return [f"{path}: a schema must be an object (or true/false), got {_kind(schema)}"]
    problems: list[str] = []
    for keyword in schema:
        if keyword not in _CHECKED and keyword not in _ANNOTATIONS:
            problems.append(f"{path}: '{keyword}' is not supported; use only "
                            f"{', '.join(sorted(_CHECKED))} (see docs/eval.md)")
    kinds = schema.get("type")
    if kinds is not None:
        names = kinds if isinstance(kinds, list) else [kinds]
        if not names or any(name not in TYPE_NAMES for name in names):
            problems.append(f"{path}.type: must be one of {', '.join(TYPE_NAMES)} (or a list of them), got {kinds!r}")
    properties = schema.get("properties")
    if properties is not None:
        if isinstance(properties, Mapping):
            for name, child in properties.items():
                problems += schema_problems(child, f"{path}.properties.{name}")
        else:
            problems.append(f"{path}.properties: must map property names to schemas")
    required = schema.get("required")
    if required is not None and not (isinstance(required, list) and all(isinstance(n, str) for n in required)):
        problems.append(f"{path}.required: must be a list of property names")
    extra = schema.get("additionalProperties")
    if extra is not None and not isinstance(extra, bool):
        problems.append(f"{path}.additionalProperties: only true or false is supported")
    if "items" in schema:
        problems += schema_problems(schema["items"], f"{path}.items")
    enum = schema.get("enum")
    if enum is not None and not (isinstance(enum, list) and enum):
        problems.append(f"{path}.enum: must be a non-empty list of allowed values")
    return problems


def violations(instance: Any, schema: Any, path: str = "$") -> list[str]:
    """Where `instance` breaks `schema` (empty when it validates). `schema` must be usable."""
    if schema is True:
        return []
    if schema is False:
        return [f"{path}: no value is allowed here"]
    kinds = schema.get("type")
    if kinds is not None:
        names = kinds if isinstance(kinds, list) else [kinds]
        if not any(_is_type(instance, name) for name in names):
            return [f"{path}: expected {' or '.join(names)}, got {_kind(instance)}"]
    found: list[str] = []
    if "enum" in schema and not any(_same(instance, allowed) for allowed in schema["enum"]):
        found.append(f"{path}: {_short(instance)} is not one of {_short(schema['enum'])}")
    if "const" in schema and not _same(instance, schema["const"]):
        found.append(f"{path}: expected {_short(schema['const'])}, got {_short(instance)}")
    if isinstance(instance, dict):
        found += _object_violations(instance, schema, path)
    if isinstance(instance, list) and "items" in schema:
        for index, item in enumerate(instance):
            found += violations(item, schema["items"], f"{path}[{index}]")
    return found


def _object_violations(instance: dict[str, Any], schema: Mapping[str, Any], path: str) -> list[str]:
    properties = schema.get("properties") or {}
    found = [f"{path}: missing required property '{name}'" for name in schema.get("required") or []
             if name not in instance]
    for name, value in instance.items():
        if name in properties:
            found += violations(value, properties[name], f"{path}.{name}")
        elif schema.get("additionalProperties") is False:
            found.append(f"{path}: property '{name}' is not allowed")
    return found


def _is_type(value: Any, name: str) -> bool:
    if name == "integer":
        return _is_number(value) and float(value).is_integer()
    if name == "number":
        return _is_number(value)
    expected = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}[name]
    return isinstance(value, expected)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _same(value: Any, other: Any) -> bool:
    """JSON equality: 1 == 1.0, but true is not 1."""
    if _is_number(value) and _is_number(other):
        return value == other
    if isinstance(value, bool) or isinstance(other, bool):
        return value is other
    return type(value) is type(other) and value == other


def _kind(value: Any) -> str:
    for name in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _is_type(value, name):
            return name
    return type(value).__name__


def _short(value: Any, limit: int = 60) -> str:
    """`value` as JSON (as the answer wrote it), cut to `limit` characters."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
