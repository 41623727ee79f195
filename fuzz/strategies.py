"""Hypothesis strategies for the fuzz targets.

Inputs are built from the real wire shapes (OpenAI chat, Responses and embeddings
requests, Anthropic and Gemini stream events, chat chunks and completions, SSE byte
streams) and then perturbed: any field may be swapped for any JSON value. One run so
walks both the paths that real clients and upstreams take and the ones that only a
broken or hostile peer would.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, TypeVar

import orjson
from hypothesis import strategies as st

Strategy = st.SearchStrategy
Seq = TypeVar("Seq", bound=Sequence[Any])

# -- JSON values -----------------------------------------------------------------------

# orjson writes integers up to 64 bits; every value here can be sent as JSON.
INTEGERS = st.integers(min_value=-(2**63), max_value=2**64 - 1)
SCALARS = st.none() | st.booleans() | INTEGERS | st.floats(allow_nan=False, allow_infinity=False) | \
    st.text(max_size=12)
JSON: Strategy[Any] = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
JSON_OBJECT = st.dictionaries(st.text(max_size=8), JSON, max_size=5)
TEXT = st.text(max_size=30)
COUNTS = st.integers(min_value=0, max_value=10**7)
SMALL_INDEX = st.integers(min_value=0, max_value=3)


def perturbed(strategy: Strategy[Any], one_in: int = 8) -> Strategy[Any]:
    """`strategy`, or (about one time in `one_in`) any JSON value in its place.

    The shrinker moves towards the unperturbed branch, so a minimal failing example
    keeps the real shape wherever the shape was not the point."""
    return st.integers(min_value=0, max_value=one_in - 1).flatmap(
        lambda draw: strategy if draw < one_in - 1 else JSON)


def shaped(required: dict[str, Strategy[Any]], optional: dict[str, Strategy[Any]] | None = None
           ) -> Strategy[dict[str, Any]]:
    """A JSON object with these fields (the optional ones present or not), each perturbed."""
    return st.fixed_dictionaries({key: perturbed(value) for key, value in required.items()},
                                 optional={key: perturbed(value) for key, value in (optional or {}).items()})


def split_at(sequence: Seq, cuts: list[int]) -> list[Seq]:
    """`sequence` cut at the positions in `cuts` (each taken modulo its length + 1)."""
    bounds = sorted({0, len(sequence), *(cut % (len(sequence) + 1) for cut in cuts)})
    return [sequence[start:end] for start, end in itertools.pairwise(bounds)]  # type: ignore[misc]


def json_text(values: Strategy[Any]) -> Strategy[str]:
    return values.map(lambda value: orjson.dumps(value).decode())


TOOL_NAMES = st.sampled_from(["get_weather", "lookup", "delete_file", "transfer_to_agent", ""]) | \
    st.text(max_size=10)
IDS = st.sampled_from(["call_1", "call_2", "toolu_01", "fc_1"]) | st.text(max_size=8)
ARGUMENTS = json_text(JSON_OBJECT) | TEXT

# -- JSON Schema (tool parameters, response formats) ---------------------------------------

TYPE_NAMES = st.sampled_from(["string", "number", "integer", "boolean", "array", "object", "null"])
REFS = st.sampled_from(["#/$defs/Node", "#/definitions/Node", "#/$defs/Missing", "#", "https://example.com/s"])
SCHEMA_LEAF = shaped({"type": TYPE_NAMES}, {
    "description": TEXT, "enum": st.lists(SCALARS, max_size=3), "const": SCALARS, "nullable": st.booleans(),
    "format": st.sampled_from(["date-time", "enum", "int32", "int64", "float", "double", "email", "uuid"]),
    "minimum": INTEGERS, "maxLength": COUNTS, "pattern": TEXT, "title": TEXT, "default": JSON,
})


def _schema_node(children: Strategy[Any]) -> Strategy[Any]:
    return st.one_of(
        shaped({"type": st.just("object"), "properties": st.dictionaries(st.text(max_size=6), children, max_size=3)},
               {"required": st.lists(st.text(max_size=6), max_size=3), "additionalProperties": st.booleans()}),
        shaped({"type": st.just("array"), "items": children}, {"minItems": COUNTS}),
        shaped({"anyOf": st.lists(children, max_size=3)}, {"description": TEXT}),
        shaped({"oneOf": st.lists(children, max_size=3)}),
        shaped({"allOf": st.lists(children, max_size=3)}, {"type": TYPE_NAMES}),
        shaped({"type": st.lists(TYPE_NAMES, max_size=3)}),
        shaped({"$ref": REFS}, {"description": TEXT}),
    )


SCHEMA = st.recursive(SCHEMA_LEAF, _schema_node, max_leaves=6)
DEFINITIONS = st.dictionaries(st.sampled_from(["$defs", "definitions"]),
                              st.dictionaries(st.sampled_from(["Node", "Other"]), SCHEMA, max_size=2), max_size=1)
ROOT_SCHEMA = st.tuples(SCHEMA, DEFINITIONS).map(
    lambda pair: {**pair[0], **pair[1]} if isinstance(pair[0], dict) else pair[0])

# -- Chat Completions requests ---------------------------------------------------------------

IMAGE_URLS = st.sampled_from([
    "https://example.com/cat.png", "gs://bucket/cat.png", "http://example.com/a.jpg", "ftp://example.com/x",
    "data:image/png;base64,iVBORw0KGgo=", "data:image/png;base64,!!!", "data:;base64,", "data:text/plain,hi", "",
])
CHAT_PART = st.one_of(
    shaped({"type": st.just("text"), "text": TEXT}),
    shaped({"type": st.just("image_url"), "image_url": shaped({"url": IMAGE_URLS}, {"detail": TEXT})}),
    shaped({"type": st.just("input_audio"), "input_audio": shaped({"data": TEXT, "format": TEXT})}),
    shaped({"type": st.just("file"), "file": shaped({}, {"file_data": IMAGE_URLS, "file_id": IDS, "filename": TEXT})}),
    shaped({"type": st.just("refusal"), "refusal": TEXT}),
    shaped({"type": TEXT}),
)
CHAT_CONTENT = TEXT | st.none() | st.lists(perturbed(CHAT_PART), max_size=3)
FUNCTION = shaped({"name": TOOL_NAMES, "arguments": ARGUMENTS})
TOOL_CALL = shaped({"id": IDS, "type": st.sampled_from(["function", "custom"]), "function": FUNCTION})
CHAT_MESSAGE = st.one_of(
    shaped({"role": st.sampled_from(["system", "developer"]), "content": CHAT_CONTENT}, {"name": TEXT}),
    shaped({"role": st.just("user"), "content": CHAT_CONTENT}, {"name": TEXT}),
    shaped({"role": st.just("assistant")}, {
        "content": CHAT_CONTENT, "tool_calls": st.lists(TOOL_CALL, max_size=3), "refusal": TEXT,
        "reasoning_content": TEXT, "function_call": FUNCTION, "name": TEXT,
        "thinking_blocks": st.lists(shaped({"type": st.just("thinking"), "thinking": TEXT, "signature": TEXT}),
                                    max_size=2),
    }),
    shaped({"role": st.just("tool"), "tool_call_id": IDS, "content": CHAT_CONTENT}),
    shaped({"role": st.just("function"), "name": TOOL_NAMES, "content": TEXT}),
    shaped({"role": TEXT}, {"content": CHAT_CONTENT}),
)
CHAT_TOOL = st.one_of(
    shaped({"type": st.just("function"), "function": shaped({"name": TOOL_NAMES}, {
        "description": TEXT, "parameters": ROOT_SCHEMA, "strict": st.booleans()})}),
    shaped({"type": st.just("custom"), "custom": shaped({"name": TOOL_NAMES}, {"description": TEXT})}),
    shaped({"type": TEXT}),
)
TOOL_CHOICE = st.sampled_from(["auto", "none", "required", "any"]) | \
    shaped({"type": st.just("function"), "function": shaped({"name": TOOL_NAMES})}) | \
    shaped({"type": st.just("allowed_tools"), "allowed_tools": shaped({"mode": TEXT, "tools": JSON})})
RESPONSE_FORMAT = st.one_of(
    shaped({"type": st.sampled_from(["text", "json_object"])}),
    shaped({"type": st.just("json_schema"), "json_schema": shaped({"name": TEXT}, {
        "schema": ROOT_SCHEMA, "strict": st.booleans(), "description": TEXT})}),
)
CHAT_MODELS = st.sampled_from(["gpt-test", "claude-sonnet-4-5", "claude-3-5-haiku-20241022", "claude-opus-4-1",
                               "gemini-2.5-flash", "gemini-3-pro-preview"])
CHAT_BODY = shaped({"model": CHAT_MODELS, "messages": st.lists(perturbed(CHAT_MESSAGE), min_size=1, max_size=5)}, {
    "tools": st.lists(perturbed(CHAT_TOOL), max_size=3), "tool_choice": TOOL_CHOICE,
    "parallel_tool_calls": st.booleans(), "stream": st.booleans(),
    "stream_options": shaped({"include_usage": st.booleans()}), "temperature": st.floats(0, 2),
    "top_p": st.floats(0, 1), "top_k": COUNTS, "max_tokens": INTEGERS, "max_completion_tokens": INTEGERS,
    "n": st.integers(0, 3), "stop": TEXT | st.lists(TEXT, max_size=5), "response_format": RESPONSE_FORMAT,
    "reasoning_effort": st.sampled_from(["minimal", "low", "medium", "high", "none", "xhigh"]),
    "user": TEXT, "safety_identifier": TEXT, "metadata": st.dictionaries(TEXT, TEXT, max_size=3),
    "seed": INTEGERS, "logprobs": st.booleans(), "top_logprobs": COUNTS, "logit_bias": JSON_OBJECT,
    "presence_penalty": st.floats(-2, 2), "frequency_penalty": st.floats(-2, 2), "service_tier": TEXT,
    "functions": st.lists(shaped({"name": TOOL_NAMES}, {"parameters": ROOT_SCHEMA}), max_size=2),
    "function_call": st.sampled_from(["auto", "none"]) | shaped({"name": TOOL_NAMES}),
    "modalities": st.lists(st.sampled_from(["text", "audio"]), max_size=2), "audio": JSON_OBJECT,
    "store": st.booleans(), "prompt_cache_key": TEXT, "web_search_options": JSON_OBJECT,
    "prediction": JSON_OBJECT, "verbosity": TEXT, "x-unknown": JSON,
})

# -- Responses and embeddings requests ------------------------------------------------------------

RESPONSES_PART = st.one_of(
    shaped({"type": st.sampled_from(["input_text", "output_text"]), "text": TEXT}),
    shaped({"type": st.just("input_image"), "image_url": IMAGE_URLS}, {"detail": TEXT}),
    shaped({"type": st.just("input_file"), "file_data": IMAGE_URLS}, {"filename": TEXT, "file_id": IDS}),
    shaped({"type": st.just("refusal"), "refusal": TEXT}),
    shaped({"type": TEXT}),
)
RESPONSES_CONTENT = TEXT | st.lists(perturbed(RESPONSES_PART), max_size=3)
RESPONSES_ITEM = st.one_of(
    shaped({"role": st.sampled_from(["user", "system", "developer", "assistant"]), "content": RESPONSES_CONTENT},
           {"type": st.just("message")}),
    shaped({"type": st.just("function_call"), "call_id": IDS, "name": TOOL_NAMES, "arguments": ARGUMENTS}),
    shaped({"type": st.just("function_call_output"), "call_id": IDS, "output": RESPONSES_CONTENT}),
    shaped({"type": st.just("reasoning"), "summary": JSON}),
    shaped({"type": st.sampled_from(["web_search_call", "item_reference", "custom_tool_call", "mcp_call"])}),
)
RESPONSES_TOOL = st.one_of(
    shaped({"type": st.just("function"), "name": TOOL_NAMES}, {
        "parameters": ROOT_SCHEMA, "strict": st.booleans(), "description": TEXT}),
    shaped({"type": st.sampled_from(["web_search", "file_search", "code_interpreter", "custom", "mcp"])}),
)
RESPONSES_BODY = shaped({"model": CHAT_MODELS, "input": TEXT | st.lists(perturbed(RESPONSES_ITEM), max_size=4)}, {
    "instructions": TEXT, "tools": st.lists(perturbed(RESPONSES_TOOL), max_size=3),
    "tool_choice": st.sampled_from(["auto", "none", "required"]) | shaped({"type": st.just("function"),
                                                                          "name": TOOL_NAMES}),
    "max_output_tokens": INTEGERS, "temperature": st.floats(0, 2), "top_p": st.floats(0, 1),
    "reasoning": shaped({}, {"effort": TEXT, "summary": TEXT}), "stream": st.booleans(),
    "text": shaped({}, {"format": RESPONSE_FORMAT | shaped({"type": st.just("json_schema"), "name": TEXT,
                                                            "schema": ROOT_SCHEMA}), "verbosity": TEXT}),
    "previous_response_id": IDS, "conversation": TEXT, "prompt": JSON_OBJECT, "background": st.booleans(),
    "store": st.booleans(), "include": st.lists(TEXT, max_size=2), "metadata": st.dictionaries(TEXT, TEXT),
    "user": TEXT, "parallel_tool_calls": st.booleans(), "truncation": TEXT, "service_tier": TEXT,
})
EMBEDDINGS_BODY = shaped({"model": st.sampled_from(["embed-test", "gpt-test"]), "input": st.one_of(
    TEXT, st.lists(TEXT, max_size=3), st.lists(st.lists(st.integers(0, 100_000), max_size=4), max_size=2))},
    {"encoding_format": st.sampled_from(["float", "base64"]), "dimensions": INTEGERS, "user": TEXT})

# -- upstream answers: Anthropic and Gemini events, OpenAI chunks and completions -------------

ANTHROPIC_USAGE = shaped({"input_tokens": COUNTS, "output_tokens": COUNTS},
                         {"cache_read_input_tokens": COUNTS, "cache_creation_input_tokens": COUNTS})
ANTHROPIC_BLOCK = st.one_of(
    shaped({"type": st.just("text"), "text": TEXT}),
    shaped({"type": st.just("thinking"), "thinking": TEXT}, {"signature": TEXT}),
    shaped({"type": st.just("redacted_thinking"), "data": TEXT}),
    shaped({"type": st.just("tool_use"), "id": IDS, "name": TOOL_NAMES, "input": JSON_OBJECT}),
    shaped({"type": st.sampled_from(["server_tool_use", "web_search_tool_result", "mystery"])}),
)
ANTHROPIC_DELTA = st.one_of(
    shaped({"type": st.just("text_delta"), "text": TEXT}),
    shaped({"type": st.just("thinking_delta"), "thinking": TEXT}),
    shaped({"type": st.just("signature_delta"), "signature": TEXT}),
    shaped({"type": st.just("input_json_delta"), "partial_json": ARGUMENTS}),
    shaped({"type": st.just("citations_delta"), "citation": JSON}),
)
STOP_REASONS = st.sampled_from([None, "end_turn", "tool_use", "max_tokens", "stop_sequence", "refusal", "pause_turn"])


def _event(name: str, fields: dict[str, Strategy[Any]]) -> Strategy[tuple[str | None, Any]]:
    return st.tuples(st.just(name), shaped({"type": st.just(name), **fields}))


ANTHROPIC_EVENT = st.one_of(
    _event("message_start", {"message": shaped({"id": IDS, "type": st.just("message"), "role": st.just("assistant"),
                                                "model": TEXT, "content": st.just([]), "usage": ANTHROPIC_USAGE})}),
    _event("content_block_start", {"index": SMALL_INDEX, "content_block": ANTHROPIC_BLOCK}),
    _event("content_block_delta", {"index": SMALL_INDEX, "delta": ANTHROPIC_DELTA}),
    _event("content_block_stop", {"index": SMALL_INDEX}),
    _event("message_delta", {"delta": shaped({"stop_reason": STOP_REASONS}),
                             "usage": shaped({"output_tokens": COUNTS})}),
    _event("message_stop", {}),
    _event("ping", {}),
    _event("error", {"error": shaped({"type": st.sampled_from(["overloaded_error", "api_error", "x"]),
                                      "message": TEXT})}),
    st.tuples(st.none() | TEXT, JSON),
)
ANTHROPIC_STREAM = st.lists(ANTHROPIC_EVENT, max_size=12)

GEMINI_PART = st.one_of(
    shaped({"text": TEXT}, {"thought": st.booleans(), "thoughtSignature": TEXT}),
    shaped({"functionCall": shaped({"name": TOOL_NAMES, "args": JSON_OBJECT}, {"id": IDS})},
           {"thoughtSignature": TEXT}),
    shaped({"inlineData": shaped({"mimeType": TEXT, "data": TEXT})}),
    shaped({"executableCode": shaped({"language": TEXT, "code": TEXT})}),
)
GEMINI_FINISH = st.sampled_from(["STOP", "MAX_TOKENS", "SAFETY", "RECITATION", "MALFORMED_FUNCTION_CALL", "OTHER"])
GEMINI_CANDIDATE = shaped({"content": shaped({"role": st.just("model"), "parts": st.lists(perturbed(GEMINI_PART),
                                                                                         max_size=3)})},
                          {"finishReason": GEMINI_FINISH, "index": SMALL_INDEX, "safetyRatings": JSON})
GEMINI_USAGE = shaped({"promptTokenCount": COUNTS}, {
    "candidatesTokenCount": COUNTS, "thoughtsTokenCount": COUNTS, "totalTokenCount": COUNTS,
    "cachedContentTokenCount": COUNTS, "toolUsePromptTokenCount": COUNTS})
GEMINI_CHUNK = shaped({"candidates": st.lists(perturbed(GEMINI_CANDIDATE), max_size=2)}, {
    "usageMetadata": GEMINI_USAGE, "responseId": TEXT, "modelVersion": TEXT,
    "promptFeedback": shaped({"blockReason": st.sampled_from(["SAFETY", "OTHER"])}, {"blockReasonMessage": TEXT}),
})
GEMINI_STREAM = st.lists(GEMINI_CHUNK, max_size=8)

FINISH_REASONS = st.sampled_from([None, "stop", "length", "tool_calls", "content_filter", "function_call"])
CHAT_USAGE = st.fixed_dictionaries({"prompt_tokens": COUNTS, "completion_tokens": COUNTS, "total_tokens": COUNTS})


def chat_chunk(wrap: Any) -> Strategy[dict[str, Any]]:
    """`chat.completion.chunk`s; `wrap` is `perturbed` for hostile upstreams, identity for well-formed ones."""
    call = wrap(st.fixed_dictionaries({"index": SMALL_INDEX}, optional={
        "id": IDS, "type": st.just("function"),
        "function": st.fixed_dictionaries({}, optional={"name": TOOL_NAMES, "arguments": TEXT})}))
    delta = wrap(st.fixed_dictionaries({}, optional={
        "role": st.just("assistant"), "content": TEXT | st.none(), "reasoning_content": TEXT,
        "refusal": TEXT | st.none(), "tool_calls": st.lists(call, max_size=2)}))
    choice = wrap(st.fixed_dictionaries({"index": st.integers(0, 1), "delta": delta, "finish_reason": FINISH_REASONS}))
    chunk = wrap(st.fixed_dictionaries({
        "id": st.just("chatcmpl-fuzz"), "object": st.just("chat.completion.chunk"), "created": st.just(1),
        "model": st.just("m"), "choices": st.lists(choice, max_size=2)}, optional={"usage": CHAT_USAGE | st.none()}))
    return chunk


CHAT_STREAM = st.lists(chat_chunk(lambda strategy: strategy), max_size=10)
# Hostile: any field perturbed, and now and then an event whose data is not JSON at all.
HOSTILE_CHAT_STREAM = st.lists(chat_chunk(perturbed) | st.binary(max_size=24), max_size=10)


def chat_completion(wrap: Any) -> Strategy[dict[str, Any]]:
    """Whole `chat.completion` answers; `wrap` as for `chat_chunk`."""
    call = wrap(st.fixed_dictionaries({"id": IDS, "type": st.just("function"), "function": wrap(
        st.fixed_dictionaries({"name": TOOL_NAMES, "arguments": ARGUMENTS}))}))
    message = wrap(st.fixed_dictionaries({"role": st.just("assistant")}, optional={
        "content": TEXT | st.none(), "tool_calls": st.lists(call, max_size=3), "refusal": TEXT | st.none(),
        "reasoning_content": TEXT}))
    choice = wrap(st.fixed_dictionaries({"index": SMALL_INDEX, "finish_reason": FINISH_REASONS,
                                         "message": message}))
    return wrap(st.fixed_dictionaries({
        "id": IDS, "object": st.just("chat.completion"), "created": COUNTS, "model": TEXT,
        "choices": st.lists(choice, max_size=2)}, optional={"usage": CHAT_USAGE}))


CHAT_COMPLETION = chat_completion(perturbed)
CLEAN_CHAT_COMPLETION = chat_completion(lambda strategy: strategy)

# -- SSE byte streams ----------------------------------------------------------------------------

SSE_LINE = st.text(alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=16)
SSE_EVENT = st.tuples(st.none() | SSE_LINE, st.lists(SSE_LINE, min_size=1, max_size=3), st.lists(SSE_LINE, max_size=1))
"""(event name, data lines, comment lines)"""
SSE_STREAM = st.tuples(st.lists(SSE_EVENT, max_size=6), st.sampled_from(["\n", "\r\n", "\r"]), st.booleans())
"""(events, line ending, whether the last event has its closing blank line)"""
CUTS = st.lists(st.integers(min_value=0, max_value=4096), max_size=8)
