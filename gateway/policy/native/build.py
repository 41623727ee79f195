"""Turning a parsed condition into nested Python closures.

Each node becomes a function of the variables (a mapping of name to plain Python
value, read lazily by the caller). The closures raise `EvalError` where the CEL runtime raises an error
and `Unrepresentable` where the values leave the JSON model (see values.py). `&&` and
`||` follow CEL's commutative rules, as the runtime implements them: `false && x` and
`x && false` are false even when `x` is an error or not a boolean, and the same for
`true ||`; otherwise the first error (or non-boolean operand) is the result.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from gateway.policy.native import values
from gateway.policy.native.syntax import (
    Call,
    Index,
    ListOf,
    Literal,
    Logical,
    Node,
    Not,
    Relation,
    Select,
    Variable,
)
from gateway.policy.native.values import EvalError, no_overload, truth

Variables = Mapping[str, Any]
Evaluator = Callable[[Variables], Any]
PythonFunctions = Mapping[str, Callable[..., Any]]


def build(node: Node, functions: PythonFunctions) -> Evaluator:
    """The evaluator of `node`; `functions` are the Python functions conditions may call."""
    if isinstance(node, Literal):
        value = node.value
        return lambda scope: value
    if isinstance(node, Variable):
        name = node.name
        return lambda scope: scope[name]
    if isinstance(node, Select):
        return _select(build(node.operand, functions), node.field)
    if isinstance(node, Index):
        operand, key = build(node.operand, functions), build(node.key, functions)
        return lambda scope: values.index(operand(scope), key(scope))
    if isinstance(node, ListOf):
        items = [build(item, functions) for item in node.items]
        return lambda scope: [item(scope) for item in items]
    if isinstance(node, Not):
        return _negation(build(node.operand, functions))
    if isinstance(node, Logical):
        return _logical(node.operator, [build(operand, functions) for operand in node.operands])
    if isinstance(node, Relation):
        return _relation(node, functions)
    assert isinstance(node, Call)
    return _call(node, functions)


def _select(operand: Evaluator, field: str) -> Evaluator:
    def select(scope: Variables) -> Any:
        value = operand(scope)
        if type(value) is dict and field in value:
            return value[field]
        return values.select(value, field)

    return select


def _negation(operand: Evaluator) -> Evaluator:
    def negation(scope: Variables) -> bool:
        return not truth(operand(scope), "!_")

    return negation


def _logical(operator: str, operands: list[Evaluator]) -> Evaluator:
    deciding = operator == "||"  # the value of one operand that decides the result

    def logical(scope: Variables) -> bool:
        failure: EvalError | None = None
        for operand in operands:
            try:
                value = operand(scope)
            except EvalError as exc:
                failure = failure or exc
                continue
            if value is deciding:
                return deciding
            if value is not (not deciding) and failure is None:
                failure = no_overload(f"_{operator}_", value)
        if failure is not None:
            raise failure
        return not deciding

    return logical


def _relation(node: Relation, functions: PythonFunctions) -> Evaluator:
    left, right = build(node.left, functions), build(node.right, functions)
    operator = node.operator
    if operator in ("==", "!="):
        return _equality(left, right, node.right, negate=operator == "!=")
    if operator == "in":
        return lambda scope: values.contains(right(scope), left(scope))
    wanted = {"<": (-1,), "<=": (-1, 0), ">": (1,), ">=": (1, 0)}[operator]
    name = f"_{operator}_"
    return lambda scope: values.compare(name, left(scope), right(scope)) in wanted


def _equality(left: Evaluator, right: Evaluator, right_node: Node, *, negate: bool) -> Evaluator:
    if isinstance(right_node, Literal) and type(right_node.value) is str:
        # The common `name == "text"`: two strings compare directly.
        text = right_node.value

        def equal_text(scope: Variables) -> bool:
            value = left(scope)
            if type(value) is str:
                return (value == text) is not negate
            return values.equals(value, text) is not negate

        return equal_text
    return lambda scope: values.equals(left(scope), right(scope)) is not negate


def _call(node: Call, functions: PythonFunctions) -> Evaluator:
    if node.function == "has":
        select = node.arguments[0]
        assert isinstance(select, Select)
        operand, field = build(select.operand, functions), select.field
        return lambda scope: values.has_field(operand(scope), field)
    arguments = [build(argument, functions) for argument in node.arguments]
    if node.function == "size":
        (operand,) = arguments
        return lambda scope: values.size(operand(scope))
    if node.function in _STRING_TESTS:
        return _string_test(node.function, arguments)
    return _python_function(node.function, functions[node.function], arguments)


_STRING_TESTS: dict[str, Callable[[str, str], bool]] = {
    "contains": str.__contains__,
    "startsWith": str.startswith,
    "endsWith": str.endswith,
}


def _string_test(function: str, arguments: list[Evaluator]) -> Evaluator:
    test = _STRING_TESTS[function]
    receiver, argument = arguments

    def string_test(scope: Variables) -> bool:
        text, part = receiver(scope), argument(scope)
        if type(text) is not str or type(part) is not str:
            values.strings(function, text, part)
        return test(text, part)

    return string_test


def _python_function(name: str, function: Callable[..., Any], arguments: list[Evaluator]) -> Evaluator:
    """A Python function (regex) the runtime would call with the arguments as Python
    values. It takes strings; given anything else it raises, as under the runtime."""

    def python_function(scope: Variables) -> Any:
        given = [argument(scope) for argument in arguments]
        values.strings(name, *given)
        try:
            return function(*given)
        except Exception as exc:
            raise EvalError(f"{type(exc).__name__}: {exc}") from None

    return python_function
