"""Chat Completions `messages` -> Anthropic `system` and alternating `messages`.

System and developer messages become the top-level `system` blocks, in order. Every
other message becomes content blocks of a user or assistant turn:

- text and image parts keep their order (and any `cache_control` they carry; a
  `cache_control` on the message itself lands on its last block);
- assistant `tool_calls` (and a legacy `function_call`) become `tool_use` blocks, with
  arguments parsed from their JSON string;
- `tool` (and legacy `function`) messages become `tool_result` blocks of a user turn.

Consecutive turns of the same role are merged, because Anthropic wants user and
assistant turns to alternate, and inside a user turn the `tool_result` blocks are moved
first, because Anthropic rejects a result that follows text.

An assistant message may carry `thinking_blocks` (as `anthropic_to_chat` returns them);
they are sent back first in the turn, which is what a thinking model needs between a
tool call and its result.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

import orjson

from providers.base import UnsupportedRequest
from providers.gemini.toolcalls import split_tool_call_id

Block = dict[str, Any]
Turn = dict[str, Any]

_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_DATA_URL = re.compile(r"data:(?P<type>[^;,]*)(?P<base64>;base64)?,(?P<data>.*)", re.DOTALL)
_TOOL_ID_UNSAFE = re.compile(r"[^a-zA-Z0-9_-]")
_THINKING_TYPES = frozenset({"thinking", "redacted_thinking"})


def convert_messages(messages: Any) -> tuple[list[Block], list[Turn]]:
    """The `system` blocks and the alternating turns for a Chat Completions `messages` list."""
    if not isinstance(messages, list) or not messages:
        raise UnsupportedRequest("'messages' must be a non-empty array.", param="messages")
    system: list[Block] = []
    turns: list[Turn] = []
    legacy_calls = _LegacyCalls()
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise UnsupportedRequest(f"{where} must be an object.", param=where)
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend(_with_message_cache_control(message, _text_blocks(message, where)))
        elif role == "user":
            _append(turns, "user", _with_message_cache_control(message, _user_blocks(message, where)))
        elif role == "assistant":
            blocks = _assistant_blocks(message, where, legacy_calls, index)
            _append(turns, "assistant", _with_message_cache_control(message, blocks))
        elif role == "tool":
            tool_id = _tool_id(message.get("tool_call_id"), where)
            _append(turns, "user", [_tool_result(tool_id, message, where)])
        elif role == "function":
            tool_id = legacy_calls.take(message.get("name"), where)
            _append(turns, "user", [_tool_result(tool_id, message, where)])
        else:
            raise UnsupportedRequest(f"{where} has an unknown role {role!r}.", param=f"{where}.role")
    for turn in turns:
        if turn["role"] == "user":
            turn["content"].sort(key=lambda block: block["type"] != "tool_result")
    return system, turns


def _append(turns: list[Turn], role: str, blocks: list[Block]) -> None:
    if not blocks:
        return
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"].extend(blocks)
    else:
        turns.append({"role": role, "content": blocks})


def _with_message_cache_control(message: dict[str, Any], blocks: list[Block]) -> list[Block]:
    cache_control = message.get("cache_control")
    if cache_control is not None and blocks:
        blocks[-1]["cache_control"] = cache_control
    return blocks


def _parts(content: Any, where: str) -> list[Any]:
    """A message's content as a list of parts (a plain string is one text part)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return content
    raise UnsupportedRequest(f"{where}.content must be a string or an array of parts.",
                             param=f"{where}.content")


# Each part converter returns the block for a part, or None for a part that says nothing.


def _text_block(part: dict[str, Any], where: str, key: str = "text") -> Block | None:
    text = part.get(key)
    if not isinstance(text, str):
        raise UnsupportedRequest(f"{where} is a {key} part without {key}.", param=where)
    if not text:
        return None  # Anthropic rejects empty text blocks.
    return _keep_cache_control(part, {"type": "text", "text": text})


