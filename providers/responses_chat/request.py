"""A Responses API request, rewritten as a Chat Completions request.

Targets that only speak Chat Completions shapes (Anthropic, Gemini, the mock provider)
serve `POST /v1/responses` through this translation. The conversation in `input` becomes
`messages`: consecutive `function_call` items fold into one assistant message with
`tool_calls`, `function_call_output` items become `tool` messages, and reasoning items
are dropped (only the model that wrote them could read them back).

What Chat Completions cannot express raises `UnsupportedRequest` with a message that says
what to send instead: server-side state (`previous_response_id`, `conversation`, stored
prompts, `background`), OpenAI's built-in tools and the items they produce, file inputs.
Settings that only tune OpenAI's own servers (`store`, `include`, `truncation`,
`service_tier`, `prompt_cache_*`, ...) are dropped.
"""

from __future__ import annotations

from typing import Any

from providers.base import UnsupportedRequest
from providers.shapes import request_guard

TOOL_CHOICE_MODES = frozenset({"auto", "none", "required"})
MESSAGE_ROLES = {"user": "user", "system": "system", "developer": "system", "assistant": "assistant"}

# Request fields copied as they are, by their Chat Completions name.
_RENAMED_FIELDS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "user": "user",
    "metadata": "metadata",
    "max_output_tokens": "max_completion_tokens",
}

# Fields that point at state kept on OpenAI's servers, with what to send instead.
_SERVER_STATE_FIELDS = {
    "previous_response_id": "Lockgate does not store responses, so 'previous_response_id' cannot "
    "be resolved for this model. Send the whole conversation in 'input' instead.",
    "conversation": "Lockgate does not store conversations, so 'conversation' cannot be used "
    "with this model. Send the whole conversation in 'input' instead.",
    "prompt": "Stored prompt templates live on OpenAI's servers and cannot be expanded for "
    "this model. Send the prompt text as 'instructions' and 'input' instead.",
}


@request_guard("the Responses API bridge")
def responses_to_chat_request(body: dict[str, Any]) -> dict[str, Any]:
    """Translate a Responses request body into a Chat Completions request body."""
    _reject_server_state(body)
    chat: dict[str, Any] = {}
    if "model" in body:
        chat["model"] = body["model"]
    chat["messages"] = _messages(body)
    for field, chat_field in _RENAMED_FIELDS.items():
        if body.get(field) is not None:
            chat[chat_field] = body[field]

    tools = _tools(body.get("tools"))
    if tools:
        # Chat Completions refuses tool settings without tools, so they travel only together.
        chat["tools"] = tools
        if body.get("tool_choice") is not None:
            chat["tool_choice"] = _tool_choice(body["tool_choice"])
        if body.get("parallel_tool_calls") is not None:
            chat["parallel_tool_calls"] = body["parallel_tool_calls"]

    effort = _mapping(body.get("reasoning"), "reasoning").get("effort")
    if effort is not None:
        chat["reasoning_effort"] = effort
    chat.update(_text_settings(_mapping(body.get("text"), "text")))

    if body.get("stream") is not None:
        chat["stream"] = body["stream"]
        if body["stream"]:
            chat["stream_options"] = {"include_usage": True}
    return chat


def _reject_server_state(body: dict[str, Any]) -> None:
    for field, message in _SERVER_STATE_FIELDS.items():
        if body.get(field) is not None:
            raise UnsupportedRequest(message, field)
    if body.get("background"):
        raise UnsupportedRequest(
            "Background responses need a stored response, which Lockgate does not keep for this "
            "model. Send the request without 'background' (use stream: true for long answers).",
            "background",
        )


# --- input -> messages --------------------------------------------------------------


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise UnsupportedRequest("'instructions' must be a string.", "instructions")
        if instructions:
            messages.append({"role": "system", "content": instructions})

    raw = body.get("input")
    if isinstance(raw, str):
        messages.append({"role": "user", "content": raw})
    elif isinstance(raw, list):
        for position, item in enumerate(raw):
            _add_item(messages, item, f"input[{position}]")
    elif raw is not None:
        raise UnsupportedRequest("'input' must be a string or a list of input items.", "input")
    if not messages:
        raise UnsupportedRequest("The request has no 'input'; send the conversation in 'input'.", "input")
    return messages


