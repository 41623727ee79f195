"""Chat Completions tools and tool choice -> Anthropic `tools` and `tool_choice`.

Function tools become client tools (`name`, `description`, `input_schema`, and `strict`
when asked for). The legacy `functions` / `function_call` fields map the same way; a
legacy client reads at most one call back, so parallel tool use is turned off for it.
"""

from __future__ import annotations

from typing import Any

from providers.base import UnsupportedRequest

_EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}
_NAMED_CHOICES = {"auto": {"type": "auto"}, "none": {"type": "none"}, "required": {"type": "any"}}


def convert_tools(body: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """`tools` and `tool_choice` for the Anthropic request (empty list and None when absent)."""
    if body.get("tools") and body.get("functions"):
        raise UnsupportedRequest("Send either 'tools' or the legacy 'functions', not both.",
                                 param="functions")
    legacy = bool(body.get("functions"))
    if legacy:
        tools = [_tool(function, f"functions[{n}]") for n, function in enumerate(body["functions"])]
        choice = _choice(body.get("function_call"), "function_call")
    else:
        tools = [_tool(_function_of(tool, f"tools[{n}]"), f"tools[{n}]", tool)
                 for n, tool in enumerate(body.get("tools") or [])]
        choice = _choice(body.get("tool_choice"), "tool_choice")
    if not tools:
        return [], None
    if legacy or body.get("parallel_tool_calls") is False:
        choice = dict(choice or {"type": "auto"})
        if choice["type"] != "none":
            choice["disable_parallel_tool_use"] = True
    return tools, choice


def _function_of(tool: Any, where: str) -> dict[str, Any]:
    kind = tool.get("type") if isinstance(tool, dict) else None
    if kind != "function" or not isinstance(tool.get("function"), dict):
        raise UnsupportedRequest(
            f"{where} is a {kind!r} tool; Anthropic takes function tools only.", param=where)
    return tool["function"]


def _tool(function: Any, where: str, wrapper: dict[str, Any] | None = None) -> dict[str, Any]:
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise UnsupportedRequest(f"{where} needs a function name.", param=where)
    schema = function.get("parameters")
    if schema is not None and not isinstance(schema, dict):
        raise UnsupportedRequest(f"{where}.parameters must be a JSON schema object.", param=where)
    tool: dict[str, Any] = {"name": function["name"]}
    if function.get("description"):
        tool["description"] = function["description"]
    # OpenAI lets a tool without parameters omit the schema; Anthropic requires an object schema.
    tool["input_schema"] = schema if schema and "type" in schema else {**_EMPTY_SCHEMA, **(schema or {})}
    if function.get("strict") is True:
        tool["strict"] = True
    cache_control = (wrapper or function).get("cache_control")
    if cache_control is not None:
        tool["cache_control"] = cache_control
    return tool


def _choice(value: Any, param: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, str):
        if value not in _NAMED_CHOICES:
            raise UnsupportedRequest(f"'{param}' must be auto, none, required or a named function.",
                                     param=param)
        return dict(_NAMED_CHOICES[value])
    if isinstance(value, dict):
        # Chat Completions names the function as {"type": "function", "function": {"name"}};
        # the legacy field as {"name"}.
        function = value.get("function") if value.get("type") == "function" else value
        name = function.get("name") if isinstance(function, dict) else None
        if isinstance(name, str) and (value.get("type") in ("function", None)):
            return {"type": "tool", "name": name}
        raise UnsupportedRequest(
            f"'{param}' of type {value.get('type')!r} has no Anthropic equivalent; use auto, none, "
            "required or a named function.", param=param)
    raise UnsupportedRequest(f"'{param}' must be a string or an object.", param=param)
