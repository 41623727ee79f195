"""OpenAI Chat Completions request -> Gemini `generateContent` request body.

The conversation becomes `contents` (roles `user` and `model`, consecutive turns of one
role merged) plus a `systemInstruction` gathered from every system and developer
message. Tool calls become `functionCall` parts carrying their call id and the thought
signature recovered from the tool call id (see `providers.gemini.toolcalls`); tool
results become `functionResponse` parts named after the call they answer. Everything
else in the request (tools, tool_choice, sampling, reasoning effort) is
`providers.gemini.options`' job, and `response_format` `providers.gemini.output`'s (an
instruction appended to `systemInstruction` where Gemini refuses JSON mode beside
functions). The model goes in the URL, not in the body.
"""

from __future__ import annotations

import mimetypes
import re
from typing import Any

import orjson

from providers.base import UnsupportedRequest
from providers.gemini.options import generation_config, thinks_in_levels, tool_config, tools
from providers.gemini.output import output_format
from providers.gemini.toolcalls import SKIP_SIGNATURE, split_tool_call_id
from providers.shapes import request_guard

Part = dict[str, Any]
Content = dict[str, Any]

_DATA_URL = re.compile(r"data:(?P<mime>[^;,]+)(?:;[^,;]+)*;base64,(?P<data>.*)", re.DOTALL)
_URL_SCHEMES = ("https://", "http://", "gs://")


