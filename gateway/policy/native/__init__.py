"""Native evaluation of the common subset of CEL conditions, without the CEL runtime.

Handing a value to the Rust CEL runtime costs about a microsecond per string (the
conversation costs ten), while most conditions only compare a variable with a literal.
Conditions written in the subset (`==`, `!=`, `<`, `<=`, `>`, `>=`, `in`, `!`, `&&`,
`||`, field and index access, `has()`, `size()`, `contains`, `startsWith`,
`endsWith`, `regex()`, list literals) are compiled at load time into Python closures
that read the plain values directly. Everything else keeps running on the runtime.

The closures reproduce the runtime's results exactly, errors included (errors make
a rule fail closed); tests/test_policy_fastpath.py checks this against the runtime on
generated expressions and values. A value outside the JSON model raises
`Unrepresentable`, and the caller then asks the runtime.
"""

from __future__ import annotations

from gateway.policy.native.build import Evaluator, PythonFunctions, Variables, build
from gateway.policy.native.syntax import NotNative, parse
from gateway.policy.native.values import EvalError, Unrepresentable

__all__ = ["EvalError", "Evaluator", "Unrepresentable", "Variables", "compile_native"]


def compile_native(source: str, functions: PythonFunctions, variables: frozenset[str]) -> Evaluator | None:
    """The native evaluator of a condition the runtime compiled, or None when it uses
    something outside the subset. `variables` are the names it may read (not the
    runtime's own identifiers such as `int`)."""
    try:
        tree, names = parse(source)
        return build(tree, functions) if names <= variables else None
    except NotNative:
        return None
