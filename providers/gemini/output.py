"""`response_format` in Gemini terms: native JSON mode, or an instruction beside functions.

Gemini answers in JSON natively with `generationConfig.responseMimeType: application/json`
(plus `responseSchema` for `json_schema`). Gemini 1.x and 2.x refuse that together with
function declarations: 400 INVALID_ARGUMENT "Function calling with a response mime type:
'application/json' is unsupported" (googleapis/python-genai#867). Gemini 3 takes both. An
agent with a typed output and tools or handoffs (the OpenAI Agents SDK's `output_type`)
sends exactly that pair, so when functions are declared and the model is not known to be
Gemini 3 or later (a name whose generation cannot be read counts as older: an instruction
works on every model, a 400 on none), the format travels as an instruction at the end of
the system instruction instead: the final answer is to be only a JSON value matching the
schema (given as compact JSON), or only a JSON object for `json_object`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from providers.base import UnsupportedRequest
from providers.gemini.schema import to_gemini_schema

_GENERATION = re.compile(r"^(?:models/)?gemini-(\d+)(?=[.-]|$)")
_FINAL_ANSWER = ("Answer format: when you give your final answer (rather than calling a function), "
                 "reply with only {what}, with no other text and no Markdown code fence.")


@dataclass(frozen=True, slots=True)
class OutputFormat:
    """How a `response_format` is sent: `generationConfig` fields, or an instruction."""

    config: dict[str, Any] = field(default_factory=dict)
    instruction: str | None = None
    """Text to append to the system instruction, when the format cannot go in `config`."""


def gemini_generation(model: str) -> int | None:
    """The major version in a Gemini model name (`gemini-2.5-flash` -> 2), None when there is none."""
    match = _GENERATION.match(model)
    return int(match[1]) if match else None


def json_beside_functions(model: str) -> bool:
    """Whether the model takes a JSON response MIME type in a request that declares functions."""
    generation = gemini_generation(model)
    return generation is not None and generation >= 3


def output_format(response_format: Any, model: str, *, functions: bool) -> OutputFormat:
    """The request's `response_format`; `functions`: the request declares function tools."""
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if response_format is None or kind == "text":
        return OutputFormat()
    if kind not in ("json_object", "json_schema"):
        raise UnsupportedRequest(f"Gemini cannot produce response_format {kind!r}", "response_format")
    schema = (response_format.get("json_schema") or {}).get("schema") if kind == "json_schema" else None
    if functions and not json_beside_functions(model):
        return OutputFormat(instruction=_instruction(kind, schema))
    config: dict[str, Any] = {"responseMimeType": "application/json"}
    if schema:
        try:
            config["responseSchema"] = to_gemini_schema(schema)
        except UnsupportedRequest as exc:
            raise UnsupportedRequest(exc.message, "response_format.json_schema.schema") from exc
    return OutputFormat(config=config)


def _instruction(kind: str, schema: Any) -> str:
    if kind == "json_object":
        return _FINAL_ANSWER.format(what="a JSON object")
    if not schema:
        return _FINAL_ANSWER.format(what="a JSON value")
    # The client's own schema, not Gemini's subset of it: only the model reads it, so nothing
    # is lost in conversion and a schema Gemini's Schema cannot express still works.
    compact = orjson.dumps(schema).decode()
    return f"{_FINAL_ANSWER.format(what='a JSON value that matches the JSON schema below')} JSON schema: {compact}"
