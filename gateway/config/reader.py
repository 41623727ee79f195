"""Typed reads from YAML mappings that collect problems instead of raising.

Validation should report every mistake in a file at once, each with its line and a
fix hint, so `Reader` accumulates `Problem`s and returns safe defaults as it goes.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any, TypeVar

from gateway.yamlsrc import Problem, line_of

T = TypeVar("T")

_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
               dict: "a mapping", list: "a list"}


class Reader:
    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []

    def problem(self, container: Any, key: Any, path: str, message: str, rule: str | None = None) -> None:
        self.problems.append(Problem(self.file, line_of(container, key), path, message, rule))

    def mapping(self, container: Any, key: str, path: str, *, required: bool = False) -> dict:
        value = container.get(key) if isinstance(container, dict) else None
        if value is None:
            if required:
                self.problem(container, key, path, f"'{key}' is required; add a '{key}:' section")
            return {}
        if not isinstance(value, dict):
            self.problem(container, key, path, f"must be a mapping (key: value lines), got {_kind(value)}")
            return {}
        return value

    def get(self, container: dict, key: str, path: str, kind: type[T], default: T, *,
            required: bool = False, minimum: float | None = None, choices: Iterable[str] | None = None
            ) -> T:
        if key not in container or container[key] is None:
            if required:
                self.problem(container, key, path, f"'{key}' is required")
            return default
        value = container[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            self.problem(container, key, path, f"must be {_TYPE_NAMES.get(kind, kind.__name__)}, "
                                                f"got {_kind(value)}{_shown(path, value)}")
            return default
        if minimum is not None and isinstance(value, int | float) and value < minimum:
            self.problem(container, key, path, f"must be at least {minimum}, got {value}")
            return default
        if choices is not None and value not in choices:
            options = ", ".join(choices)
            self.problem(container, key, path, f"'{value}' is not one of: {options}")
            return default
        return value  # type: ignore[return-value]

    def optional_number(self, container: dict, key: str, path: str, *, minimum: float = 0.0
                        ) -> float | None:
        if container.get(key) is None:
            return None
        value = self.get(container, key, path, float, -1.0, minimum=minimum)
        return None if value < minimum else value

    def string_list(self, container: dict, key: str, path: str) -> list[str] | None:
        if container.get(key) is None:
            return None
        value = container[key]
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            self.problem(container, key, path, "must be a list of strings, e.g. [a, b]")
            return None
        return list(value)

    def check_keys(self, container: Any, allowed: Iterable[str], path: str) -> None:
        if not isinstance(container, dict):
            return
        allowed = tuple(allowed)
        for key in container:
            if key in allowed:
                continue
            hint = difflib.get_close_matches(str(key), allowed, n=1)
            suggestion = f"; did you mean '{hint[0]}'?" if hint else f"; known keys: {', '.join(allowed)}"
            self.problem(container, key, f"{path}.{key}" if path else str(key),
                         f"unknown key '{key}'{suggestion}")


_SENSITIVE = ("key", "secret", "token", "password", "auth", "header", "url")


def _shown(path: str, value: Any) -> str:
    """The offending value, quoted in a problem only when it cannot be a credential."""
    if any(word in path.lower() for word in _SENSITIVE) or not isinstance(value, str | int | float | bool):
        return ""
    text = repr(value)
    return f" {text}" if len(text) <= 40 else ""


def _kind(value: Any) -> str:
    for kind, name in _TYPE_NAMES.items():
        if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
            return name
    return "null" if value is None else type(value).__name__
