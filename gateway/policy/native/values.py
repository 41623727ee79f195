"""What CEL's operators do to values, reproduced on plain Python values.

The semantics are those of the pinned runtime (common-expression-language 0.10.0),
measured rather than read from the specification where the two differ:

- `==` across types is false, not an error, except that numbers compare by value
  whatever their type (`1 == 1.0`); lists and maps compare element by element.
- `<`, `<=`, `>`, `>=` are defined for two numbers, two strings or two booleans;
  anything else is an error.
- An int beyond the 64-bit range reaches the runtime as a double; an int compared
  with a double is compared as a double (`9007199254740993 == 9007199254740992.0`).
- `size()` of a string counts its UTF-8 bytes, not its characters.
- `key in map` is false for an int or bool key (the maps here have string keys) and
  an error for null, double, list or map keys.

The values modelled are those a JSON document can hold (what orjson gives: None,
bool, int, float, str, list, dict with string keys). Anything else raises
`Unrepresentable`, and the caller lets the runtime itself evaluate the condition.
"""

from __future__ import annotations

import math
from typing import Any

_INT_MIN = -(2**63)
_UINT_END = 2**64

NULL, BOOL, NUMBER, STRING, LIST, MAP = "null", "bool", "number", "string", "list", "map"


class EvalError(Exception):
    """A CEL runtime error: the condition cannot be evaluated (the rule fails closed)."""


class Unrepresentable(Exception):
    """A value outside the JSON model: only the CEL runtime can say what it does."""


def no_overload(operation: str, *values: Any) -> EvalError:
    kinds = ", ".join(category(value) for value in values)
    return EvalError(f"TypeError: no such overload: {operation}({kinds})")


def category(value: Any) -> str:
    """The CEL type family of a JSON value (int, uint and double are all NUMBER)."""
    if value is None:
        return NULL
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, int | float):
        return NUMBER
    if isinstance(value, str):
        return STRING
    if isinstance(value, list):
        return LIST
    if isinstance(value, dict):
        return MAP
    raise Unrepresentable(type(value).__name__)


def _number(value: int | float) -> int | float:
    """The number as the runtime holds it: an int outside int64/uint64 becomes a double."""
    if isinstance(value, int) and not _INT_MIN <= value < _UINT_END:
        try:
            return float(value)
        except OverflowError:
            raise Unrepresentable("an int too large for a double") from None
    return value


def _numbers(left: int | float, right: int | float) -> tuple[int | float, int | float]:
    """Both numbers as the runtime compares them: as doubles when either is one."""
    left, right = _number(left), _number(right)
    if type(left) is not type(right):
        return float(left), float(right)
    return left, right


def _string_keys(value: dict) -> dict:
    if not all(isinstance(key, str) for key in value):
        raise Unrepresentable("a map with non-string keys")
    return value


def equals(left: Any, right: Any) -> bool:
    """CEL `==`."""
    if type(left) is str and type(right) is str:
        return left == right
    kind = category(left)
    if kind != category(right):
        return False
    if kind == NUMBER:
        left, right = _numbers(left, right)
        return left == right
    if kind == LIST:
        return len(left) == len(right) and all(equals(a, b) for a, b in zip(left, right, strict=True))
    if kind == MAP:
        if _string_keys(left).keys() != _string_keys(right).keys():
            return False
        return all(equals(item, right[key]) for key, item in left.items())
    return bool(left == right)


def compare(operation: str, left: Any, right: Any) -> int:
    """-1, 0 or 1 for CEL `<`, `<=`, `>`, `>=` (an error for types without an order)."""
    if type(left) is type(right) and (type(left) is str or (
            type(left) is int and _INT_MIN <= left < _UINT_END and _INT_MIN <= right < _UINT_END)):
        return (left > right) - (left < right)
    kind = category(left)
    if kind != category(right) or kind not in (NUMBER, STRING, BOOL):
        raise no_overload(operation, left, right)
    if kind == NUMBER:
        left, right = _numbers(left, right)
        if isinstance(left, float) and (math.isnan(left) or math.isnan(right)):
            raise Unrepresentable("NaN")
    return (left > right) - (left < right)


def contains(container: Any, item: Any) -> bool:
    """CEL `item in container`."""
    if type(container) is dict and type(item) is str:
        return item in container
    kind = category(container)
    if kind == LIST:
        return any(equals(item, element) for element in container)
    if kind != MAP:
        raise no_overload("in", item, container)
    item_kind = category(item)
    if item_kind == STRING:
        return item in container
    _string_keys(container)
    if item_kind == BOOL or (item_kind == NUMBER and isinstance(_number(item), int)):
        return False  # a valid key type, but no string-keyed map holds it
    raise EvalError(f"TypeError: a {item_kind} cannot be a map key")


def select(value: Any, field: str) -> Any:
    """CEL `value.field`."""
    if isinstance(value, dict):
        if field in value:
            return value[field]
        raise EvalError(f"KeyError: {field!r}")
    raise no_overload(f".{field}", value)


def has_field(value: Any, field: str) -> bool:
    """CEL `has(value.field)`."""
    if isinstance(value, dict):
        return field in value
    raise no_overload(f"has(.{field})", value)


def index(value: Any, key: Any) -> Any:
    """CEL `value[key]`."""
    if type(value) is dict and type(key) is str and key in value:
        return value[key]
    kind = category(value)
    key_kind = category(key)
    if kind == MAP:
        if key_kind == STRING and key in value:
            return value[key]
        raise EvalError(f"KeyError: {key!r}")
    if kind == LIST and key_kind == NUMBER and isinstance(_number(key), int):
        if 0 <= key < len(value):
            return value[key]
        raise EvalError(f"IndexError: index out of bounds: {key}")
    raise no_overload("_[_]", value, key)


def size(value: Any) -> int:
    """CEL `size(value)`: UTF-8 bytes of a string, entries of a list or map."""
    if isinstance(value, str):
        if value.isascii():
            return len(value)
        try:
            return len(value.encode("utf-8"))
        except UnicodeEncodeError:
            raise Unrepresentable("a string that is not valid Unicode") from None
    kind = category(value)
    if kind in (LIST, MAP):
        return len(value)
    raise no_overload("size", value)


def strings(operation: str, *values: Any) -> None:
    """Raise unless every value is a string (CEL string functions have no other overload)."""
    for value in values:
        if not isinstance(value, str):
            category(value)  # Unrepresentable first, so the runtime gets to decide
            raise no_overload(operation, *values)


def truth(value: Any, operation: str) -> bool:
    """A boolean operand of `!`, `&&`, `||`."""
    if value is True or value is False:
        return value
    category(value)
    raise no_overload(operation, value)
