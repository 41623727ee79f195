"""Chat Completions tools and tool choice -> Anthropic `tools` and `tool_choice`.

Function tools become client tools (`name`, `description`, `input_schema`, and `strict`
when asked for). The legacy `functions` / `function_call` fields map the same way; a
legacy client reads at most one call back, so parallel tool use is turned off for it.

A request without tools whose history still holds tool calls (an Agents SDK handoff to an
agent without tools) gets the tools of those calls declared and `tool_choice` none
(`history_tools`): Anthropic has refused `tool_use` / `tool_result` blocks in a request
that defines no tools (BerriAI/litellm#4689).
"""

from __future__ import annotations

import re
from typing import Any

from providers.base import UnsupportedRequest

_EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}
_NAMED_CHOICES = {"auto": {"type": "auto"}, "none": {"type": "none"}, "required": {"type": "any"}}
# Names Anthropic accepts for a tool; a tool_use name outside this cannot be declared.
_TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,128}")
_HISTORY_DESCRIPTION = ("Declared only because earlier turns of this conversation used it; it is not "
                        "available now.")
PLACEHOLDER_TOOL = "no_tools_available"
"""Declared when the history has tool blocks but no tool name that can be declared."""
_PLACEHOLDER_DESCRIPTION = ("Placeholder declared only because earlier turns of this conversation hold "
                            "tool results; no tool is available now.")


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


def history_tools(turns: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """`tools` and `tool_choice` for translated `turns` when the client declared no tools.

    Nothing (`[]`, None) unless the turns hold `tool_use` or `tool_result` blocks. Then each
    tool name used by a `tool_use` block is declared once, with a schema that takes any
    input, and `tool_choice` is none so the model cannot call them (the client could not
    run such a call). With no name to declare (results whose calls were cut from the
    history), one placeholder tool keeps `tools` non-empty.
    """
    names: list[str] = []
    uses_tools = False
    for turn in turns:
        for block in turn.get("content") or []:
            kind = block.get("type") if isinstance(block, dict) else None
            if kind not in ("tool_use", "tool_result"):
                continue
            uses_tools = True
            name = block.get("name")
            if kind == "tool_use" and isinstance(name, str) and _TOOL_NAME.fullmatch(name) and name not in names:
                names.append(name)
    if not uses_tools:
        return [], None
    declared = [(name, _HISTORY_DESCRIPTION) for name in names] or [(PLACEHOLDER_TOOL, _PLACEHOLDER_DESCRIPTION)]
    tools = [{"name": name, "description": description, "input_schema": {"type": "object"}}
             for name, description in declared]
    return tools, {"type": "none"}
