"""An OpenAI Chat Completions request -> an Anthropic Messages request.

`chat_to_anthropic` is pure: it reads the Chat Completions body and returns the body to
POST to `/v1/messages`. Messages and tools are converted by their own modules; this one
maps the request-wide parameters and decides what cannot be expressed:

- features Claude does not have (several choices, logprobs, audio, logit bias, ...)
  raise `UnsupportedRequest` saying what to change;
- hints that only tune OpenAI's service (seed, penalties, store, prompt-cache keys, ...)
  are dropped;
- every other key is unknown and raises, so a typo or a new OpenAI feature is never
  silently ignored.

Model differences (sampling parameters, the style of thinking) come from `ModelTraits`.
"""

from __future__ import annotations

from typing import Any

from providers.allowance import requested_output_cap
from providers.anthropic.messages import convert_messages
from providers.anthropic.tools import convert_tools, history_tools
from providers.anthropic.traits import ModelTraits, traits_for
from providers.base import UnsupportedRequest
from providers.shapes import request_guard

DEFAULT_MAX_TOKENS = 4096
"""Sent when the client sets no output limit (Anthropic requires one)."""
# reasoning_effort -> thinking.budget_tokens for models that take a manual budget.
THINKING_BUDGETS = {"minimal": 1024, "low": 1024, "medium": 4096, "high": 16384, "xhigh": 32768,
                    "max": 32768}
# reasoning_effort -> output_config.effort for models that think adaptively.
ADAPTIVE_EFFORTS = {"minimal": "low", "low": "low", "medium": "medium", "high": "high", "xhigh": "xhigh",
                    "max": "max"}

_DROPPED = frozenset({
    "frequency_penalty", "metadata", "prediction", "presence_penalty", "prompt_cache_key",
    "prompt_cache_options", "prompt_cache_retention", "seed", "service_tier", "store",
    "stream_options", "verbosity",
})
_TRANSLATED = frozenset({
    "function_call", "functions", "logprobs", "max_completion_tokens", "max_tokens", "messages",
    "modalities", "model", "n", "parallel_tool_calls", "reasoning_effort", "response_format",
    "safety_identifier", "stop", "stream", "temperature", "tool_choice", "tools", "top_k",
    "top_logprobs", "top_p", "user",
})
_UNSUPPORTED = {
    "audio": "Claude cannot answer with audio; remove 'audio' and ask for text.",
    "logit_bias": "Claude has no logit bias; remove 'logit_bias'.",
    "moderation": "Anthropic runs no OpenAI moderation; remove 'moderation' (use a Lockgate guardrail).",
    "web_search_options": "Anthropic's web search is a server tool, not 'web_search_options'; remove it.",
}


@request_guard("Anthropic")
def chat_to_anthropic(body: dict[str, Any], model: str, *, default_max_tokens: int = DEFAULT_MAX_TOKENS,
                      traits: ModelTraits | None = None) -> dict[str, Any]:
    """The Anthropic Messages body for a Chat Completions `body`, sent to `model`.

    `traits` says what the target accepts; by default they are read from the model id
    for `anthropic-version: 2023-06-01` (see `traits_for`).
    """
    traits = traits or traits_for(model)
    _refuse_unsupported(body)
    system, messages = convert_messages(body.get("messages"))
    request: dict[str, Any] = {"model": model, "max_tokens": _max_tokens(body, default_max_tokens)}
    if system:
        request["system"] = system
    request["messages"] = messages
    tools, tool_choice = convert_tools(body)
    if not tools:
        # Tool blocks in the history need declared tools even when the client sent none.
        tools, tool_choice = history_tools(messages)
    if tools:
        request["tools"] = tools
    if tool_choice is not None:
        request["tool_choice"] = tool_choice
    # Anthropic refuses whitespace-only stop sequences ("\n" is common with OpenAI): drop them.
    stop = body.get("stop")
    stops = [each for each in ([stop] if isinstance(stop, str) else stop or []) if each.strip()]
    if stops:
        request["stop_sequences"] = stops
    user = body.get("user") or body.get("safety_identifier")
    if user:
        request["metadata"] = {"user_id": user}
    output_format = _output_format(body.get("response_format"))
    if output_format is not None:
        request["output_config"] = {"format": output_format}
    thinking = _apply_thinking(request, body.get("reasoning_effort"), traits)
    _apply_sampling(request, body, traits, thinking)
    if body.get("stream"):
        request["stream"] = True
    return request


def _refuse_unsupported(body: dict[str, Any]) -> None:
    for key, value in body.items():
        if key in _UNSUPPORTED:
            # An empty logit bias changes nothing; an empty web_search_options turns search on.
            if value is not None and (value or key != "logit_bias"):
                raise UnsupportedRequest(_UNSUPPORTED[key], param=key)
        elif key not in _TRANSLATED and key not in _DROPPED:
            raise UnsupportedRequest(
                f"'{key}' is not a Chat Completions parameter Lockgate can send to Anthropic; remove it.",
                param=key)
    if body.get("n") not in (None, 1):
        raise UnsupportedRequest("Claude returns one choice per request; set 'n' to 1 and send "
                                 "several requests instead.", param="n")
    if body.get("logprobs") or body.get("top_logprobs") is not None:
        raise UnsupportedRequest("Claude does not return log probabilities; remove 'logprobs' and "
                                 "'top_logprobs'.", param="logprobs")
    if "audio" in (body.get("modalities") or ()):
        raise UnsupportedRequest("Claude answers in text only; set 'modalities' to [\"text\"].",
                                 param="modalities")


