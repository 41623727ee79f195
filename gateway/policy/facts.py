"""Request facts: what conditions can ask about a request, computed only when asked.

The caller builds one `RequestFacts` per request. Every derived value (the
conversation as text, the declared tools, header map, estimates) is computed on first
use and kept: a fact no rule reads is never computed. The values are plain Python
values; handing them to the CEL runtime is the job of `scope.Scope`, and only for
conditions outside the native subset.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.policy.bodytext import conversation, last_user_text
from gateway.policy.conditions import ConditionError
from gateway.policy.toolrefs import DeclaredTool, declared_tools

# Headers that carry credentials never reach conditions (nor error messages made from them).
_HIDDEN_HEADERS = frozenset({"authorization", "proxy-authorization", "x-api-key", "cookie", "api-key"})


class _derived:
    """A field computed on first use and kept. Like functools.cached_property, which in
    Python 3.11 takes a lock on every first access: that costs more than most facts."""

    def __init__(self, compute: Callable[[Any], Any]) -> None:
        self.compute = compute
        self.name = compute.__name__

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        value = instance.__dict__[self.name] = self.compute(instance)
        return value


@dataclass(eq=False)
class RequestFacts:
    """One request as the policy engine sees it (lazily derived fields)."""

    tenant: str
    agent: str | None
    alias: str
    api: str  # "chat" | "responses"
    body: dict
    headers: Mapping[str, str]
    target_model: str | None = None
    provider: str | None = None
    estimate_tokens: Callable[[], int] | None = None
    estimate_cost: Callable[[], float | None] | None = None

    @_derived
    def messages(self) -> list[dict[str, str]]:
        return conversation(self.body, self.api)

    @_derived
    def user_input(self) -> str:
        return last_user_text(self.messages)

    @_derived
    def declared(self) -> list[DeclaredTool]:
        return declared_tools(self.body, self.api)

    @_derived
    def tool_names(self) -> list[str]:
        names: list[str] = []
        for entry in self.declared:
            for name in (entry.tool.name, *entry.tool.groups):
                if name and name not in names:
                    names.append(name)
        return names

    @_derived
    def header_map(self) -> dict[str, str]:
        return {
            name.lower(): value for name, value in self.headers.items()
            if name.lower() not in _HIDDEN_HEADERS
        }

    @_derived
    def metadata(self) -> dict[str, Any]:
        metadata = self.body.get("metadata")
        return metadata if isinstance(metadata, dict) else {}

    @_derived
    def estimated_input_tokens(self) -> int:
        if self.estimate_tokens is not None:
            return int(self.estimate_tokens())
        # Without the caller's tokenizer: ~4 characters per token, good enough for limits.
        return sum(len(message["content"]) for message in self.messages) // 4 + 1

    @_derived
    def estimated_cost_usd(self) -> float | None:
        if self.estimate_cost is None:
            return None
        cost = self.estimate_cost()
        return None if cost is None else float(cost)

    def value(self, name: str) -> Any:
        """The CEL variable `name` (see conditions.VARIABLES)."""
        if name == "model":
            return self.alias
        if name == "headers":
            _check_text("headers", *self.header_map.keys(), *self.header_map.values())
            return self.header_map
        if name == "agent" and self.agent is not None:
            _check_text("agent", self.agent)
        return getattr(self, name)


def _check_text(name: str, *texts: str) -> None:
    """Raise ConditionError for text that is not valid Unicode. HTTP headers are decoded
    with `surrogateescape`, which keeps invalid UTF-8 as lone surrogates; CEL strings
    cannot hold those, so a condition reading them fails closed."""
    for text in texts:
        if isinstance(text, str) and not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise ConditionError(f"ValueError: the {name} header is not valid UTF-8") from None