def _refusal_block(part: dict[str, Any], where: str) -> Block | None:
    return _text_block(part, where, "refusal")


def _convert_parts(content: Any, where: str, allowed: tuple[str, ...]) -> list[Block]:
    blocks: list[Block] = []
    for number, part in enumerate(_parts(content, where)):
        here = f"{where}.content[{number}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in allowed:
            raise UnsupportedRequest(
                f"{here} is a {kind!r} part, which Anthropic cannot take here; "
                f"send only {', '.join(allowed)} parts.", param=here)
        block = _PART_CONVERTERS[kind](part, here)
        if block is not None:
            blocks.append(block)
    return blocks


def _text_blocks(message: dict[str, Any], where: str) -> list[Block]:
    return _convert_parts(message.get("content"), where, ("text",))


def _user_blocks(message: dict[str, Any], where: str) -> list[Block]:
    return _convert_parts(message.get("content"), where, ("text", "image_url", "file"))


def _image_block(part: dict[str, Any], where: str) -> Block | None:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str):
        raise UnsupportedRequest(f"{where} is an image_url part without a URL.", param=where)
    if url.startswith(("http://", "https://")):
        source: Block = {"type": "url", "url": url}
    else:
        media_type, data = _data_url(url, where)
        media_type = "image/jpeg" if media_type == "image/jpg" else media_type
        if media_type not in _IMAGE_TYPES:
            raise UnsupportedRequest(
                f"{where} is a {media_type or 'untyped'} image; Anthropic takes JPEG, PNG, GIF "
                "and WebP images.", param=where)
        source = {"type": "base64", "media_type": media_type, "data": data}
    return _keep_cache_control(part, {"type": "image", "source": source})


def _file_block(part: dict[str, Any], where: str) -> Block | None:
    file = part.get("file") if isinstance(part.get("file"), dict) else {}
    data = file.get("file_data")
    if not isinstance(data, str):
        raise UnsupportedRequest(
            f"{where} refers to an uploaded file; Anthropic cannot read OpenAI file ids, so send "
            "the file inline as 'file_data' (a base64 data: URL).", param=where)
    media_type, payload = _data_url(data, where) if data.startswith("data:") else ("application/pdf", data)
    if media_type == "application/pdf":
        source: Block = {"type": "base64", "media_type": media_type, "data": payload}
    elif media_type == "text/plain":
        source = {"type": "text", "media_type": media_type, "data": _decode_text(payload, where)}
    else:
        raise UnsupportedRequest(
            f"{where} is a {media_type} file; Anthropic documents take PDF or plain text.", param=where)
    block: Block = {"type": "document", "source": source}
    if isinstance(file.get("filename"), str) and file["filename"]:
        block["title"] = file["filename"]
    return _keep_cache_control(part, block)


def _keep_cache_control(part: dict[str, Any], block: Block) -> Block:
    if part.get("cache_control") is not None:
        block["cache_control"] = part["cache_control"]
    return block


def _data_url(url: str, where: str) -> tuple[str, str]:
    found = _DATA_URL.fullmatch(url)
    if found is None or not found.group("base64"):
        raise UnsupportedRequest(f"{where} must be an http(s) URL or a base64 data: URL.", param=where)
    return found.group("type").lower(), found.group("data")


