"""Rule conditions: CEL expressions compiled once at load, evaluated per request.

`compile_condition` checks what can be checked before any request arrives: syntax,
that every variable exists (and exists at the rule's stage), that every function is
known, that literal patterns given to `regex()` compile. `Condition.evaluate` runs
the program and insists on a boolean; anything else raises `ConditionError`, which
the engine turns into a fail-closed decision.

The Rust CEL runtime keeps its built-in `matches()`, which recompiles its pattern on
every call (about 125 µs); a Python function cannot replace it. `regex(text, pattern)`
is the fast alternative: Python `re` syntax, search semantics like `matches()`, a
cache of compiled patterns, and a literal prefilter (a text without the fixed text
every match needs is not searched: see literals.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import cel
from cel.stdlib import STDLIB_FUNCTIONS

from gateway.policy.literals import Prefilter, prefilter
from gateway.policy.native import EvalError, Evaluator, Unrepresentable, compile_native

if TYPE_CHECKING:
    from gateway.policy.scope import Scope

# name -> what it holds; the reference in docs/policies.md mirrors this table.
VARIABLES: dict[str, str] = {
    "tenant": "the tenant's name",
    "agent": "the X-Lockgate-Agent header, or null",
    "model": "the model alias the client asked for",
    "target_model": "the provider model serving the request (null at the request stage)",
    "provider": "the provider serving the request (null at the request stage)",
    "api": '"chat" or "responses"',
    "user_input": "text of the last user message",
    "messages": "list of {role, content} with content as text",
    "tool_names": "names of the tools the request declares",
    "tool_call": "{name, arguments} of the tool call being checked (stage tool_call)",
    "estimated_input_tokens": "estimated input tokens of the request",
    "estimated_cost_usd": "estimated cost of the request in USD, or null when unknown",
    "headers": "request headers, names lower-cased (credentials removed)",
    "metadata": "the request's metadata map",
    "response_text": "the response text (stage response)",
}
STAGE_VARIABLES: dict[str, str] = {"tool_call": "tool_call", "response_text": "response"}

# Names the CEL runtime resolves by itself (type names in `type(x) == int`).
_CEL_IDENTIFIERS = frozenset({"int", "uint", "double", "bool", "string", "bytes", "list", "map",
                              "null_type", "type", "timestamp", "duration"})
_CEL_FUNCTIONS = frozenset({
    "contains", "size", "startsWith", "endsWith", "matches", "string", "int", "uint", "double",
    "bytes", "bool", "timestamp", "duration", "dyn", "type", "has", "getFullYear", "getMonth",
    "getDayOfYear", "getDayOfMonth", "getDate", "getDayOfWeek", "getHours", "getMinutes",
    "getSeconds", "getMilliseconds",
})
_MACRO_BINDING = re.compile(r"\.\s*(?:all|exists_one|exists|map|filter)\s*\(\s*([A-Za-z_]\w*)\s*,")
_STRING_LITERAL = r"""(r?"(?:[^"\\]|\\.)*"|r?'(?:[^'\\]|\\.)*')"""
_REGEX_LITERAL = re.compile(
    r"\bregex\s*\(\s*[^,()]+,\s*" + _STRING_LITERAL + r"|\.\s*regex\s*\(\s*" + _STRING_LITERAL
)
_NAME_ONLY_USE = re.compile(r"\btool_call\s*\.\s*name\b")


@lru_cache(maxsize=1024)
def _compiled(pattern: str) -> tuple[re.Pattern[str], Prefilter | None]:
    compiled = re.compile(pattern)
    return compiled, prefilter(compiled)


def regex(text: str, pattern: str) -> bool:
    """`regex(text, pattern)`: does `pattern` (Python re syntax) occur in `text`?"""
    compiled, literals = _compiled(pattern)
    if literals is not None and type(text) is str and literals.excludes(text):
        return False
    return compiled.search(text) is not None


# Python functions a condition may call. The CEL built-ins stay as they are: a Python
# function of the same name would not replace them.
FUNCTIONS: dict[str, Callable[..., Any]] = {
    "regex": regex,
    **{name: fn for name, fn in STDLIB_FUNCTIONS.items() if name not in _CEL_FUNCTIONS},
}


