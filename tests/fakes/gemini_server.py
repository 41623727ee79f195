"""A fake Google Gemini API (generativelanguage v1beta) for tests: a real aiohttp app.

It serves `POST /v1beta/models/{model}:generateContent` and `:streamGenerateContent`
(and the same under `/v1`)
(`?alt=sse`: `data: {...}\\r\\n\\r\\n` events as Google sends them; without it, one JSON
array), checks the `x-goog-api-key` header (or `?key=`), and validates bodies the way the
real API does: unknown fields (the SDK's own pydantic types, which mirror the API's
protos, plus the Gemini API's narrower Schema: no additionalProperties, $ref, ...),
roles, function responses that answer the function call turn just before them, JSON mode
beside function declarations (refused on Gemini 1.x/2.x, as Google does), and on
Gemini 3 models the thought signatures of the current turn (only signatures this fake
issued, or Google's documented stand-in, pass). Errors come in Google's shape.

Answers come from `app[STATE].queue` (`Script`s: a whole GenerateContentResponse, split
into stream events with text cut across events, function calls whole and usage growing
to its final value; or an HTTP error). With an empty queue the answer is deterministic:
a call of the first declared function (required parameters filled, "test" for strings,
with a thought signature) unless the last turn holds function responses or calling is
off, else the text "Hello from fake Gemini". Every authenticated request is recorded in
`app[STATE].requests`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson
import pydantic
from aiohttp import web
from google.genai import types

DEFAULT_TEXT = "Hello from fake Gemini"
SKIP_SIGNATURE = "skip_thought_signature_validator"
_SCHEMA_FIELDS = frozenset({
    "type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems",
    "properties", "required", "minProperties", "maxProperties", "minLength", "maxLength",
    "pattern", "example", "anyOf", "propertyOrdering", "default", "items", "minimum", "maximum",
})
_BODY_TYPES: dict[str, pydantic.TypeAdapter[Any]] = {
    "contents": pydantic.TypeAdapter(list[types.Content]),
    "systemInstruction": pydantic.TypeAdapter(types.Content),
    "tools": pydantic.TypeAdapter(list[types.Tool]),
    "toolConfig": pydantic.TypeAdapter(types.ToolConfig),
    "generationConfig": pydantic.TypeAdapter(types.GenerationConfig),
    "safetySettings": pydantic.TypeAdapter(list[types.SafetySetting]),
    "cachedContent": pydantic.TypeAdapter(str),
}
_LENIENT_SIGNATURES = re.compile(r"^(models/)?gemini-[12][.-]")
_NO_JSON_WITH_FUNCTIONS = _LENIENT_SIGNATURES
"""Gemini 1.x and 2.x: function calling and a JSON response MIME type exclude each other."""
JSON_WITH_FUNCTIONS_ERROR = "Function calling with a response mime type: 'application/json' is unsupported"


@dataclass
class Script:
    """One scripted answer: a GenerateContentResponse (camelCase) or an HTTP error."""

    response: dict[str, Any] | None = None
    events: int = 3
    """Stream: the most events the response is split into."""
    status: int = 200
    error: dict[str, Any] | None = None
    """The error body (`{"error": {...}}`) answered with `status`."""
    raw: bytes | None = None
    """An error body sent as is instead (a proxy's HTML page, say)."""
    headers: dict[str, str] = field(default_factory=dict)
    cut_after: int | None = None
    """Stream: drop the connection after this many events, without a finish reason."""
    delay_s: float = 0.0
    """Wait before the answer and between stream events."""

    @classmethod
    def reply(cls, *parts: dict[str, Any], finish_reason: str = "STOP",
              usage: dict[str, int] | None = None, **options: Any) -> Script:
        """A one-candidate response made of these Gemini parts (none: no `content` at all, as
        Google answers a MALFORMED_FUNCTION_CALL)."""
        candidate: dict[str, Any] = {"finishReason": finish_reason, "index": 0}
        if parts:
            candidate["content"] = {"parts": list(parts), "role": "model"}
        usage = usage or {"promptTokenCount": 10, "candidatesTokenCount": 5}
        return cls(response={"candidates": [candidate], "usageMetadata": _usage(usage)}, **options)

    @classmethod
    def failure(cls, status: int, google_status: str, message: str, *,
                retry_delay: str | None = None, **options: Any) -> Script:
        details = ([{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry_delay}]
                   if retry_delay else [])
        return cls(status=status, error=google_error_body(status, google_status, message, details), **options)


@dataclass
class RecordedRequest:
    model: str
    method: str
    """generateContent or streamGenerateContent."""
    body: Any
    headers: dict[str, str]
    query: dict[str, str]


@dataclass
class FakeGeminiState:
    api_key: str
    queue: deque[Script] = field(default_factory=deque)
    requests: list[RecordedRequest] = field(default_factory=list)
    signatures: set[bytes] = field(default_factory=set)
    """Every thought signature this fake handed out (decoded); others are 'corrupted'."""
    _counter: itertools.count[int] = field(default_factory=itertools.count)

    def next_id(self) -> str:
        return f"fake-{next(self._counter)}"

    def new_signature(self) -> str:
        # 64 opaque bytes, like Google's, so the base64 text has '+', '/' or '=' in it.
        seed = hashlib.sha256(self.next_id().encode()).digest()
        return base64.b64encode(seed + hashlib.sha256(seed).digest()[:31]).decode()


STATE = web.AppKey("gemini_state", FakeGeminiState)


def create_app(api_key: str = "test-gemini-key") -> web.Application:
    app = web.Application()
    app[STATE] = FakeGeminiState(api_key)
    app.router.add_post("/v1beta/models/{target}", _handle)
    app.router.add_post("/v1/models/{target}", _handle)
    return app


class _BadRequest(Exception):
    pass


def google_error_body(code: int, status: str, message: str,
                      details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = details
    return {"error": error}


def _error(code: int, status: str, message: str, details: list[dict[str, Any]] | None = None) -> web.Response:
    return web.json_response(google_error_body(code, status, message, details), status=code,
                             dumps=lambda value: orjson.dumps(value).decode())


async def _handle(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    model, _, method = request.match_info["target"].partition(":")
    if method not in ("generateContent", "streamGenerateContent"):
        return _error(404, "NOT_FOUND", f"Method {method!r} not found.")
    key = request.headers.get("x-goog-api-key") or request.query.get("key")
    if not key:
        return _error(403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers (callers without "
                      "established identity). Please use API Key or other form of API consumer identity "
                      "to call this API.")
    if key != state.api_key:
        return _error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.",
                      [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                        "domain": "googleapis.com"}])
    raw = await request.read()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    state.requests.append(RecordedRequest(model, method, body, dict(request.headers), dict(request.query)))
    try:
        _validate(body, model, state)
    except _BadRequest as exc:
        return _error(400, "INVALID_ARGUMENT", str(exc))
    script = state.queue.popleft() if state.queue else Script(response=_default_reply(body, state))
    if script.delay_s:
        await asyncio.sleep(script.delay_s)
    if script.status != 200:
        payload = script.raw if script.raw is not None else orjson.dumps(
            script.error or google_error_body(script.status, "UNKNOWN", "scripted"))
        headers = {"Content-Type": "application/json; charset=UTF-8", **script.headers}
        return web.Response(body=payload, status=script.status, headers=headers)
    response = {"modelVersion": model, "responseId": state.next_id(), **(script.response or {})}
    _remember_signatures(response, state)
    if method == "generateContent":
        return web.json_response(response, headers=script.headers, dumps=lambda v: orjson.dumps(v).decode())
    return await _stream(request, split_events(response, script.events), script)


# --- validation -------------------------------------------------------------------------


def _validate(body: Any, model: str, state: FakeGeminiState) -> None:
    if not isinstance(body, dict):
        raise _BadRequest("Invalid JSON payload received. Expected an object.")
    for key, value in body.items():
        adapter = _BODY_TYPES.get(key)
        if adapter is None:
            raise _BadRequest(f'Invalid JSON payload received. Unknown name "{key}": Cannot find field.')
        try:
            adapter.validate_json(orjson.dumps(value))
        except pydantic.ValidationError as exc:
            raise _BadRequest(_describe(key, exc)) from exc
    contents = body.get("contents")
    if not contents:
        raise _BadRequest("* GenerateContentRequest.contents: contents is not specified\n")
    for number, tool in enumerate(body.get("tools", ())):
        for index, declaration in enumerate(tool.get("functionDeclarations", ())):
            _check_schema(declaration.get("parameters"),
                          f"tools[{number}].function_declarations[{index}].parameters")
    _check_schema(body.get("generationConfig", {}).get("responseSchema"), "generation_config.response_schema")
    _check_json_with_functions(body, model)
    _check_turns(contents)
    _check_signatures(contents, model, state)


def _check_json_with_functions(body: dict[str, Any], model: str) -> None:
    """Gemini 1.x/2.x refuse JSON mode beside function declarations (googleapis/python-genai#867);
    Gemini 3 takes both."""
    declares = any(tool.get("functionDeclarations") for tool in body.get("tools", ()))
    mime = body.get("generationConfig", {}).get("responseMimeType")
    if declares and mime == "application/json" and _NO_JSON_WITH_FUNCTIONS.match(model):
        raise _BadRequest(JSON_WITH_FUNCTIONS_ERROR)


def _describe(key: str, exc: pydantic.ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join([key, *(f"[{part}]" if isinstance(part, int) else str(part)
                             for part in error["loc"][:-1])]).replace(".[", "[")
    if error["type"] == "extra_forbidden":
        return (f'Invalid JSON payload received. Unknown name "{error["loc"][-1]}" at \'{where}\': '
                "Cannot find field.")
    return f"Invalid value at '{where}.{error['loc'][-1]}': {error['msg']}"


def _check_schema(schema: Any, where: str) -> None:
    if not isinstance(schema, dict):
        return
    for key in schema:
        if key not in _SCHEMA_FIELDS:
            raise _BadRequest(f'Invalid JSON payload received. Unknown name "{key}" at \'{where}\': '
                              "Cannot find field.")
    for name, value in (schema.get("properties") or {}).items():
        _check_schema(value, f"{where}.properties[{name}].value")
    _check_schema(schema.get("items"), f"{where}.items")
    for index, option in enumerate(schema.get("anyOf") or ()):
        _check_schema(option, f"{where}.any_of[{index}]")


def _check_turns(contents: list[dict[str, Any]]) -> None:
    previous: dict[str, Any] | None = None
    for index, content in enumerate(contents):
        role, parts = content.get("role", "user"), content.get("parts") or []
        if role not in ("user", "model"):
            raise _BadRequest("Please use a valid role: user, model.")
        if not parts:
            raise _BadRequest(f"* GenerateContentRequest.contents[{index}].parts: contents.parts must not "
                              "be empty.\n")
        kinds = {kind for part in parts for kind in ("functionCall", "functionResponse") if kind in part}
        if ("functionCall" in kinds and role != "model") or ("functionResponse" in kinds and role != "user"):
            raise _BadRequest(f"contents[{index}]: function calls belong to model turns and function "
                              "responses to user turns.")
        if "functionResponse" in kinds:
            _check_answers(parts, previous)
        previous = content


def _check_answers(parts: list[dict[str, Any]], previous: dict[str, Any] | None) -> None:
    calls = [part["functionCall"] for part in (previous or {}).get("parts", ()) if "functionCall" in part]
    answers = [part["functionResponse"] for part in parts if "functionResponse" in part]
    if not calls:
        raise _BadRequest("Please ensure that function response turn comes immediately after a function "
                          "call turn.")
    if len(answers) != len(calls):
        raise _BadRequest("Please ensure that the number of function response parts is equal to the number "
                          "of function call parts of the function call turn.")
    for answer in answers:
        if not any(_answers(answer, call) for call in calls):
            raise _BadRequest(f"The function response {answer.get('name')!r} (id {answer.get('id')!r}) does "
                              "not match any function call of the function call turn.")


def _answers(answer: dict[str, Any], call: dict[str, Any]) -> bool:
    if answer.get("id") and call.get("id"):
        return answer["id"] == call["id"] and answer.get("name") == call.get("name")
    return answer.get("name") == call.get("name")


def _check_signatures(contents: list[dict[str, Any]], model: str, state: FakeGeminiState) -> None:
    for index, content in enumerate(contents):
        for part in content.get("parts", ()):
            signature = part.get("thoughtSignature")
            if signature not in (None, SKIP_SIGNATURE) and signature_bytes(signature) not in state.signatures:
                raise _BadRequest(f"Corrupted thought signature in contents[{index}].")
    if _LENIENT_SIGNATURES.match(model):
        return
    start = max((index + 1 for index, content in enumerate(contents) if content.get("role", "user") == "user"
                 and any("functionResponse" not in part for part in content["parts"])), default=0)
    for index, content in enumerate(contents[start:], start):
        calls = [part for part in content["parts"] if "functionCall" in part]
        if calls and "thoughtSignature" not in calls[0]:
            raise _BadRequest(
                f"Function call is missing a thought_signature in functionCall parts. This is required for "
                f"tools to work correctly, and missing thought_signature may lead to degraded model "
                f"performance. Additional data, function call `{calls[0]['functionCall'].get('name')}` , "
                f"position {index + 1}. Please refer to https://ai.google.dev/gemini-api/docs/thought-"
                "signatures for more details.")


def signature_bytes(signature: str) -> bytes:
    """A `bytes` field as the API reads it: standard or URL-safe base64 (the SDK sends the latter)."""
    standard = signature.replace("-", "+").replace("_", "/")
    return base64.b64decode(standard + "=" * (-len(standard) % 4))


def _remember_signatures(response: dict[str, Any], state: FakeGeminiState) -> None:
    for candidate in response.get("candidates") or ():
        for part in (candidate.get("content") or {}).get("parts") or ():
            if part.get("thoughtSignature"):
                state.signatures.add(signature_bytes(part["thoughtSignature"]))


# --- answers ----------------------------------------------------------------------------


def _default_reply(body: dict[str, Any], state: FakeGeminiState) -> dict[str, Any]:
    declarations = [d for tool in body.get("tools", ()) for d in tool.get("functionDeclarations", ())]
    calling = body.get("toolConfig", {}).get("functionCallingConfig", {})
    answered = any("functionResponse" in part for part in body["contents"][-1]["parts"])
    allowed = calling.get("allowedFunctionNames") or [d["name"] for d in declarations]
    if declarations and not answered and str(calling.get("mode", "AUTO")).upper() != "NONE":
        declaration = next(d for d in declarations if d["name"] in allowed)
        part = {"functionCall": {"name": declaration["name"], "args": _sample(declaration.get("parameters"))},
                "thoughtSignature": state.new_signature()}
    else:
        part = {"text": DEFAULT_TEXT}
    prompt_tokens = max(1, len(orjson.dumps(body["contents"])) // 4)
    output_tokens = max(1, len(orjson.dumps(part)) // 4)
    return {
        "candidates": [{"content": {"parts": [part], "role": "model"}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": _usage({"promptTokenCount": prompt_tokens, "candidatesTokenCount": output_tokens}),
    }


def _sample(schema: dict[str, Any] | None) -> Any:
    """A value for a schema: every required property filled, strings with "test"."""
    schema = schema or {}
    if schema.get("enum"):
        return schema["enum"][0]
    kind = str(schema.get("type", "OBJECT")).upper()
    if kind == "OBJECT":
        properties = schema.get("properties") or {}
        required = [name for name in schema.get("required", ()) if name in properties]
        return {name: _sample(properties[name]) for name in required}
    return {"STRING": "test", "INTEGER": 0, "NUMBER": 0, "BOOLEAN": False, "ARRAY": []}.get(kind)


def _usage(counts: dict[str, int]) -> dict[str, int]:
    total = sum(counts.get(name, 0) for name in ("promptTokenCount", "candidatesTokenCount",
                                                  "thoughtsTokenCount", "toolUsePromptTokenCount"))
    return {**counts, "totalTokenCount": counts.get("totalTokenCount", total)}


def split_events(response: dict[str, Any], events: int) -> list[dict[str, Any]]:
    """A whole response as up to `events` stream events, the way Google streams it."""
    candidates = response.get("candidates") or []
    if not candidates or events <= 1:
        return [response]
    shares = [_split_parts((c.get("content") or {}).get("parts") or [], events) for c in candidates]
    usage = response.get("usageMetadata")
    stream = []
    for step in range(events):
        last = step == events - 1
        chunk_candidates = []
        for position, (candidate, share) in enumerate(zip(candidates, shares, strict=True)):
            if not share[step] and not last:
                continue
            piece = {"content": {"parts": share[step], "role": "model"},
                     "index": candidate.get("index", position)}
            if last:  # finishReason, safetyRatings, ... come with the last piece
                piece.update({key: value for key, value in candidate.items()
                              if key not in ("content", "index")})
            chunk_candidates.append(piece)
        if not chunk_candidates:
            continue
        event = {key: value for key, value in response.items() if key not in ("candidates", "usageMetadata")}
        event["candidates"] = chunk_candidates
        if usage:
            event["usageMetadata"] = usage if last else _partial_usage(usage, (step + 1) / events)
        stream.append(event)
    return stream


def _split_parts(parts: list[dict[str, Any]], events: int) -> list[list[dict[str, Any]]]:
    """Parts spread over `events` slices: text cut into pieces, function calls whole."""
    atoms: list[tuple[int, dict[str, Any]]] = []
    for number, part in enumerate(parts):
        text = part.get("text")
        if not text or "functionCall" in part:
            atoms.append((number, part))
            continue
        size = max(1, -(-len(text) // events))
        pieces = [text[start:start + size] for start in range(0, len(text), size)]
        for count, piece in enumerate(pieces):
            atom = {key: value for key, value in part.items() if key != "thoughtSignature"}
            atom["text"] = piece
            if count == len(pieces) - 1 and "thoughtSignature" in part:
                atom["thoughtSignature"] = part["thoughtSignature"]
            atoms.append((number, atom))
    slices: list[list[dict[str, Any]]] = []
    for step in range(events):
        group = atoms[len(atoms) * step // events: len(atoms) * (step + 1) // events]
        merged: list[tuple[int, dict[str, Any]]] = []
        for number, atom in group:
            if merged and merged[-1][0] == number and "text" in atom:
                merged[-1] = (number, {**merged[-1][1], **atom, "text": merged[-1][1]["text"] + atom["text"]})
            else:
                merged.append((number, atom))
        slices.append([atom for _, atom in merged])
    return slices


def _partial_usage(usage: dict[str, int], fraction: float) -> dict[str, int]:
    partial = {key: value for key, value in usage.items()
               if key in ("promptTokenCount", "cachedContentTokenCount")}
    for key in ("candidatesTokenCount", "thoughtsTokenCount"):
        if key in usage:
            partial[key] = int(usage[key] * fraction)
    return _usage(partial)


async def _stream(request: web.Request, events: list[dict[str, Any]], script: Script) -> web.StreamResponse:
    sse = request.query.get("alt") == "sse"
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream" if sse else "application/json; charset=UTF-8", **script.headers})
    await response.prepare(request)
    for number, event in enumerate(events):
        if script.cut_after is not None and number >= script.cut_after:
            assert request.transport is not None
            request.transport.close()
            return response
        if number and script.delay_s:
            await asyncio.sleep(script.delay_s)
        data = orjson.dumps(event)
        if sse:
            await response.write(b"data: " + data + b"\r\n\r\n")
        else:
            await response.write((b"[" if number == 0 else b",\r\n") + data)
    if not sse:
        await response.write(b"]")
    await response.write_eof()
    return response