def _decode_text(payload: str, where: str) -> str:
    try:
        return base64.b64decode(payload, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise UnsupportedRequest(f"{where} is not base64-encoded UTF-8 text.", param=where) from exc


_PART_CONVERTERS = {
    "text": _text_block,
    "refusal": _refusal_block,
    "image_url": _image_block,
    "file": _file_block,
}


def _assistant_blocks(message: dict[str, Any], where: str, legacy_calls: _LegacyCalls,
                      index: int) -> list[Block]:
    if message.get("audio") is not None:
        raise UnsupportedRequest(f"{where} carries audio, which Anthropic cannot take; send its "
                                 "transcript as text.", param=f"{where}.audio")
    blocks = _thinking_blocks(message, where)
    blocks += _convert_parts(message.get("content"), where, ("text", "refusal"))
    if not blocks and isinstance(message.get("refusal"), str) and message["refusal"]:
        blocks.append({"type": "text", "text": message["refusal"]})
    for number, call in enumerate(message.get("tool_calls") or []):
        here = f"{where}.tool_calls[{number}]"
        if not isinstance(call, dict) or call.get("type", "function") != "function":
            raise UnsupportedRequest(f"{here} is not a function call; Anthropic only has function "
                                     "tools.", param=here)
        blocks.append(_tool_use(_tool_id(call.get("id"), here), call.get("function"), here))
    if message.get("function_call") is not None:
        here = f"{where}.function_call"
        blocks.append(_tool_use(legacy_calls.open(index, message["function_call"]), message["function_call"],
                                here))
    return blocks


def _thinking_blocks(message: dict[str, Any], where: str) -> list[Block]:
    blocks = message.get("thinking_blocks") or []
    if not isinstance(blocks, list) or not all(
        isinstance(block, dict) and block.get("type") in _THINKING_TYPES for block in blocks
    ):
        raise UnsupportedRequest(f"{where}.thinking_blocks must be the thinking blocks a previous "
                                 "answer returned, unchanged.", param=f"{where}.thinking_blocks")
    # A streamed answer numbers its blocks (`index`) for OpenAI's accumulator; Anthropic wants them bare.
    return [{key: value for key, value in block.items() if key != "index"} for block in blocks]


def _tool_use(tool_id: str, function: Any, where: str) -> Block:
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise UnsupportedRequest(f"{where} needs a function name.", param=where)
    arguments = function.get("arguments") or "{}"
    try:
        # OpenAI sends arguments as a JSON string; some clients echo them back already parsed.
        parsed = orjson.loads(arguments) if isinstance(arguments, str) else arguments
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise UnsupportedRequest(
            f"{where}.arguments is not a JSON object; Anthropic needs tool input as an object, so "
            "send the arguments the model returned, unchanged.", param=f"{where}.arguments")
    return {"type": "tool_use", "id": tool_id, "name": function["name"], "input": parsed}


def _tool_result(tool_id: str, message: dict[str, Any], where: str) -> Block:
    block: Block = {"type": "tool_result", "tool_use_id": tool_id}
    content = message.get("content")
    if isinstance(content, str):
        if content:
            block["content"] = content
    elif content is not None:
        parts = _convert_parts(content, where, ("text", "image_url"))
        if parts:
            block["content"] = parts
    return _keep_cache_control(message, block)


def _tool_id(value: Any, where: str) -> str:
    """A tool call id as Anthropic accepts it (letters, digits, `_` and `-`).

    An id made by Gemini carries its thought signature (`<call id>__gts_<signature>`),
    which only Gemini needs; it is cut off so that the ids of a conversation that began
    on Gemini stay short, and equal in the tool_use and in its tool_result.
    """
    if not isinstance(value, str) or not value:
        raise UnsupportedRequest(f"{where} needs a tool call id.", param=where)
    # An id that is all signature keeps it rather than become empty.
    return _TOOL_ID_UNSAFE.sub("_", split_tool_call_id(value)[0] or value)


class _LegacyCalls:
    """Ids for legacy `function_call`s, which have none, so their results can refer to them."""

    def __init__(self) -> None:
        self._open: list[tuple[str, str]] = []

    def open(self, index: int, function_call: Any) -> str:
        name = function_call.get("name") if isinstance(function_call, dict) else None
        tool_id = f"call_legacy_{index}"
        self._open.append((str(name), tool_id))
        return tool_id

    def take(self, name: Any, where: str) -> str:
        for position in range(len(self._open) - 1, -1, -1):
            if self._open[position][0] == name:
                return self._open.pop(position)[1]
        raise UnsupportedRequest(f"{where} answers a function call {name!r} that no earlier assistant "
                                 "message made.", param=where)