class ConditionError(Exception):
    """A condition could not be evaluated (missing key, wrong type, non-boolean result)."""


@dataclass(frozen=True, slots=True, eq=False)
class Condition:
    source: str
    program: cel.Program
    variables: frozenset[str]
    functions: frozenset[str]
    # Whether it reads `tool_call` beyond `tool_call.name`: the call's arguments must
    # then be complete and parsed before it can be evaluated.
    reads_arguments: bool
    # The same expression as Python closures, when it is written in the native subset.
    native: Evaluator | None = None

    def evaluate(self, scope: Scope) -> bool:
        """The condition's value for the variables in `scope`; ConditionError if it has none."""
        if self.native is None:
            result = self._run(scope)
        else:
            scope.read(self.variables)
            try:
                result = self.native(scope)
            except EvalError as exc:
                raise ConditionError(str(exc)) from None
            except Unrepresentable:
                result = self._run(scope)
        if not isinstance(result, bool):
            raise ConditionError(f"the condition returned {result!r}, not true or false")
        return result

    def _run(self, scope: Scope) -> Any:
        """Evaluation by the CEL runtime."""
        context = scope.cel_context(self.variables, self.functions)
        try:
            return self.program.execute(context)
        except Exception as exc:  # the runtime raises KeyError, TypeError, RuntimeError, ...
            raise ConditionError(f"{type(exc).__name__}: {exc}") from None


def compile_condition(source: str, stage: str | None) -> tuple[Condition | None, list[str]]:
    """Compile `source` for a rule at `stage` (None: the rule runs at several stages).

    Returns the condition, or None and the problems (each message ends in a fix hint).
    """
    try:
        program = cel.compile(source)
    except Exception as exc:
        return None, [f"the condition does not compile: {_first_line(exc)}; check the CEL syntax"]
    bound = set(_MACRO_BINDING.findall(source))
    variables = frozenset(set(program.variables()) - bound - _CEL_IDENTIFIERS)
    problems = [_variable_problem(name, stage) for name in sorted(variables)]
    functions = set(program.functions())
    for name in sorted(functions):
        if not (_is_operator(name) or name in _CEL_FUNCTIONS or name in FUNCTIONS):
            problems.append(
                f"unknown function '{name}'; available: regex, {', '.join(sorted(FUNCTIONS)[:12])}, ... "
                "(see docs/policies.md)"
            )
    problems.extend(_regex_literal_problems(source))
    problems = [problem for problem in problems if problem]
    if problems:
        return None, problems
    reads_arguments = "tool_call" in variables and bool(
        re.search(r"\btool_call\b", _NAME_ONLY_USE.sub("", source))
    )
    return Condition(
        source=source,
        program=program,
        variables=variables,
        functions=frozenset(functions & FUNCTIONS.keys()),
        reads_arguments=reads_arguments,
        native=compile_native(source, FUNCTIONS, variables),
    ), []


def _variable_problem(name: str, stage: str | None) -> str:
    if name not in VARIABLES:
        return f"unknown variable '{name}'; variables are: {', '.join(VARIABLES)}"
    only_at = STAGE_VARIABLES.get(name)
    if only_at is not None and stage != only_at:
        return f"'{name}' exists only at stage {only_at}; add 'stage: {only_at}' or drop it"
    return ""


def _is_operator(name: str) -> bool:
    return not name[:1].isalpha()


def _regex_literal_problems(source: str) -> list[str]:
    problems = []
    for match in _REGEX_LITERAL.finditer(source):
        literal = match.group(1) or match.group(2)
        try:
            pattern = cel.evaluate(literal)
            re.compile(pattern)
        except re.error as exc:
            problems.append(f"regex pattern {literal} does not compile: {exc}; fix the pattern")
        except Exception:
            continue  # not a plain literal after all; it is checked when it runs
    return problems


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return " ".join(line.strip() for line in text.splitlines()[:3])
