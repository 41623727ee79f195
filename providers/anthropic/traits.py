"""What a Claude model accepts, where generations of the Messages API differ.

Two request features changed under the same endpoint, and a gateway that switches an
agent to Claude by editing one line of config must not trip over them:

- Sampling parameters (`temperature`, `top_p`, `top_k`) are rejected with a 400 by
  Opus 4.7 and every later model, and by every model under `anthropic-version:
  2026-10-21`.
- Manual thinking budgets (`thinking.budget_tokens`) are rejected from Opus 4.7 on;
  4.6 and later models take `{"type": "adaptive"}` plus `output_config.effort` instead.

`traits_for` reads the generation from the model id (`claude-opus-4-7`,
`claude-sonnet-4-5-20250929`, `claude-3-5-haiku-latest`, Bedrock's
`us.anthropic.claude-sonnet-5-v1:0`, ...). An id it cannot read (a custom deployment
name) gets the older, more permissive traits; pass explicit `ModelTraits` for those.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

LEGACY_API_VERSION = "2023-06-01"
NO_SAMPLING_API_VERSION = "2026-10-21"
"""The first API version that rejects sampling parameters on every model."""

ThinkingStyle = Literal["budget", "adaptive"]

# claude-<family>-<major>[-<minor>] (current ids) or claude-<major>[-<minor>]-<family> (Claude 3.x).
# The minor is one or two digits so that a trailing date (-20250514) is never read as one.
_NEW_ID = re.compile(r"claude-[a-z]+-(\d+)(?:[-.](\d{1,2}))?(?!\d)")
_OLD_ID = re.compile(r"claude-(\d+)(?:[-.](\d{1,2}))?-[a-z]+")

_ADAPTIVE_FROM = (4, 6)
_NO_SAMPLING_FROM = (4, 7)


@dataclass(frozen=True, slots=True)
class ModelTraits:
    """The request features a target model accepts."""

    sampling: bool = True
    """Whether `temperature`, `top_p` and `top_k` may be sent."""
    thinking: ThinkingStyle = "budget"
    """`budget`: `{"type": "enabled", "budget_tokens": N}`; `adaptive`: `{"type": "adaptive"}`
    with `output_config.effort`."""


def model_generation(model: str) -> tuple[int, int] | None:
    """`(major, minor)` of a Claude model id, or None when the id does not say."""
    found = _NEW_ID.search(model) or _OLD_ID.search(model)
    if found is None:
        return None
    return int(found.group(1)), int(found.group(2) or 0)


def traits_for(model: str, api_version: str = LEGACY_API_VERSION) -> ModelTraits:
    """The traits of `model` when called with `anthropic-version: api_version`."""
    generation = model_generation(model)
    sampling = api_version < NO_SAMPLING_API_VERSION and (
        generation is None or generation < _NO_SAMPLING_FROM
    )
    adaptive = generation is not None and generation >= _ADAPTIVE_FROM
    return ModelTraits(sampling=sampling, thinking="adaptive" if adaptive else "budget")
