"""The request shape checks (`gateway.shapes`): each wrong field named by its path, the rest passed."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.errors import GatewayError
from gateway.shapes import MAX_SHAPE_DEPTH, check_shapes

USER = {"role": "user", "content": "hi"}
CALL = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}

# (name, body, the param named in the 400, or None when the body passes)
CASES: list[tuple[str, dict[str, Any], str | None]] = [
    ("plain chat", {"messages": [USER]}, None),
    ("null fields pass", {"messages": [{"role": "assistant", "content": None, "name": None}]}, None),
    ("content parts", {"messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]}, None),
    ("assistant tool calls", {"messages": [{"role": "assistant", "tool_calls": [CALL]}]}, None),
    ("role not a string", {"messages": [USER, {"role": 5, "content": "x"}]}, "messages[1].role"),
    ("content an object", {"messages": [{"role": "user", "content": {"text": "x"}}]}, "messages[0].content"),
    ("content a number", {"messages": [{"role": "user", "content": 3}]}, "messages[0].content"),
    ("a text part's text a number", {"messages": [{"role": "user", "content": [{"type": "text", "text": 3}]}]},
     "messages[0].content[0].text"),
    ("an array inside content", {"messages": [{"role": "user", "content": [["x"]]}]}, "messages[0].content[0]"),
    ("tool_calls a string", {"messages": [{"role": "assistant", "tool_calls": "f"}]}, "messages[0].tool_calls"),
    ("tool_calls an object", {"messages": [{"role": "assistant", "tool_calls": {}}]}, "messages[0].tool_calls"),
    ("function a string", {"messages": [{"role": "assistant", "tool_calls": [{**CALL, "function": "f"}]}]},
     "messages[0].tool_calls[0].function"),
    ("arguments an object", {"messages": [{"role": "assistant", "tool_calls": [
        {**CALL, "function": {"name": "f", "arguments": {"a": 1}}}]}]}, "messages[0].tool_calls[0].function.arguments"),
    ("tool name a number", {"tools": [{"type": "function", "function": {"name": 1}}]}, "tools[0].function.name"),
    ("parameters are not walked", {"tools": [{"type": "function", "function": {
        "name": "f", "parameters": {"type": ["string", "null"], "properties": {"name": {"type": 5}}}}}]}, None),
    ("metadata is not walked", {"input": [{"role": "user", "content": "x", "metadata": {"role": 5}}]}, None),
    ("responses item", {"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": 1}]},
     "input[0].arguments"),
    ("tool_choice object", {"tool_choice": {"type": "function", "function": {"name": 2}}}, "tool_choice.function.name"),
]


@pytest.mark.parametrize(("name", "body", "param"), CASES, ids=[case[0] for case in CASES])
def test_shapes(name: str, body: dict[str, Any], param: str | None) -> None:
    if param is None:
        check_shapes(body)
        return
    with pytest.raises(GatewayError) as caught:
        check_shapes(body)
    assert caught.value.status == 400
    assert caught.value.param == param
    assert caught.value.message.startswith(f"'{param}' must be ")


def test_nesting_past_the_depth_bound_is_left_alone() -> None:
    inner: dict[str, Any] = {"role": 5}
    for _ in range(MAX_SHAPE_DEPTH + 2):
        inner = {"items": [inner]}
    check_shapes({"messages": [inner]})  # never walked that deep (the JSON depth limit bounds bodies)