def _add_item(messages: list[dict[str, Any]], item: Any, param: str) -> None:
    if not isinstance(item, dict):
        raise UnsupportedRequest(f"'{param}' must be an object.", param)
    kind = item.get("type") or ("message" if "role" in item else "item_reference")
    if kind == "message":
        messages.append(_message(item, param))
    elif kind == "function_call":
        _add_function_call(messages, item, param)
    elif kind == "function_call_output":
        messages.append(_function_call_output(item, param))
    elif kind == "reasoning":
        return
    elif kind == "item_reference":
        raise UnsupportedRequest(
            f"'{param}' references a stored item by id, but Lockgate does not store items for this "
            "model. Send the item itself instead of an item_reference.",
            param,
        )
    else:
        raise UnsupportedRequest(
            f"Input items of type '{kind}' come from OpenAI's built-in tools and cannot be replayed "
            f"to this model's provider. Remove '{param}' from 'input', or use an OpenAI model.",
            param,
        )


def _message(item: dict[str, Any], param: str) -> dict[str, Any]:
    role = item.get("role")
    if role not in MESSAGE_ROLES:
        raise UnsupportedRequest(
            f"'{param}.role' must be one of user, assistant, system or developer.", f"{param}.role"
        )
    content = item.get("content")
    if role == "assistant":
        return _assistant_message(content, f"{param}.content")
    chat_role = MESSAGE_ROLES[role]
    if isinstance(content, str):
        return {"role": chat_role, "content": content}
    parts = [_input_part(part, f"{param}.content[{i}]")
             for i, part in enumerate(_parts(content, f"{param}.content"))]
    if chat_role == "system" and any(part["type"] != "text" for part in parts):
        raise UnsupportedRequest(
            f"'{param}' is a {role} message with non-text content; send images and audio in a "
            "user message instead.",
            f"{param}.content",
        )
    return {"role": chat_role, "content": parts}


def _assistant_message(content: Any, param: str) -> dict[str, Any]:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    texts: list[str] = []
    refusals: list[str] = []
    for i, part in enumerate(_parts(content, param)):
        kind = part.get("type")
        if kind in ("output_text", "input_text"):
            texts.append(_required(part, "text", f"{param}[{i}]"))
        elif kind == "refusal":
            refusals.append(_required(part, "refusal", f"{param}[{i}]"))
        else:
            raise UnsupportedRequest(
                f"Assistant content of type '{kind}' cannot be sent to this model's provider; "
                "assistant messages may carry output_text and refusal parts only.",
                f"{param}[{i}]",
            )
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts)}
    if refusals:
        message["refusal"] = "".join(refusals)
    return message


def _input_part(part: dict[str, Any], param: str) -> dict[str, Any]:
    kind = part.get("type")
    if kind in ("input_text", "output_text"):
        return {"type": "text", "text": _required(part, "text", param)}
    if kind == "input_image":
        return _image_part(part, param)
    if kind == "input_audio":
        return {"type": "input_audio", "input_audio": _required(part, "input_audio", param)}
    if kind == "input_file":
        raise UnsupportedRequest(
            f"'{param}' is a file input, which this model's provider cannot receive through "
            "Lockgate. Extract the text and send it as input_text, or use an OpenAI model.",
            param,
        )
    raise UnsupportedRequest(
        f"Content parts of type '{kind}' are not supported for this model; send input_text, "
        "input_image or input_audio parts instead.",
        param,
    )


def _image_part(part: dict[str, Any], param: str) -> dict[str, Any]:
    if part.get("file_id"):
        raise UnsupportedRequest(
            f"'{param}' names an image by file_id, which needs OpenAI's file storage. Send the "
            "image as a URL or a base64 data URL in 'image_url' instead.",
            f"{param}.file_id",
        )
    image: dict[str, Any] = {"url": _required(part, "image_url", param)}
    if part.get("detail") is not None:
        image["detail"] = part["detail"]
    return {"type": "image_url", "image_url": image}


