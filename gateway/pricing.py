"""Model prices and the cost of a `Usage`, in USD.

Prices come from three layers, later winning per model: the bundled `gateway/pricing.yaml`,
an operator's `pricing.file` of the same shape, and `pricing.models` overrides in
gateway.yaml. A model is looked up by its exact name first, then through the documented
fallbacks of `name_candidates` (routing prefixes, dated snapshots, preview tags), then
through `*` prefix patterns such as `mock-*`. A model priced nowhere costs None, never 0,
so unpriced traffic stays visible instead of looking free.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.usage import Usage
from gateway.yamlsrc import Problem, YamlError, line_of, load_yaml

BUNDLED_PRICES = Path(__file__).with_name("pricing.yaml")

_REQUIRED_FIELDS = ("input", "output")
_OPTIONAL_FIELDS = ("cached_input", "cache_write")
_FIELD_HINTS = {
    "cache_read": "cached_input", "cached": "cached_input", "cache_hit": "cached_input",
    "cache_creation": "cache_write", "cache_writes": "cache_write", "prompt": "input",
    "completion": "output", "input_tokens": "input", "output_tokens": "output",
}
_FILE_KEYS = ("taken", "source", "models")

# Routing prefixes left after the last "/" is cut: Bedrock's "us.anthropic.claude-...".
_VENDOR_PREFIX = re.compile(r"^(?:(?:us|eu|apac|jp|au|global)\.)?anthropic\.")
# Version tags, stripped one at a time from the end until a price matches.
_VERSION_SUFFIXES = (
    re.compile(r"-v\d+(?::\d+)?$"),  # Bedrock: claude-sonnet-4-5-20250929-v1:0
    re.compile(r"@[\w.-]+$"),  # Vertex: claude-sonnet-4-5@20250929
    re.compile(r"-\d{4}-\d{2}-\d{2}$"),  # OpenAI snapshots: gpt-4o-2024-08-06
    re.compile(r"-\d{8}$"),  # Anthropic snapshots: claude-sonnet-4-5-20250929
    re.compile(r"-latest$"),  # claude-3-5-haiku-latest
    re.compile(r"-\d{2}-(?:\d{2}|\d{4})$"),  # Gemini previews: ...-preview-05-20, -preview-09-2025
    re.compile(r"-(?:preview|exp)$"),  # gemini-3-pro-preview
)
_CACHE_LIMIT = 4096


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens. Missing cache prices bill those tokens at the input price."""

    input: float
    output: float
    cached_input: float | None = None
    cache_write: float | None = None

    def cost(self, usage: Usage) -> float:
        """USD for `usage`: each prompt token billed once, at its own rate; reasoning is output."""
        cached = min(max(usage.cached_tokens, 0), max(usage.input_tokens, 0))
        written = min(max(usage.cache_write_tokens, 0), max(usage.input_tokens, 0) - cached)
        fresh = max(usage.input_tokens, 0) - cached - written
        micro_usd = (
            fresh * self.input
            + cached * _or(self.cached_input, self.input)
            + written * _or(self.cache_write, self.input)
            + max(usage.output_tokens, 0) * self.output
        )
        return micro_usd / 1_000_000