@request_guard("Gemini")
def chat_to_gemini(body: dict[str, Any], model: str) -> dict[str, Any]:
    """The `generateContent` / `streamGenerateContent` body for a Chat Completions request."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise UnsupportedRequest("messages must be a list", "messages")
    conversation = _Conversation()
    for index, message in enumerate(messages):
        conversation.add(message, f"messages[{index}]")
    if not conversation.contents:
        raise UnsupportedRequest("Gemini needs at least one user or assistant message", "messages")
    if thinks_in_levels(model):
        _sign_current_turn(conversation.contents)

    request: dict[str, Any] = {"contents": conversation.contents}
    declared = tools(body)
    output = output_format(body.get("response_format"), model, functions=bool(declared))
    system = conversation.system
    if output.instruction:
        # Last, so it reads as the final word on the answer's shape after the client's own.
        system = [*system, {"text": output.instruction}]
    if system:
        request["systemInstruction"] = {"parts": system}
    if declared:
        request["tools"] = declared
        choice = tool_config(body)
        if choice:
            request["toolConfig"] = choice
    config = {**generation_config(body, model), **output.config}
    if config:
        request["generationConfig"] = config
    return request


class _Conversation:
    """Builds `contents` message by message, remembering which tool call has which name."""

    def __init__(self) -> None:
        self.system: list[Part] = []
        self.contents: list[Content] = []
        self.call_names: dict[str, str] = {}

    def add(self, message: Any, where: str) -> None:
        if not isinstance(message, dict):
            raise UnsupportedRequest("each message must be an object", where)
        match message.get("role"):
            case "system" | "developer":
                self.system.extend({"text": text} for text in _texts(message.get("content"), where) if text)
            case "user":
                self._user(message, where)
            case "assistant":
                self._assistant(message, where)
            case "tool":
                self._tool(message, where)
            case "function":
                self._function(message, where)
            case role:
                raise UnsupportedRequest(f"Gemini cannot take a message with role {role!r}", f"{where}.role")

    def _user(self, message: dict[str, Any], where: str) -> None:
        content = message.get("content")
        if isinstance(content, list):
            parts = [_user_part(part, f"{where}.content[{index}]") for index, part in enumerate(content)]
        else:
            parts = [{"text": text} for text in _texts(content, where)]
        self._append("user", parts)

    def _assistant(self, message: dict[str, Any], where: str) -> None:
        parts: list[Part] = [{"text": text} for text in _texts(message.get("content"), where) if text]
        for index, call in enumerate(message.get("tool_calls") or ()):
            parts.append(self._function_call(call, f"{where}.tool_calls[{index}]"))
        legacy = message.get("function_call")
        if legacy:
            parts.append({"functionCall": {"name": legacy.get("name", ""),
                                           "args": _arguments(legacy.get("arguments"),
                                                              f"{where}.function_call.arguments")}})
        self._append("model", parts)

    def _function_call(self, call: Any, where: str) -> Part:
        if not isinstance(call, dict) or call.get("type", "function") != "function":
            raise UnsupportedRequest("Gemini takes only function tool calls", where)
        function = call.get("function") or {}
        name, tool_call_id = function.get("name", ""), str(call.get("id", ""))
        self.call_names[tool_call_id] = name
        call_id, signature = split_tool_call_id(tool_call_id)
        function_call: dict[str, Any] = {"name": name,
                                         "args": _arguments(function.get("arguments"),
                                                            f"{where}.function.arguments")}
        if call_id:
            function_call["id"] = call_id
        part: Part = {"functionCall": function_call}
        if signature:
            part["thoughtSignature"] = signature
        return part

    def _tool(self, message: dict[str, Any], where: str) -> None:
        tool_call_id = str(message.get("tool_call_id", ""))
        name = self.call_names.get(tool_call_id)
        if name is None:
            raise UnsupportedRequest(f"the tool result {tool_call_id!r} answers no earlier assistant "
                                     "tool call", f"{where}.tool_call_id")
        response: dict[str, Any] = {"name": name, "response": _result(message.get("content"), where)}
        call_id, _ = split_tool_call_id(tool_call_id)
        if call_id:
            response = {"id": call_id, **response}
        self._append("user", [{"functionResponse": response}])

    def _function(self, message: dict[str, Any], where: str) -> None:
        """The legacy `function` role: a result matched by name alone."""
        response = {"name": message.get("name", ""), "response": _result(message.get("content"), where)}
        self._append("user", [{"functionResponse": response}])

    def _append(self, role: str, parts: list[Part]) -> None:
        parts = [part for part in parts if part != {"text": ""}]
        if not parts:
            return
        if self.contents and self.contents[-1]["role"] == role:
            self.contents[-1]["parts"].extend(parts)
        else:
            self.contents.append({"role": role, "parts": parts})


def _texts(content: Any, where: str) -> list[str]:
    """The text of a string or a list of text (or refusal) parts."""
    if content is None:
        return []
    if isinstance(content, str):
        return [content]
    if not isinstance(content, list):
        raise UnsupportedRequest("message content must be a string or a list of parts", f"{where}.content")
    texts = []
    for index, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in ("text", "refusal"):
            raise UnsupportedRequest(f"this message can only hold text, not {kind!r} parts",
                                     f"{where}.content[{index}]")
        texts.append(part.get(kind) or "")
    return texts


def _user_part(part: Any, where: str) -> Part:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "text":
        return {"text": part.get("text") or ""}
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        return _media(str(url or ""), "image/jpeg", where)
    if kind == "input_audio":
        audio = part.get("input_audio") or {}
        mime = f"audio/{audio.get('format', 'wav')}"
        return {"inlineData": {"mimeType": mime, "data": audio.get("data", "")}}
    if kind == "file":
        return _file(part.get("file") or {}, where)
    raise UnsupportedRequest(f"Gemini cannot take {kind!r} content parts", where)


def _media(url: str, fallback_mime: str | None, where: str) -> Part:
    """A data: URL inline, a remote URL by reference (its MIME type guessed from the path)."""
    inline = _DATA_URL.match(url)
    if inline:
        return {"inlineData": {"mimeType": inline["mime"], "data": inline["data"]}}
    if url.startswith(_URL_SCHEMES):
        guessed = mimetypes.guess_type(url.split("?", 1)[0])[0] or fallback_mime
        file_data = {"mimeType": guessed, "fileUri": url} if guessed else {"fileUri": url}
        return {"fileData": file_data}
    raise UnsupportedRequest("a media URL must be a base64 data: URL or an http(s) URL", where)


def _file(file: dict[str, Any], where: str) -> Part:
    data = file.get("file_data")
    if not data:
        raise UnsupportedRequest("Gemini cannot read OpenAI file ids; send the file as file_data", where)
    if data.startswith("data:"):
        return _media(data, None, where)
    mime = mimetypes.guess_type(file.get("filename") or "")[0] or "application/octet-stream"
    return {"inlineData": {"mimeType": mime, "data": data}}


def _arguments(arguments: Any, where: str) -> dict[str, Any]:
    if arguments is None or arguments == "":
        return {}
    try:
        parsed = orjson.loads(arguments) if isinstance(arguments, str | bytes) else arguments
    except orjson.JSONDecodeError as exc:
        raise UnsupportedRequest(f"tool call arguments are not valid JSON ({exc})", where) from exc
    if not isinstance(parsed, dict):
        raise UnsupportedRequest("tool call arguments must be a JSON object", where)
    return parsed


def _result(content: Any, where: str) -> dict[str, Any]:
    """A tool's output as Gemini's response object: `{"result": <JSON value or text>}`."""
    text = "".join(_texts(content, where))
    try:
        return {"result": orjson.loads(text)}
    except orjson.JSONDecodeError:
        return {"result": text}


def _sign_current_turn(contents: list[Content]) -> None:
    """Give Google's stand-in signature to unsigned calls Gemini 3 will validate.

    Gemini 3 checks the first function call of every model step since the last user
    message that is not only function responses; calls it did not make itself (another
    provider's, a hand-built history) have no signature to send back.
    """
    start = 0
    for index, content in enumerate(contents):
        if content["role"] == "user" and any("functionResponse" not in part for part in content["parts"]):
            start = index + 1
    for content in contents[start:]:
        calls = [part for part in content["parts"] if "functionCall" in part]
        if content["role"] == "model" and calls and "thoughtSignature" not in calls[0]:
            calls[0]["thoughtSignature"] = SKIP_SIGNATURE