def _max_tokens(body: dict[str, Any], default: int) -> int:
    value = body.get("max_completion_tokens")
    if value is None:
        value = body.get("max_tokens")
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise UnsupportedRequest("'max_completion_tokens' must be a positive integer.",
                                 param="max_completion_tokens")
    return value


def _output_format(response_format: Any) -> dict[str, Any] | None:
    if response_format is None:
        return None
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "text":
        return None
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        if not isinstance(schema, dict):
            raise UnsupportedRequest("'response_format.json_schema.schema' must be a JSON schema object.",
                                     param="response_format")
        return {"type": "json_schema", "schema": schema}
    raise UnsupportedRequest(
        f"Anthropic has no {kind!r} response format; use {{\"type\": \"json_schema\"}} with a schema "
        "(structured outputs).", param="response_format")


def _apply_thinking(request: dict[str, Any], effort: Any, traits: ModelTraits) -> bool:
    """Turn on thinking for `reasoning_effort`; True when the request thinks."""
    if effort is None:
        return False
    if effort == "none":
        if traits.thinking == "adaptive":
            # Later models think by default; "none" has to say so.
            request["thinking"] = {"type": "disabled"}
        return False
    if effort not in THINKING_BUDGETS:
        raise UnsupportedRequest(f"Unknown 'reasoning_effort' {effort!r}.", param="reasoning_effort")
    if not _thinking_possible(request):
        return False
    if traits.thinking == "adaptive":
        request["thinking"] = {"type": "adaptive"}
        request.setdefault("output_config", {})["effort"] = ADAPTIVE_EFFORTS[effort]
        return True
    budget = THINKING_BUDGETS[effort]
    request["thinking"] = {"type": "enabled", "budget_tokens": budget}
    request["max_tokens"] = _with_budget(request["max_tokens"], budget)
    return True


def _with_budget(max_tokens: int, budget: int) -> int:
    # OpenAI counts reasoning inside the completion limit; Anthropic wants the budget below
    # max_tokens, so the caller's limit is kept for the answer itself.
    return max_tokens + budget if max_tokens <= budget else max_tokens


def output_allowance(body: dict[str, Any], traits: ModelTraits, default_max_tokens: int = DEFAULT_MAX_TOKENS
                     ) -> int:
    """The `max_tokens` a request translated from `body` may carry (thinking included): the
    most output it can bill. Chat or Responses fields; never raises (the translation judges)."""
    cap = requested_output_cap(body) or default_max_tokens
    effort = body.get("reasoning_effort")
    if effort is None and isinstance(body.get("reasoning"), dict):
        effort = body["reasoning"].get("effort")
    budget = THINKING_BUDGETS.get(effort) if isinstance(effort, str) else None
    if budget is None or traits.thinking == "adaptive":
        return cap  # adaptive thinking spends within max_tokens
    return _with_budget(cap, budget)


def _thinking_possible(request: dict[str, Any]) -> bool:
    """Whether Anthropic would accept thinking on this request.

    It refuses thinking with a forced tool choice, and in a tool loop whose last assistant
    turn called a tool without its thinking block (which OpenAI clients do not keep unless
    they send back `thinking_blocks`). Answering without thinking beats a 400.
    """
    if (request.get("tool_choice") or {}).get("type") in ("any", "tool"):
        return False
    last_assistant = next((turn for turn in reversed(request["messages"]) if turn["role"] == "assistant"),
                          None)
    if last_assistant is None:
        return True
    blocks = last_assistant["content"]
    calls_tool = any(block["type"] == "tool_use" for block in blocks)
    return not calls_tool or blocks[0]["type"] in ("thinking", "redacted_thinking")


def _apply_sampling(request: dict[str, Any], body: dict[str, Any], traits: ModelTraits,
                    thinking: bool) -> None:
    if not traits.sampling:
        return
    temperature, top_p, top_k = body.get("temperature"), body.get("top_p"), body.get("top_k")
    for name, value in (("temperature", temperature), ("top_p", top_p), ("top_k", top_k)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise UnsupportedRequest(f"'{name}' must be a number.", param=name)
    if thinking:
        # With thinking Anthropic fixes temperature and top_k, and allows top_p in [0.95, 1].
        if top_p is not None and 0.95 <= top_p <= 1:
            request["top_p"] = top_p
        return
    if temperature is not None:
        # OpenAI's range is 0..2, Anthropic's 0..1.
        request["temperature"] = min(max(float(temperature), 0.0), 1.0)
    elif top_p is not None:
        # Claude 4.5 and later reject temperature and top_p together; temperature wins.
        request["top_p"] = top_p
    if top_k is not None:
        request["top_k"] = top_k