class PricingError(Exception):
    """The price files or overrides are malformed; `problems` says where and how to fix each."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(str(problem) for problem in problems))
        self.problems = problems


class PriceTable:
    """Prices by model name (or `prefix*` pattern), with cached fallback lookups."""

    def __init__(self, prices: Mapping[str, Price]) -> None:
        self._exact = {name: price for name, price in prices.items() if not name.endswith("*")}
        self._patterns = sorted(
            ((name[:-1], price) for name, price in prices.items() if name.endswith("*")),
            key=lambda pattern: len(pattern[0]),
            reverse=True,
        )
        self._cache: dict[str, Price | None] = {}

    @classmethod
    def load(
        cls,
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
        file: Path | None = None,
        *,
        overrides_source: str = "gateway.yaml",
    ) -> PriceTable:
        """The bundled prices, then `file`'s, then `overrides` (gateway.yaml `pricing.models`).

        Raises `PricingError` listing every problem (file, line, key, fix) when any layer is
        malformed. `overrides_source` names the file the overrides came from in problems;
        their lines come from `gateway.yamlsrc` when they were loaded with it.
        """
        prices: dict[str, Price] = {}
        problems: list[Problem] = []
        for path in (BUNDLED_PRICES, file):
            if path is not None:
                prices.update(_load_price_file(path, problems))
        if overrides is not None:
            prices.update(_read_models(overrides, overrides_source, "pricing.models", problems))
        if problems:
            raise PricingError(problems)
        return cls(prices)

    def price(self, model: str) -> Price | None:
        """The price of `model`, or None when it is priced nowhere."""
        if model in self._cache:
            return self._cache[model]
        found = self._find(model)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[model] = found
        return found

    def cost(self, model: str, usage: Usage) -> float | None:
        """USD for `usage` on `model`; None when the model is unpriced."""
        price = self.price(model)
        return None if price is None else price.cost(usage)

    def __contains__(self, model: str) -> bool:
        return self.price(model) is not None

    def _find(self, model: str) -> Price | None:
        candidates = list(name_candidates(model))
        for name in candidates:
            if name in self._exact:
                return self._exact[name]
        for name in candidates:
            for prefix, price in self._patterns:
                if name.startswith(prefix):
                    return price
        return None


def name_candidates(model: str) -> Iterator[str]:
    """The names a model is looked up under, in order (documented in docs/metering.md).

    The name as given; lower-cased; without a routing prefix ("openai/", "models/",
    Bedrock's "us.anthropic."); then with one version tag after another cut from the end
    (Bedrock "-v1:0", Vertex "@date", "-2024-08-06", "-20250929", "-latest", Gemini's
    "-05-20" and "-preview").
    """
    name = model.strip()
    yield name
    name = name.lower()
    yield name
    name = _VENDOR_PREFIX.sub("", name.rsplit("/", 1)[-1])
    yield name
    while True:
        for suffix in _VERSION_SUFFIXES:
            shorter = suffix.sub("", name)
            if shorter and shorter != name:
                name = shorter
                yield name
                break
        else:
            return


# --- reading price files -----------------------------------------------------------------------


def _load_price_file(path: Path, problems: list[Problem]) -> dict[str, Price]:
    source = str(path)
    try:
        data = load_yaml(path)
    except YamlError as exc:
        problems.append(exc.problem)
        return {}
    if not isinstance(data, Mapping) or not isinstance(data.get("models"), Mapping):
        problems.append(Problem(source, line_of(data, "models"), "models",
                                "a price file needs a 'models:' mapping of model name -> "
                                "{input, cached_input, cache_write, output} in USD per million tokens"))
        return {}
    for key in data:
        if key not in _FILE_KEYS:
            problems.append(Problem(source, line_of(data, key), str(key),
                                    f"unknown key; a price file has only {', '.join(_FILE_KEYS)}"))
    return _read_models(data["models"], source, "models", problems)


def _read_models(models: Mapping[Any, Any], source: str, where: str,
                 problems: list[Problem]) -> dict[str, Price]:
    if not isinstance(models, Mapping):
        problems.append(Problem(source, line_of(models, 0), where,
                                "must be a mapping of model name -> {input, output, ...}"))
        return {}
    prices = {}
    for name, entry in models.items():
        price = _read_price(name, entry, source, f"{where}.{name}", line_of(models, name), problems)
        if price is not None:
            prices[str(name)] = price
    return prices


def _read_price(name: Any, entry: Any, source: str, key: str, line: int,
                problems: list[Problem]) -> Price | None:
    if not isinstance(name, str) or not name.strip():
        problems.append(Problem(source, line, key, "a model name must be a non-empty string"))
        return None
    if not isinstance(entry, Mapping):
        problems.append(Problem(source, line, key,
                                "must be a mapping like {input: 1.25, cached_input: 0.125, output: 10.0} "
                                "(USD per million tokens)"))
        return None
    before = len(problems)
    for field in entry:
        if field not in _REQUIRED_FIELDS and field not in _OPTIONAL_FIELDS:
            hint = _FIELD_HINTS.get(field)
            fix = f"did you mean '{hint}'?" if hint else \
                f"the fields are {', '.join(_REQUIRED_FIELDS + _OPTIONAL_FIELDS)}"
            problems.append(Problem(source, line_of(entry, field), f"{key}.{field}",
                                    f"unknown price field; {fix}"))
    values: dict[str, float | None] = {}
    for field in _REQUIRED_FIELDS + _OPTIONAL_FIELDS:
        required = field in _REQUIRED_FIELDS
        if field not in entry or entry[field] is None:
            if required:
                problems.append(Problem(source, line, f"{key}.{field}",
                                        f"missing '{field}' (USD per million tokens)"))
            values[field] = None
            continue
        values[field] = _usd(entry[field], source, line_of(entry, field), f"{key}.{field}", problems)
    if len(problems) > before:
        return None
    return Price(**values)  # type: ignore[arg-type]


def _usd(value: Any, source: str, line: int, key: str, problems: list[Problem]) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) \
            and value >= 0:
        return float(value)
    problems.append(Problem(source, line, key,
                            f"must be a non-negative number of USD per million tokens (e.g. 1.25), "
                            f"not {value!r}"))
    return None


def _or(value: float | None, default: float) -> float:
    return default if value is None else value
