"""JSON Schema (as OpenAI tools and response formats use it) -> Gemini's Schema object.

Gemini's `Schema` is a select subset of OpenAPI 3.0 and rejects the whole request on a
field it does not know ("Unknown name ... Cannot find field"), so the conversion keeps a
whitelist instead of deleting known offenders:

- local `$ref`s (`#/$defs/...`, `#/definitions/...`) are inlined; a recursive reference
  is cut at its second appearance and becomes a plain `OBJECT` (Gemini has no references);
- `allOf` is merged into one schema; `oneOf` is read as `anyOf`;
- a `null` member of `anyOf` or of a type array becomes `nullable: true`; the remaining
  members stay an `anyOf` (or collapse when only one is left);
- `const` becomes a one-value `enum`; enum values are strings, as Gemini requires;
- `format` survives only where Gemini supports it (enum and date-time on strings,
  int32/int64 on integers, float/double on numbers);
- `title`, `default`, `examples`, `additionalProperties`, `patternProperties`, `$schema`,
  `exclusiveMinimum` and every other keyword outside the whitelist are dropped;
- `required` keeps only declared properties.
"""

from __future__ import annotations

from typing import Any

from providers.base import UnsupportedRequest

_PLAIN_KEYWORDS = (
    "description", "pattern", "minimum", "maximum", "minLength", "maxLength",
    "minItems", "maxItems", "minProperties", "maxProperties",
)
_FORMATS = {
    "STRING": frozenset({"enum", "date-time"}),
    "INTEGER": frozenset({"int32", "int64"}),
    "NUMBER": frozenset({"float", "double"}),
}
_ENUM_TYPES = ("STRING", "INTEGER", "NUMBER")
_TYPES = frozenset({"STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL"})

Schema = dict[str, Any]


def to_gemini_schema(schema: Schema) -> Schema:
    """Convert one JSON Schema; raises `UnsupportedRequest` on what cannot be expressed."""
    definitions = {**schema.get("definitions", {}), **schema.get("$defs", {})}
    return _Converter(definitions).convert(schema, ())


class _Converter:
    def __init__(self, definitions: dict[str, Schema]) -> None:
        self.definitions = definitions

    def convert(self, node: Any, refs: tuple[str, ...]) -> Schema:
        if node is True or node == {}:
            return {}
        if not isinstance(node, dict):
            raise UnsupportedRequest(f"a JSON schema must be an object, not {node!r}")
        if "$ref" in node:
            return self._reference(node, refs)
        if "allOf" in node:
            return self._all_of(node, refs)
        if "anyOf" in node or "oneOf" in node:
            return self._any_of(node, refs)
        if isinstance(node.get("type"), list):
            return self._type_list(node, refs)
        return self._plain(node, refs)

    def _reference(self, node: Schema, refs: tuple[str, ...]) -> Schema:
        ref = node["$ref"]
        name = ref.rsplit("/", 1)[-1]
        if not ref.startswith(("#/$defs/", "#/definitions/")) or name not in self.definitions:
            raise UnsupportedRequest(f"the schema reference {ref!r} is not a local definition; "
                                     "Gemini needs every schema inline")
        target = self.definitions[name]
        if name in refs:
            converted: Schema = {"type": "OBJECT"}
            if "description" in target:
                converted["description"] = target["description"]
        else:
            converted = self.convert(target, (*refs, name))
        siblings = {key: value for key, value in node.items() if key != "$ref"}
        return {**converted, **self._plain(siblings, refs)} if siblings else converted

    def _all_of(self, node: Schema, refs: tuple[str, ...]) -> Schema:
        rest = {key: value for key, value in node.items() if key != "allOf"}
        merged = self.convert(rest, refs) if rest else {}
        for member in node["allOf"]:
            merged = _merge(merged, self.convert(member, refs))
        return merged

    def _any_of(self, node: Schema, refs: tuple[str, ...]) -> Schema:
        members = [*node.get("anyOf", ()), *node.get("oneOf", ())]
        rest = {key: value for key, value in node.items() if key not in ("anyOf", "oneOf")}
        own = self.convert(rest, refs) if rest else {}
        options = [self.convert(member, refs) for member in members]
        return _union(own, options)

    def _type_list(self, node: Schema, refs: tuple[str, ...]) -> Schema:
        rest = {key: value for key, value in node.items() if key != "type"}
        options = [self.convert({**rest, "type": name}, refs) for name in node["type"]]
        return _union({}, options)

    def _plain(self, node: Schema, refs: tuple[str, ...]) -> Schema:
        result: Schema = {}
        type_name = _type_name(node)
        if type_name:
            result["type"] = type_name
        for key in _PLAIN_KEYWORDS:
            if key in node:
                result[key] = node[key]
        if node.get("format") in _FORMATS.get(type_name, ()):
            result["format"] = node["format"]
        if node.get("nullable") is True:
            result["nullable"] = True
        _put_enum(result, node)
        if isinstance(node.get("properties"), dict):
            result["properties"] = {name: self.convert(value, refs)
                                    for name, value in node["properties"].items()}
            required = [name for name in node.get("required", ()) if name in result["properties"]]
            if required:
                result["required"] = required
        items = node.get("items")
        if isinstance(items, list):
            result["items"] = _union({}, [self.convert(item, refs) for item in items])
        elif items is not None:
            result["items"] = self.convert(items, refs)
        return result


def _type_name(node: Schema) -> str | None:
    declared = node.get("type")
    if isinstance(declared, str):
        upper = declared.upper()
        if upper not in _TYPES:
            raise UnsupportedRequest(f"unknown JSON schema type {declared!r}")
        return upper
    if "properties" in node:
        return "OBJECT"
    if "items" in node:
        return "ARRAY"
    if "enum" in node or "const" in node:
        return "STRING"
    return None


def _put_enum(result: Schema, node: Schema) -> None:
    values = node["enum"] if "enum" in node else [node["const"]] if "const" in node else None
    if values is None:
        return
    if None in values:
        result["nullable"] = True
    if result.get("type") not in _ENUM_TYPES:
        return  # Gemini has enums of strings and of (marked) numbers only
    result["enum"] = [_enum_text(value) for value in values if value is not None]
    if result["type"] != "STRING":
        # Gemini reads a numeric enum only when marked so (see its Schema.enum docs).
        result["format"] = "enum"


def _enum_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


def _union(own: Schema, options: list[Schema]) -> Schema:
    """`own` (the keywords beside anyOf) combined with the non-null options."""
    remaining = [option for option in options if option.get("type") != "NULL"]
    nullable = len(remaining) < len(options)
    if len(remaining) == 1:
        combined = {**remaining[0], **own}
    elif remaining:
        combined = {**own, "anyOf": remaining}
    else:
        combined = {**own, "type": "NULL"}
    if nullable and remaining:
        combined["nullable"] = True
    return combined


def _merge(base: Schema, extra: Schema) -> Schema:
    """allOf: properties and required are unioned, the first value of anything else wins."""
    merged = {**extra, **base}
    if "properties" in base or "properties" in extra:
        properties = dict(base.get("properties", {}))
        for name, value in extra.get("properties", {}).items():
            properties.setdefault(name, value)
        merged["properties"] = properties
    required = [*base.get("required", ()), *extra.get("required", ())]
    if required:
        merged["required"] = list(dict.fromkeys(required))
    return merged
