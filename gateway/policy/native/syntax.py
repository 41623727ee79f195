"""Parsing the common subset of CEL into a small syntax tree.

The parser follows the CEL grammar's precedence (`||` < `&&` < relations < unary <
member access) for the forms the native evaluator supports, and raises `NotNative`
for everything else (arithmetic, `?:`, map literals, macros such as `exists`, bytes,
uint and triple-quoted literals, unknown functions). The expression has already been
compiled by the CEL runtime, so only valid CEL arrives here; literal values are read
by the runtime itself (`cel.evaluate` on the literal's text), so escapes and number
formats mean exactly what they mean to it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cel


class NotNative(Exception):
    """The expression uses something outside the native subset."""


@dataclass(frozen=True, slots=True)
class Literal:
    value: Any


@dataclass(frozen=True, slots=True)
class Variable:
    name: str


@dataclass(frozen=True, slots=True)
class Select:
    operand: Node
    field: str


@dataclass(frozen=True, slots=True)
class Index:
    operand: Node
    key: Node


@dataclass(frozen=True, slots=True)
class Call:
    """A function (`size(x)`, `has(x.f)`, `regex(x, p)`) or method (`x.contains(y)`):
    for a method, the receiver is the first argument."""

    function: str
    arguments: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Not:
    operand: Node


@dataclass(frozen=True, slots=True)
class Logical:
    """`a && b && ...` (operator "&&") or `a || b || ...` (operator "||")."""

    operator: str
    operands: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Relation:
    operator: str  # == != < <= > >= in
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class ListOf:
    items: tuple[Node, ...]


Node = Literal | Variable | Select | Index | Call | Not | Logical | Relation | ListOf

# (function, called as a method) -> number of arguments, the receiver included.
_CALLS: dict[tuple[str, bool], int] = {
    ("size", False): 1, ("size", True): 1,
    ("contains", True): 2, ("startsWith", True): 2, ("endsWith", True): 2,
    ("regex", False): 2, ("regex", True): 2,
}
_RELATIONS = frozenset({"==", "!=", "<", "<=", ">", ">=", "in"})
_KEYWORDS = {"true": True, "false": False, "null": None}

_TOKEN = re.compile(r"""
    (?P<space>[ \t\n\r\f]+|//[^\n\r]*)
  | (?P<unsupported>[rRbB]*(?:\"\"\"|'''))
  | (?P<raw>[rR](?:"[^"\n\r]*"|'[^'\n\r]*'))
  | (?P<string>"(?:[^"\\\n\r]|\\.)*"|'(?:[^'\\\n\r]|\\.)*')
  | (?P<number>\d+\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|0[xX][0-9a-fA-F]+|\d+)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|&&|\|\||[<>!()\[\],.\-])
""", re.VERBOSE)


def tokenize(source: str) -> list[tuple[str, str]]:
    """(kind, text) pairs; kinds: literal, name, op. Whitespace and comments dropped."""
    tokens: list[tuple[str, str]] = []
    position = 0
    while position < len(source):
        match = _TOKEN.match(source, position)
        if match is None or match.lastgroup == "unsupported":
            raise NotNative(f"unsupported syntax at {position}")
        kind, text = match.lastgroup, match.group()
        position = match.end()
        if kind == "raw" and text[-2] == "\\":
            raise NotNative("a raw string ending in a backslash")  # lexers disagree on those
        if kind == "name" and position < len(source) and source[position] in "\"'":
            raise NotNative("a string prefix")  # b"...", br"...": bytes
        if kind != "space":
            tokens.append(("literal" if kind in ("raw", "string", "number") else kind, text))
    return tokens


def literal_value(text: str) -> Any:
    """A literal's value, as the runtime reads it."""
    try:
        value = cel.evaluate(text)
    except Exception:
        raise NotNative(f"literal {text}") from None
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise NotNative(f"literal {text}")
    return value


class _Parser:
    """Recursive descent over the tokens, one method per grammar level."""

    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.position = 0
        self.variables: set[str] = set()

    def peek(self, offset: int = 0) -> tuple[str, str]:
        index = self.position + offset
        return self.tokens[index] if index < len(self.tokens) else ("end", "")

    def take(self, text: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token[0] == "end" or (text is not None and token[1] != text):
            raise NotNative(f"expected {text or 'a token'}, got {token[1] or 'the end'}")
        self.position += 1
        return token

    def at(self, *texts: str) -> bool:
        kind, text = self.peek()
        return kind in ("op", "name") and text in texts

    def expression(self) -> Node:
        return self.logical("||", self.conjunction)

    def conjunction(self) -> Node:
        return self.logical("&&", self.relation)

    def logical(self, operator: str, operand: Callable[[], Node]) -> Node:
        operands = [operand()]
        while self.at(operator):
            self.take()
            operands.append(operand())
        return operands[0] if len(operands) == 1 else Logical(operator, tuple(operands))

    def relation(self) -> Node:
        node = self.unary()
        while self.at(*_RELATIONS):
            operator = self.take()[1]
            node = Relation(operator, node, self.unary())
        return node

    def unary(self) -> Node:
        # The grammar drops pairs of `!` (or `-`): `!!x` is `x` whatever its type.
        nots = self.count("!")
        operand = self.negative() if self.count("-") % 2 else self.member()
        return Not(operand) if nots % 2 else operand

    def count(self, sign: str) -> int:
        count = 0
        while self.at(sign):
            self.take()
            count += 1
        return count

    def negative(self) -> Node:
        """A negative number literal (arithmetic negation is left to the runtime)."""
        kind, text = self.peek()
        if kind != "literal" or text[:1] not in "0123456789" or self.peek(1)[1] in (".", "["):
            raise NotNative("arithmetic negation")
        self.take()
        return Literal(literal_value("-" + text))

    def member(self) -> Node:
        node = self.primary()
        while self.at(".", "["):
            if self.take()[1] == "[":
                node = Index(node, self.expression())
                self.take("]")
                continue
            kind, name = self.take()
            if kind != "name":
                raise NotNative("a field that is not a name")
            node = self.call(name, (node,)) if self.at("(") else Select(node, name)
        return node

    def primary(self) -> Node:
        kind, text = self.take()
        if kind == "literal":
            return Literal(literal_value(text))
        if kind == "name":
            if text in _KEYWORDS:
                return Literal(_KEYWORDS[text])
            if self.at("("):
                return self.call(text, ())
            self.variables.add(text)
            return Variable(text)
        if text == "(":
            node = self.expression()
            self.take(")")
            return node
        if text == "[":
            return ListOf(self.items("]"))
        raise NotNative(f"unsupported token {text}")

    def items(self, closing: str) -> tuple[Node, ...]:
        """Comma-separated expressions up to `closing` (a trailing comma allowed)."""
        items: list[Node] = []
        while not self.at(closing):
            items.append(self.expression())
            if not self.at(closing):
                self.take(",")
        self.take(closing)
        return tuple(items)

    def call(self, name: str, receiver: tuple[Node, ...]) -> Node:
        self.take("(")
        arguments = (*receiver, *self.items(")"))
        if name == "has" and not receiver:
            if len(arguments) != 1 or not isinstance(arguments[0], Select):
                raise NotNative("has() of something other than a field")
        elif _CALLS.get((name, bool(receiver))) != len(arguments):
            raise NotNative(f"function {name}")
        return Call(name, arguments)


def parse(source: str) -> tuple[Node, frozenset[str]]:
    """The syntax tree of `source` and the variables it reads, or NotNative."""
    parser = _Parser(tokenize(source))
    node = parser.expression()
    if parser.peek()[0] != "end":
        raise NotNative(f"unexpected {parser.peek()[1]}")
    return node, frozenset(parser.variables)
