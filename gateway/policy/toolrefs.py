"""Which tools a request declares, and which tool a returned call refers to.

Every place a tool can hide is read here, so the rules see one `ToolRef` per tool:
Chat Completions `tools` (function and custom), its `web_search_options` (the hosted
web search, named `web_search`), the legacy `functions` field, a
`tool_choice` / `function_call` that forces a tool, Responses `tools` (function,
custom, namespaced functions, MCP servers, built-in tools by their `type`), and the
call items the model returns. An entry that cannot be read becomes a ToolRef with an
empty name, which every tool list rejects (fail closed).

Built-in tools are named by type. Versions of one tool share a family name, so
`web_search` in a list covers `web_search_preview_2025_03_11`. MCP servers are
`mcp:<server_label>`, with `mcp` covering them all; a namespaced function is
`<namespace>.<name>`.

A built-in call the client runs (local shell, shell, computer, apply_patch) has as its
arguments what it asks the client to do, so approvers, conditions and the approval's
digest all see the command; hosted built-in calls ran at the provider and have none.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from gateway.policy.names import ToolRef

_FAMILIES: dict[str, tuple[str, ...]] = {
    "web_search": ("web_search", "web_search_2025_08_26", "web_search_preview",
                   "web_search_preview_2025_03_11"),
    "computer": ("computer", "computer_use", "computer_use_preview"),
}
_FAMILY_OF = {variant: family for family, variants in _FAMILIES.items() for variant in variants}

# Responses output items that are tool calls, with the built-in tool they belong to
# (function, custom and MCP calls are named by their own fields).
_BUILTIN_CALL_ITEMS: dict[str, str] = {
    "web_search_call": "web_search",
    "file_search_call": "file_search",
    "code_interpreter_call": "code_interpreter",
    "image_generation_call": "image_generation",
    "computer_call": "computer",
    "local_shell_call": "local_shell",
    "shell_call": "shell",
    "apply_patch_call": "apply_patch",
    "tool_search_call": "tool_search",
    "program": "programmatic_tool_calling",
}
# The fields of a client-run built-in call item that say what the client is to do
# (computer calls carry one `action` or, batched, `actions`). Hosted tools' items carry
# results of what already ran at the provider, not a request, so they are not listed.
_CLIENT_RUN_PAYLOAD: dict[str, tuple[str, ...]] = {
    "local_shell_call": ("action",),
    "shell_call": ("action",),
    "computer_call": ("action", "actions"),
    "apply_patch_call": ("operation",),
}
NAMED_CALL_ITEMS = frozenset({"function_call", "custom_tool_call", "mcp_call", "mcp_approval_request"})
CALL_ITEM_TYPES = NAMED_CALL_ITEMS | _BUILTIN_CALL_ITEMS.keys()

UNREADABLE = ToolRef("")
_UNREADABLE_ENTRY = [UNREADABLE]


@dataclass(frozen=True, slots=True)
class DeclaredTool:
    """A tool named by the request, and where: `field[index]` (inner: inside a namespace)."""

    tool: ToolRef
    field: str
    index: int = -1
    inner: int = -1


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def builtin_ref(tool_type: str) -> ToolRef:
    family = _FAMILY_OF.get(tool_type)
    return ToolRef(tool_type, (family,)) if family and family != tool_type else ToolRef(tool_type)


def _named(name: Any, namespace: Any = None) -> ToolRef:
    name = _text(name)
    if not name:
        return UNREADABLE
    if isinstance(namespace, str) and namespace:
        return ToolRef(f"{namespace}.{name}", (namespace,), (name,))
    return ToolRef(name)


def _mcp(server_label: Any, tool_name: Any = None) -> ToolRef:
    label = _text(server_label)
    if not label:
        return UNREADABLE
    related = (tool_name,) if isinstance(tool_name, str) and tool_name else ()
    return ToolRef(f"mcp:{label}", ("mcp",), related)


def _mcp_server(entry: dict) -> ToolRef:
    """A declared MCP server, with the tools it may call (`allowed_tools`) for deny-lists.

    The provider runs the server's tools itself, before the gateway sees the calls, so a
    deny-list must judge them here: a server that may call any of its tools is open-ended.
    """
    server = _mcp(entry.get("server_label"))
    allowed = entry.get("allowed_tools")
    if isinstance(allowed, dict):
        allowed = allowed.get("tool_names")  # the filter form; `read_only` alone names no tool
    if allowed is None:
        return ToolRef(server.name, server.groups, open_ended=server.readable)
    if not isinstance(allowed, list) or not all(isinstance(name, str) and name for name in allowed):
        return UNREADABLE
    return ToolRef(server.name, server.groups, tuple(allowed)) if server.readable else UNREADABLE


def _chat_tool(entry: Any) -> ToolRef:
    if not isinstance(entry, dict) or not isinstance(entry.get("type"), str):
        return UNREADABLE
    kind = entry["type"]
    if kind in ("function", "custom"):
        spec = entry.get(kind)
        return _named(spec.get("name")) if isinstance(spec, dict) else UNREADABLE
    return builtin_ref(kind)


def _responses_tool(entry: Any) -> list[ToolRef]:
    if not isinstance(entry, dict) or not isinstance(entry.get("type"), str):
        return _UNREADABLE_ENTRY
    kind = entry["type"]
    if kind in ("function", "custom"):
        return [_named(entry.get("name"))]
    if kind == "mcp":
        return [_mcp_server(entry)]
    if kind == "namespace":
        inner = entry.get("tools")
        if not isinstance(inner, list) or not _text(entry.get("name")):
            return _UNREADABLE_ENTRY
        return [
            _named(tool.get("name"), entry["name"]) if isinstance(tool, dict) else UNREADABLE
            for tool in inner
        ]
    return [builtin_ref(kind)]


def _forced_chat(choice: Any) -> ToolRef | None:
    if not isinstance(choice, dict):
        return None  # "none" | "auto" | "required": no particular tool
    kind = choice.get("type")
    if kind == "allowed_tools":
        return None
    if kind in ("function", "custom"):
        spec = choice.get(kind)
        return _named(spec.get("name")) if isinstance(spec, dict) else UNREADABLE
    return UNREADABLE


def _forced_responses(choice: Any) -> ToolRef | None:
    if not isinstance(choice, dict):
        return None
    kind = choice.get("type")
    if kind == "allowed_tools":
        return None
    if kind in ("function", "custom"):
        return _named(choice.get("name"))
    if kind == "mcp":
        return _mcp(choice.get("server_label"), choice.get("name"))
    return builtin_ref(kind) if isinstance(kind, str) else UNREADABLE


def declared_tools(body: dict, api: str) -> list[DeclaredTool]:
    """Every tool the request names, in body order; unreadable entries included."""
    found: list[DeclaredTool] = []
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        found.append(DeclaredTool(UNREADABLE, "tools"))
    for index, entry in enumerate(tools if isinstance(tools, list) else ()):
        if api == "responses":
            refs = _responses_tool(entry)
            nested = refs is not _UNREADABLE_ENTRY and entry.get("type") == "namespace"
            found.extend(DeclaredTool(ref, "tools", index, inner if nested else -1)
                         for inner, ref in enumerate(refs))
        else:
            found.append(DeclaredTool(_chat_tool(entry), "tools", index))
    if api == "chat":
        functions = body.get("functions")
        if functions is not None and not isinstance(functions, list):
            found.append(DeclaredTool(UNREADABLE, "functions"))
        for index, entry in enumerate(functions if isinstance(functions, list) else ()):
            name = entry.get("name") if isinstance(entry, dict) else None
            found.append(DeclaredTool(_named(name), "functions", index))
        legacy = body.get("function_call")
        if isinstance(legacy, dict):
            found.append(DeclaredTool(_named(legacy.get("name")), "function_call"))
        if body.get("web_search_options") is not None:
            # Chat's hosted web search is turned on by this field, not declared in `tools`.
            found.append(DeclaredTool(builtin_ref("web_search"), "web_search_options"))
    forced = (_forced_responses if api == "responses" else _forced_chat)(body.get("tool_choice"))
    if forced is not None:
        found.append(DeclaredTool(forced, "tool_choice"))
    return found


def strip_tools(body: dict, removed: list[DeclaredTool]) -> dict:
    """A copy of `body` without the `removed` tools (the caller's body is not touched).

    A forcing `tool_choice` / `function_call` that is removed falls back to the
    default; a list left empty is dropped with the settings that need it, because
    OpenAI rejects an empty `tools` array and `parallel_tool_calls` without tools.
    """
    result = dict(body)
    for field in ("tools", "functions"):
        drop = {(entry.index, entry.inner) for entry in removed if entry.field == field}
        if not drop or not isinstance(body.get(field), list):
            continue
        kept = []
        for index, entry in enumerate(body[field]):
            if (index, -1) in drop:
                continue
            inner = [i for i, inner_index in drop if i == index and inner_index >= 0]
            if inner and isinstance(entry, dict):
                tools = [tool for position, tool in enumerate(entry.get("tools") or [])
                         if (index, position) not in drop]
                if not tools:
                    continue
                entry = {**entry, "tools": tools}
            kept.append(entry)
        if kept:
            result[field] = kept
        else:
            del result[field]
    for field in ("tool_choice", "function_call", "web_search_options"):
        if any(entry.field == field for entry in removed):
            result.pop(field, None)
    if "tools" not in result and "functions" not in result:
        for field in ("tool_choice", "function_call", "parallel_tool_calls"):
            result.pop(field, None)
    return result


def chat_call_ref(name: Any) -> ToolRef:
    """The tool a Chat Completions tool call (or legacy function_call) names."""
    return _named(name)


def item_ref(item: dict) -> ToolRef:
    """The tool a Responses call item refers to (see CALL_ITEM_TYPES)."""
    kind = item.get("type")
    if kind in ("function_call", "custom_tool_call"):
        return _named(item.get("name"), item.get("namespace"))
    if kind in ("mcp_call", "mcp_approval_request"):
        return _mcp(item.get("server_label"), item.get("name"))
    family = _BUILTIN_CALL_ITEMS.get(kind) if isinstance(kind, str) else None
    if family is None:
        return UNREADABLE
    return ToolRef(family, tuple(v for v in _FAMILIES.get(family, ()) if v != family))


def item_arguments(item: dict, *, final: bool = False) -> tuple[str, bool]:
    """(arguments text, is_json) of a call item: JSON for function and MCP calls, the raw
    input for custom tools, for a client-run built-in call a JSON object of what it asks
    (`{"action": ...}`, `{"operation": ...}`; keys sorted, so one call always reads the
    same), empty for hosted built-in tools.

    `final`: the item is the call as the client gets it (a whole answer). Otherwise an
    item still `in_progress` (a stream's `output_item.added`) has no arguments yet: a
    shell command or a patch streams on, and only the done item states the call whole,
    which is the one the stream gate judges and the client runs."""
    kind = item.get("type")
    if kind in ("function_call", "mcp_call", "mcp_approval_request"):
        return _text(item.get("arguments")), True
    if kind == "custom_tool_call":
        return _text(item.get("input")), False
    fields = _CLIENT_RUN_PAYLOAD.get(kind) if isinstance(kind, str) else None
    if fields is None or (not final and item.get("status") == "in_progress"):
        return "", True
    payload = {field: item[field] for field in fields if item.get(field) is not None}
    # json, not orjson: an upstream's integer beyond 64 bits must not stop the gate.
    return (json.dumps(payload, sort_keys=True, ensure_ascii=False) if payload else ""), True
