"""The variables of one evaluation pass over a stage, computed only when a rule reads them.

Conditions compiled natively read the plain Python values straight from the scope.
A condition left to the CEL runtime gets a `cel.Context` holding the variables it
needs, converted when it first needs them and reused by later conditions of the same
pass: handing a value to the runtime (~1 µs per string, more for the conversation)
is the expensive part, so no variable is converted that no such rule reaches.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import cel

from gateway.policy.conditions import FUNCTIONS, ConditionError

if TYPE_CHECKING:
    from gateway.policy.facts import RequestFacts


class Scope(dict[str, Any]):
    """Variable name -> value for one pass; a missing name is read from the facts."""

    __slots__ = ("_context", "_facts", "_given_functions", "_given_variables")

    def __init__(self, facts: RequestFacts, **per_call: Any) -> None:
        super().__init__(per_call)
        self._facts = facts
        self._context: cel.Context | None = None
        self._given_variables: set[str] = set()
        self._given_functions: set[str] = set()

    def __missing__(self, name: str) -> Any:
        value = self[name] = self._facts.value(name)
        return value

    def read(self, names: Iterable[str]) -> None:
        """Read `names` now: a fact that cannot be computed fails here, as it would when
        handed to the runtime, whichever of them the condition then looks at."""
        for name in names:
            if name not in self:
                self.__missing__(name)

    def cel_context(self, variables: frozenset[str], functions: frozenset[str]) -> cel.Context:
        """The pass's runtime context, with `variables` and `functions` added if missing."""
        if self._context is None:
            self._context = cel.Context()
        context = self._context
        for name in variables - self._given_variables:
            try:
                context.add_variable(name, self[name])
            except ValueError as exc:  # a string that is not valid Unicode, say
                raise ConditionError(f"{type(exc).__name__}: {exc}") from None
            self._given_variables.add(name)
        for name in functions - self._given_functions:
            context.add_function(name, FUNCTIONS[name])
            self._given_functions.add(name)
        return context