def _add_function_call(messages: list[dict[str, Any]], item: dict[str, Any], param: str) -> None:
    call = {
        "id": _required(item, "call_id", param),
        "type": "function",
        "function": {"name": _required(item, "name", param), "arguments": item.get("arguments") or ""},
    }
    previous = messages[-1] if messages else None
    if previous is not None and previous["role"] == "assistant":
        # The calls of one model turn (and the text before them) are one assistant message.
        previous.setdefault("tool_calls", []).append(call)
    else:
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})


def _function_call_output(item: dict[str, Any], param: str) -> dict[str, Any]:
    output = _required(item, "output", param)
    if not isinstance(output, str):
        output = [_tool_output_part(part, f"{param}.output[{i}]")
                  for i, part in enumerate(_parts(output, f"{param}.output"))]
    return {"role": "tool", "tool_call_id": _required(item, "call_id", param), "content": output}


def _tool_output_part(part: dict[str, Any], param: str) -> dict[str, Any]:
    if part.get("type") != "input_text":
        raise UnsupportedRequest(
            f"'{param}' is a tool output of type '{part.get('type')}'; this model's provider takes "
            "text tool outputs only. Return text from the tool, or send the image in a user message.",
            param,
        )
    return {"type": "text", "text": _required(part, "text", param)}


# --- tools and settings -------------------------------------------------------------


def _tools(tools: Any) -> list[dict[str, Any]]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise UnsupportedRequest("'tools' must be a list.", "tools")
    return [_function_tool(tool) for tool in tools]


def _function_tool(tool: Any) -> dict[str, Any]:
    kind = tool.get("type") if isinstance(tool, dict) else None
    if kind != "function":
        raise UnsupportedRequest(
            f"Tools of type '{kind}' are OpenAI built-in tools that this model's provider cannot run. "
            "Use function tools instead, or route the request to an OpenAI model.",
            "tools",
        )
    function: dict[str, Any] = {"name": _required(tool, "name", "tools")}
    for key in ("description", "parameters", "strict"):
        if tool.get(key) is not None:
            function[key] = tool[key]
    return {"type": "function", "function": function}


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, str) and choice in TOOL_CHOICE_MODES:
        return choice
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind == "function":
        return _named_function(choice)
    if kind == "allowed_tools":
        allowed = [_named_function(tool) for tool in choice.get("tools") or []]
        return {"type": "allowed_tools", "allowed_tools": {"mode": choice.get("mode"), "tools": allowed}}
    raise UnsupportedRequest(
        f"tool_choice {choice!r} names an OpenAI built-in tool; use 'auto', 'none', 'required' or "
        "{'type': 'function', 'name': ...} with this model.",
        "tool_choice",
    )


def _named_function(choice: Any) -> dict[str, Any]:
    if not isinstance(choice, dict) or choice.get("type") != "function":
        raise UnsupportedRequest("tool_choice may only name function tools for this model.", "tool_choice")
    return {"type": "function", "function": {"name": _required(choice, "name", "tool_choice")}}


def _text_settings(text: dict[str, Any]) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    if text.get("verbosity") is not None:
        settings["verbosity"] = text["verbosity"]
    fmt = _mapping(text.get("format"), "text.format")
    kind = fmt.get("type")
    if kind == "json_object":
        settings["response_format"] = {"type": "json_object"}
    elif kind == "json_schema":
        schema = {"name": _required(fmt, "name", "text.format"),
                  "schema": _required(fmt, "schema", "text.format")}
        for key in ("description", "strict"):
            if fmt.get(key) is not None:
                schema[key] = fmt[key]
        settings["response_format"] = {"type": "json_schema", "json_schema": schema}
    elif kind not in (None, "text"):
        raise UnsupportedRequest(
            f"text.format type '{kind}' is not supported; use text, json_object or json_schema.",
            "text.format",
        )
    return settings


# --- small helpers ------------------------------------------------------------------


def _mapping(value: Any, param: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UnsupportedRequest(f"'{param}' must be an object.", param)
    return value


def _parts(content: Any, param: str) -> list[dict[str, Any]]:
    if not isinstance(content, list) or not all(isinstance(part, dict) for part in content):
        raise UnsupportedRequest(f"'{param}' must be a string or a list of content parts.", param)
    return content


def _required(container: dict[str, Any], key: str, param: str) -> Any:
    value = container.get(key)
    if value is None:
        raise UnsupportedRequest(f"'{param}.{key}' is required.", f"{param}.{key}")
    return value
