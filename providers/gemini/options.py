"""The request's options in Gemini terms: tools, toolConfig and generationConfig.

The output format (`response_format`) is `providers.gemini.output`'s: whether it goes in
`generationConfig` depends on the model and on whether functions are declared.

Reasoning effort: Gemini 3 and later take a `thinkingLevel`, Gemini 2.x a token
`thinkingBudget`, and a request must not carry both (Gemini docs, "Thinking"). The model
name decides which one is sent. Levels: none and minimal -> MINIMAL (LOW on Pro models,
which have no MINIMAL), low -> LOW, medium -> MEDIUM, high and above -> HIGH. Budgets
follow Google's own OpenAI-compatibility mapping (low 1024, medium 8192, high 24576) with
none -> 0 (128 on Pro models, which cannot turn thinking off) and minimal -> 512 (the
smallest budget every 2.5 model accepts). Any effort but none also asks for thought
summaries, which come back as `reasoning_content`.
"""

from __future__ import annotations

import re
from typing import Any

from providers.base import UnsupportedRequest
from providers.gemini.schema import to_gemini_schema

_SAMPLING = (
    ("temperature", "temperature"),
    ("top_p", "topP"),
    ("seed", "seed"),
)
# presence_penalty and frequency_penalty are dropped, like the other OpenAI-only hints:
# Gemini 2.5 and later answer 400 "Penalty is not enabled" to either.
_LEVELS = {"none": "MINIMAL", "minimal": "MINIMAL", "low": "LOW", "medium": "MEDIUM",
           "high": "HIGH", "xhigh": "HIGH", "max": "HIGH"}
_BUDGETS = {"none": 0, "minimal": 512, "low": 1024, "medium": 8192,
            "high": 24576, "xhigh": 24576, "max": 24576}
_BUDGET_MODELS = re.compile(r"^(models/)?gemini-[12](\.|-)")
_CHOICE_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY"}
_UNSUPPORTED = (
    ("logit_bias", "Gemini has no logit_bias; remove it"),
    ("logprobs", "log probabilities are not available through this gateway for Gemini; remove logprobs"),
    ("top_logprobs", "log probabilities are not available through this gateway for Gemini"),
    ("audio", "audio output is not available for Gemini models; remove audio"),
    ("prediction", "Gemini has no predicted outputs; remove prediction"),
    ("web_search_options", "web search is not available for Gemini through this gateway"),
)


def thinks_in_levels(model: str) -> bool:
    """Gemini 3 and later (thinkingLevel, strict thought signatures); 1.x and 2.x use budgets."""
    return _BUDGET_MODELS.match(model) is None


def tools(body: dict[str, Any]) -> list[dict[str, Any]]:
    """`tools` (or the legacy `functions`) as one Gemini tool of function declarations."""
    declarations = [_declaration(function, where) for function, where in _functions(body)]
    return [{"functionDeclarations": declarations}] if declarations else []


def tool_config(body: dict[str, Any]) -> dict[str, Any] | None:
    choice = body.get("tool_choice") or body.get("function_call")
    if choice is None:
        return None
    if isinstance(choice, str) and choice in _CHOICE_MODES:
        config: dict[str, Any] = {"mode": _CHOICE_MODES[choice]}
    elif isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        allowed = choice.get("allowed_tools") or {}
        names = [tool.get("function", {}).get("name", "") for tool in allowed.get("tools", ())]
        # VALIDATED is "AUTO restricted to allowedFunctionNames"; ANY forces one of them.
        mode = "ANY" if allowed.get("mode") == "required" else "VALIDATED"
        config = {"mode": mode, "allowedFunctionNames": names}
    elif isinstance(choice, dict) and (choice.get("function") or choice.get("name")):
        name = (choice.get("function") or choice)["name"]
        config = {"mode": "ANY", "allowedFunctionNames": [name]}
    else:
        raise UnsupportedRequest(f"Gemini cannot express tool_choice {choice!r}", "tool_choice")
    return {"functionCallingConfig": config}


def generation_config(body: dict[str, Any], model: str) -> dict[str, Any]:
    """Sampling, limits and thinking; `response_format` is `providers.gemini.output`'s job."""
    for param, message in _UNSUPPORTED:
        if body.get(param):
            raise UnsupportedRequest(message, param)
    if "audio" in (body.get("modalities") or ()):
        raise UnsupportedRequest("audio output is not available for Gemini models", "modalities")
    config = {gemini: body[openai] for openai, gemini in _SAMPLING if body.get(openai) is not None}
    max_tokens = next((body[key] for key in ("max_completion_tokens", "max_tokens")
                       if body.get(key) is not None), None)
    if max_tokens is not None:
        config["maxOutputTokens"] = max_tokens
    stop = body.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    if body.get("n") not in (None, 1):
        config["candidateCount"] = body["n"]
    effort = body.get("reasoning_effort")
    if effort is not None:
        config["thinkingConfig"] = _thinking(effort, model)
    return config


def _functions(body: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    found = []
    for index, tool in enumerate(body.get("tools") or ()):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            kind = tool.get("type") if isinstance(tool, dict) else tool
            raise UnsupportedRequest(f"Gemini takes only function tools, not {kind!r}", f"tools[{index}]")
        found.append((tool.get("function") or {}, f"tools[{index}].function"))
    for index, function in enumerate(body.get("functions") or ()):
        found.append((function, f"functions[{index}]"))
    return found


def _declaration(function: dict[str, Any], where: str) -> dict[str, Any]:
    declaration: dict[str, Any] = {"name": function.get("name", "")}
    if function.get("description"):
        declaration["description"] = function["description"]
    parameters = _schema(function.get("parameters") or {}, f"{where}.parameters")
    # Gemini rejects an OBJECT without properties; a function without arguments declares none.
    if parameters.get("properties") or parameters.get("type") not in (None, "OBJECT"):
        declaration["parameters"] = parameters
    return declaration


def _schema(schema: dict[str, Any], where: str) -> dict[str, Any]:
    try:
        return to_gemini_schema(schema)
    except UnsupportedRequest as exc:
        raise UnsupportedRequest(exc.message, where) from exc


def _thinking(effort: str, model: str) -> dict[str, Any]:
    if effort not in _LEVELS:
        raise UnsupportedRequest(f"unknown reasoning_effort {effort!r}", "reasoning_effort")
    pro = "-pro" in model
    config: dict[str, Any] = {"includeThoughts": True} if effort != "none" else {}
    if thinks_in_levels(model):
        level = _LEVELS[effort]
        config["thinkingLevel"] = "LOW" if pro and level == "MINIMAL" else level
    else:
        budget = _BUDGETS[effort]
        config["thinkingBudget"] = 128 if pro and budget == 0 else budget
    return config
