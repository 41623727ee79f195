"""Prices and cost: exact accounting on every provider's usage shape, lookups, layers, problems.

Costs are checked against hand-computed values in tests/fixtures/usage/answers.json (each
case shows its arithmetic); malformed price files are in bad_price_files.json.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from gateway.pricing import BUNDLED_PRICES, Price, PriceTable, PricingError, name_candidates
from gateway.usage import Usage, usage_from_chat, usage_from_embeddings, usage_from_responses
from gateway.yamlsrc import load_yaml, parse_yaml

FIXTURES = Path(__file__).parent / "fixtures" / "usage"
DESIGN = Path(__file__).resolve().parents[2] / "shared" / "DESIGN.md"
READERS = {"chat": usage_from_chat, "responses": usage_from_responses, "embeddings": usage_from_embeddings}


def load_cases(name: str) -> list[Any]:
    cases = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))["cases"]
    return [pytest.param(case, id=case["name"]) for case in cases]


@pytest.fixture(scope="module")
def bundled() -> PriceTable:
    return PriceTable.load()


# --- cost --------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", [param for param in load_cases("answers") if param.values[0]["expected"]])
def test_cost_of_every_usage_shape_matches_the_hand_computed_bill(bundled: PriceTable,
                                                                  case: dict[str, Any]) -> None:
    usage = READERS[case["api"]](case["usage"])
    assert usage is not None
    cost = bundled.cost(case["model"], usage)
    if case["cost"] is None:
        assert cost is None
    else:
        assert cost == pytest.approx(case["cost"], rel=1e-12, abs=0)


def test_a_million_cached_tokens_cost_exactly_the_cached_price() -> None:
    table = PriceTable({"m": Price(input=1.25, cached_input=0.125, output=10.0)})
    assert table.cost("m", Usage(input_tokens=1_000_000, cached_tokens=1_000_000)) == 0.125


def test_each_prompt_token_is_billed_once_at_its_own_rate() -> None:
    price = Price(input=2.0, output=8.0, cached_input=0.5, cache_write=2.5)
    only = {
        "fresh": Usage(input_tokens=1_000_000),
        "cached": Usage(input_tokens=1_000_000, cached_tokens=1_000_000),
        "written": Usage(input_tokens=1_000_000, cache_write_tokens=1_000_000),
        "output": Usage(output_tokens=1_000_000),
        "reasoning": Usage(output_tokens=1_000_000, reasoning_tokens=1_000_000),
    }
    assert {name: price.cost(usage) for name, usage in only.items()} == {
        "fresh": 2.0, "cached": 0.5, "written": 2.5, "output": 8.0, "reasoning": 8.0}
    mixed = Usage(input_tokens=3_000_000, cached_tokens=1_000_000, cache_write_tokens=1_000_000,
                  output_tokens=2_000_000, reasoning_tokens=1_500_000)
    assert price.cost(mixed) == 2.0 + 0.5 + 2.5 + 16.0


def test_missing_cache_prices_bill_at_the_input_price() -> None:
    price = Price(input=3.0, output=15.0)
    usage = Usage(input_tokens=2_000_000, cached_tokens=1_000_000, cache_write_tokens=1_000_000)
    assert price.cost(usage) == 6.0


def test_inconsistent_hand_made_usage_never_bills_a_token_twice_or_negatively() -> None:
    price = Price(input=1.0, output=1.0, cached_input=0.1, cache_write=1.25)
    assert price.cost(Usage(input_tokens=10, cached_tokens=50, cache_write_tokens=50)) == pytest.approx(1e-6)
    assert price.cost(Usage(input_tokens=-5, output_tokens=-5, cached_tokens=-1)) == 0.0


def test_unknown_model_costs_none_not_zero(bundled: PriceTable) -> None:
    assert bundled.price("no-such-model-7") is None
    assert bundled.cost("no-such-model-7", Usage(input_tokens=10)) is None
    assert "no-such-model-7" not in bundled
    assert bundled.cost("ft:gpt-4o-mini:acme::abc123", Usage(input_tokens=10)) is None


# --- lookups -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("asked", "priced_as"), [
    ("gpt-4o", "gpt-4o"),
    ("gpt-4o-2024-08-06", "gpt-4o"),
    ("gpt-4o-2024-05-13", "gpt-4o-2024-05-13"),  # an exact snapshot entry beats the fallback
    ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
    ("GPT-4.1", "gpt-4.1"),
    ("openai/gpt-5.5", "gpt-5.5"),
    ("o3-2025-04-16", "o3"),
    ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
    ("claude-opus-4-1-20250805", "claude-opus-4-1"),
    ("claude-3-5-haiku-latest", "claude-3-5-haiku"),
    ("anthropic/claude-haiku-4-5", "claude-haiku-4-5"),
    ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5"),
    ("claude-sonnet-4-5@20250929", "claude-sonnet-4-5"),
    ("models/gemini-2.5-pro", "gemini-2.5-pro"),
    ("gemini-2.5-flash-preview-05-20", "gemini-2.5-flash"),
    ("gemini-2.5-flash-lite-preview-09-2025", "gemini-2.5-flash-lite"),
    ("gemini-3-pro-preview", "gemini-3-pro"),
    ("mock-1", "mock-*"),
    ("mock-embed", "mock-*"),
    ("mock", "mock"),
])
def test_snapshot_and_prefix_fallbacks(bundled: PriceTable, asked: str, priced_as: str) -> None:
    table = load_yaml(BUNDLED_PRICES)["models"]
    entry = table[priced_as]
    assert bundled.price(asked) == Price(entry["input"], entry["output"], entry.get("cached_input"),
                                         entry.get("cache_write"))


@pytest.mark.parametrize("asked", ["gpt-4o-mini-audio", "gpt-4", "claude", "gemini", "o3-deep-research-x",
                                   "llama3:8b", "mockingbird", ""])
def test_fallbacks_do_not_guess_a_different_model(bundled: PriceTable, asked: str) -> None:
    assert bundled.price(asked) is None


def test_name_candidates_are_tried_in_documented_order() -> None:
    assert list(name_candidates("Bedrock/US.Anthropic.Claude-Sonnet-4-5-20250929-v1:0")) == [
        "Bedrock/US.Anthropic.Claude-Sonnet-4-5-20250929-v1:0",
        "bedrock/us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        "claude-sonnet-4-5-20250929-v1:0",
        "claude-sonnet-4-5-20250929",
        "claude-sonnet-4-5",
    ]


def test_longest_prefix_pattern_wins_and_exact_names_beat_patterns() -> None:
    table = PriceTable({"acme-*": Price(1, 1), "acme-big-*": Price(2, 2), "acme-big-v2": Price(3, 3)})
    assert table.price("acme-small") == Price(1, 1)
    assert table.price("acme-big-v1") == Price(2, 2)
    assert table.price("acme-big-v2") == Price(3, 3)
    assert table.price("acme-big-v2-2025-01-01") == Price(3, 3)


# --- layers ------------------------------------------------------------------------------------


def test_overrides_beat_the_file_which_beats_the_bundled_table(tmp_path: Path) -> None:
    prices = tmp_path / "prices.yaml"
    prices.write_text("models:\n  gpt-4o: {input: 2.0, output: 9.0}\n"
                      "  house-model: {input: 0.5, output: 1.0}\n", encoding="utf-8")
    file_only = PriceTable.load(file=prices)
    assert file_only.price("gpt-4o") == Price(2.0, 9.0)
    assert file_only.price("house-model") == Price(0.5, 1.0)

    table = PriceTable.load({"gpt-4o": {"input": 1.0, "output": 4.0}}, prices)
    assert table.price("gpt-4o") == Price(1.0, 4.0)  # the whole entry is replaced
    assert table.price("gpt-4o-2024-08-06") == Price(1.0, 4.0)
    assert table.price("house-model") == Price(0.5, 1.0)
    assert table.price("claude-haiku-4-5") == PriceTable.load().price("claude-haiku-4-5")


def test_design_example_overrides_stay_valid() -> None:
    if not DESIGN.is_file():
        pytest.skip("shared/DESIGN.md is not beside this checkout")
    design = DESIGN.read_text(encoding="utf-8")
    block = re.search(r"^pricing:\n(?:  .*\n)+", design, re.MULTILINE)
    assert block is not None, "DESIGN.md lost its pricing example"
    overrides = parse_yaml(block.group(0), "DESIGN.md")["pricing"]["models"]
    table = PriceTable.load(overrides)
    assert table.price("gpt-5.5") == Price(1.25, 10.0, cached_input=0.125)
    assert table.price("claude-sonnet-4-5") == Price(3.0, 15.0, cached_input=0.30, cache_write=3.75)


def test_bad_overrides_report_gateway_yaml_lines() -> None:
    config = parse_yaml("pricing:\n  models:\n    gpt-4o:\n      input: cheap\n    'x': 1\n", "gateway.yaml")
    with pytest.raises(PricingError) as caught:
        PriceTable.load(config["pricing"]["models"])
    assert [(p.file, p.line, p.key) for p in caught.value.problems] == [
        ("gateway.yaml", 4, "pricing.models.gpt-4o.input"),
        ("gateway.yaml", 3, "pricing.models.gpt-4o.output"),
        ("gateway.yaml", 5, "pricing.models.x"),
    ]


@pytest.mark.parametrize("case", load_cases("bad_price_files"))
def test_malformed_price_file_problems_name_file_and_line(tmp_path: Path, case: dict[str, Any]) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(case["yaml"], encoding="utf-8")
    with pytest.raises(PricingError) as caught:
        PriceTable.load(file=path)
    problems = caught.value.problems
    assert [(p.line, p.key) for p in problems] == [(want["line"], want["key"]) for want in case["problems"]]
    for problem, want in zip(problems, case["problems"], strict=True):
        assert problem.file == str(path)
        assert want["message"] in problem.message
    assert str(path) in str(caught.value)


def test_missing_price_file_is_a_problem(tmp_path: Path) -> None:
    with pytest.raises(PricingError) as caught:
        PriceTable.load(file=tmp_path / "nowhere.yaml")
    assert "cannot read the file" in caught.value.problems[0].message


# --- the bundled table -------------------------------------------------------------------------


def test_bundled_table_is_dated_sourced_and_covers_the_current_families() -> None:
    data = load_yaml(BUNDLED_PRICES)
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(data["taken"]))
    assert all(str(url).startswith("https://") for url in data["source"])
    table = PriceTable.load()
    for model in ("gpt-5.5", "gpt-5", "gpt-5-mini", "gpt-5-nano", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano",
                  "gpt-4o", "gpt-4o-mini", "o3", "o4-mini", "text-embedding-3-small", "text-embedding-3-large",
                  "claude-opus-4-1", "claude-opus-4-5", "claude-sonnet-4-5", "claude-haiku-4-5",
                  "gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite", "mock-1"):
        price = table.price(model)
        assert price is not None, model
        assert price.input > 0, model


def test_bundled_prices_are_internally_consistent() -> None:
    models = load_yaml(BUNDLED_PRICES)["models"]
    for name, entry in models.items():
        if entry.get("cached_input") is not None:
            assert entry["cached_input"] < entry["input"], name
        if entry.get("cache_write") is not None:
            assert entry["cache_write"] > entry["input"], name
        if re.fullmatch(r"claude-(opus|sonnet|haiku)-4(-\d)?", name):
            # Anthropic: cache reads 0.1x input, 5-minute cache writes 1.25x input.
            assert entry["cached_input"] == pytest.approx(entry["input"] * 0.1), name
            assert entry["cache_write"] == pytest.approx(entry["input"] * 1.25), name
