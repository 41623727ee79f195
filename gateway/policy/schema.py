"""One policy file's YAML -> a compiled `Policy`, or every problem with it.

Validation never stops at the first problem: each rule is checked key by key, and
every unknown key, wrong type, bad pattern, condition that does not compile and
action/stage combination that makes no sense is reported with its line and a fix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from gateway.policy.conditions import Condition, compile_condition
from gateway.policy.detectors import DETECTORS
from gateway.policy.matcher import TextMatcher
from gateway.policy.model import (
    ACTIONS,
    DEFAULT_APPROVAL,
    DEFAULT_REPLACEMENT,
    ON_VIOLATION,
    STAGES,
    ApprovalSpec,
    Policy,
    Rule,
)
from gateway.policy.names import ToolList, skeleton
from gateway.policy.trial import trial_problem
from gateway.yamlsrc import Problem, line_of

_COMMON_KEYS = {"name", "description", "stage", "when", "action", "shadow"}
_TEXT_KEYS = {"pattern", "detectors"}
# The settings each action accepts (beyond the common keys).
_ACTION_KEYS: dict[str, set[str]] = {
    "allow": {"message"},
    "deny": {"message", "on_violation"} | _TEXT_KEYS,
    "require_approval": {"message", "on_violation", "approval"} | _TEXT_KEYS,
    "redact": {"replacement"} | _TEXT_KEYS,
    "review": {"sample"} | _TEXT_KEYS,
    "tag": {"tags"} | _TEXT_KEYS,
}
_TOOL_RULE_KEYS = {"tools", "on_violation", "message", "approval"}
_ACTION_STAGES: dict[str, tuple[str, ...]] = {
    "require_approval": ("request", "tool_call"),
    "redact": ("request", "response"),
}
_ANY_RULE_KEY = _COMMON_KEYS | _TOOL_RULE_KEYS | set().union(*_ACTION_KEYS.values())
_APPROVAL_KEYS = {"mode", "timeout_s", "on_timeout", "notify"}
_POLICY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class _RuleReader:
    """Reads one rule mapping (or a mapping inside it), collecting problems instead of raising."""

    file: str
    policy: str
    rule_name: str | None
    data: dict
    prefix: str
    problems: list[Problem] = field(default_factory=list)

    def nested(self, data: dict, key: str) -> _RuleReader:
        return _RuleReader(self.file, self.policy, self.rule_name, data, f"{self.prefix}.{key}",
                           self.problems)

    def problem(self, key: str, message: str) -> None:
        line = line_of(self.data, key) if key else line_of(self.data, None)
        where = f"{self.prefix}.{key}" if key else self.prefix
        self.problems.append(Problem(self.file, line, where, message, self.rule_name))

    def get(self, key: str, kind: type | tuple[type, ...], what: str, default: Any = None) -> Any:
        if key not in self.data:
            return default
        value = self.data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        # YAML booleans are ints to Python; `timeout_s: yes` is still wrong.
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            self.problem(key, f"'{key}' must be {what}, not {type(value).__name__} {value!r}")
            return default
        return value

    def choice(self, key: str, options: tuple[str, ...], default: str | None) -> str | None:
        value = self.get(key, str, f"one of {', '.join(options)}", default)
        if value is not None and value not in options:
            self.problem(key, f"'{key}' is '{value}'; use one of: {', '.join(options)}")
            return default
        return value


def parse_policy(data: Any, file: str) -> tuple[Policy | None, list[Problem]]:
    """Compile one file's parsed YAML. Returns (policy or None, problems)."""
    if not isinstance(data, dict):
        hint = "the file is empty" if data is None else f"the file holds a {type(data).__name__}"
        return None, [Problem(file, 1, "", f"{hint}; a policy file is a mapping with 'policy:' and 'rules:'")]
    problems: list[Problem] = []
    for key in data:
        if key not in ("policy", "description", "rules"):
            problems.append(Problem(file, line_of(data, key), str(key),
                                    f"unknown key '{key}'; a policy has policy, description, rules"))
    name = data.get("policy")
    if not isinstance(name, str) or not _POLICY_NAME.match(name):
        problems.append(Problem(file, line_of(data, "policy"), "policy",
                                "'policy:' must name the policy (letters, digits, '_', '-', '.'), "
                                "e.g. 'policy: default'"))
        name = ""
    description = data.get("description", "")
    if not isinstance(description, str):
        problems.append(Problem(file, line_of(data, "description"), "description", "'description' must be text"))
    rules_data = data.get("rules", [])
    if not isinstance(rules_data, list):
        problems.append(Problem(file, line_of(data, "rules"), "rules", "'rules' must be a list of rules"))
        rules_data = []
    rules: list[Rule] = []
    seen: set[str] = set()
    for index, rule_data in enumerate(rules_data):
        prefix = f"rules[{index}]"
        if not isinstance(rule_data, dict):
            problems.append(Problem(file, line_of(rules_data, index), prefix,
                                    "a rule must be a mapping with at least 'name' and 'action' or 'tools'"))
            continue
        rule_name = rule_data.get("name")
        reader = _RuleReader(file, name, rule_name if isinstance(rule_name, str) else None,
                             rule_data, prefix)
        rule = _parse_rule(reader)
        if reader.rule_name in seen:
            reader.problem("name", f"rule name '{reader.rule_name}' is used twice in this policy; rename one")
        if reader.rule_name:
            seen.add(reader.rule_name)
        problems.extend(reader.problems)
        if rule is not None:
            rules.append(rule)
    if problems:
        return None, problems
    return Policy(name=name, file=file, rules=tuple(rules), description=description or ""), []


def _parse_rule(reader: _RuleReader) -> Rule | None:
    data = reader.data
    name = reader.rule_name
    if not name:
        reader.problem("name" if "name" in data else "", "every rule needs a 'name' (text, unique in the policy)")
    tools = _parse_tools(reader) if "tools" in data else None
    is_tool_rule = "tools" in data
    action = reader.choice("action", ACTIONS, "deny" if is_tool_rule else None)
    if action is None:
        if "action" not in data:
            reader.problem("", f"rule needs an 'action' ({', '.join(ACTIONS)}) or a 'tools' list")
        for key in data:  # misspelt keys are wrong whatever the action turns out to be
            if key not in _ANY_RULE_KEY:
                reader.problem(str(key), f"unknown key '{key}'; a rule takes: {', '.join(sorted(_ANY_RULE_KEY))}")
        return None
    explicit_stage = reader.choice("stage", STAGES, None)
    stage = explicit_stage or "request"
    stages = frozenset({explicit_stage} if explicit_stage else ({"request", "tool_call"} if is_tool_rule
                                                                  else {"request"}))
    allowed = _COMMON_KEYS | (_TOOL_RULE_KEYS if is_tool_rule else _ACTION_KEYS[action])
    for key in data:
        if key not in allowed:
            reader.problem(str(key), _unknown_key_hint(str(key), action, is_tool_rule))
    _check_combination(reader, action, stage, stages, is_tool_rule)
    when = _parse_when(reader, stage if len(stages) == 1 else None, action)
    on_violation = _parse_on_violation(reader, is_tool_rule, stages)
    approval = _parse_approval(reader, stages) if action == "require_approval" else None
    matcher = _parse_matcher(reader, action) if "tools" not in data else None
    tags = _parse_tags(reader) if action == "tag" and not is_tool_rule else ()
    sample = _parse_sample(reader)
    shadow = reader.get("shadow", bool, "true or false", False)
    message = reader.get("message", str, "text")
    replacement = reader.get("replacement", str, "text", DEFAULT_REPLACEMENT)
    reader.get("description", str, "text")
    if reader.problems or not name:
        return None
    return Rule(
        policy=reader.policy, name=name, action=action, stages=stages, when=when, tools=tools,
        on_violation=on_violation, approval=approval, matcher=matcher, replacement=replacement,
        message=message, tags=tags, sample=sample, shadow=shadow, file=reader.file,
        line=line_of(data, None),
    )


def _unknown_key_hint(key: str, action: str, is_tool_rule: bool) -> str:
    if is_tool_rule:
        return f"'{key}' does not apply to a tool rule; it takes: {', '.join(sorted(_TOOL_RULE_KEYS))}"
    for other, keys in _ACTION_KEYS.items():
        if key in keys:
            return f"'{key}' does not apply to action '{action}' (it belongs to '{other}')"
    return f"unknown key '{key}'; a rule takes: {', '.join(sorted(_COMMON_KEYS | _ACTION_KEYS[action]))}"


def _check_combination(reader: _RuleReader, action: str, stage: str, stages: frozenset[str],
                       is_tool_rule: bool) -> None:
    if is_tool_rule:
        if action not in ("deny", "require_approval"):
            reader.problem("action", f"a tool rule's action is deny (default) or require_approval, "
                                     f"not '{action}'")
        if "response" in stages:
            reader.problem("stage", "a tool rule runs at stage request or tool_call (omit 'stage' for both)")
        return
    allowed_stages = _ACTION_STAGES.get(action)
    if allowed_stages and stage not in allowed_stages:
        reader.problem("stage" if "stage" in reader.data else "action",
                       f"action '{action}' works at stage {' or '.join(allowed_stages)}, not {stage}")
    if action == "redact" and not (_TEXT_KEYS & reader.data.keys()):
        reader.problem("action", "a redact rule needs a 'pattern' or 'detectors' to know what to redact")


def _parse_when(reader: _RuleReader, stage: str | None, action: str) -> Condition | None:
    source = reader.get("when", str, "a CEL expression (text; quote it in YAML)")
    if source is None:
        return None
    condition, messages = compile_condition(source, stage)
    if condition is not None and (problem := trial_problem(condition, stage)):
        messages.append(problem)
    for message in messages:
        reader.problem("when", message)
    if condition is not None and action == "redact" and "response_text" in condition.variables:
        reader.problem("when", "a redact rule cannot depend on response_text (text already sent cannot "
                               "be redacted); put what to find in 'pattern'")
    return condition


def _parse_tools(reader: _RuleReader) -> ToolList | None:
    spec = reader.get("tools", dict, "a mapping: {allow: [names]} or {deny: [names]}")
    if spec is None:
        return None
    lists = [mode for mode in ("allow", "deny") if mode in spec]
    for key in spec:
        if key not in ("allow", "deny", "on_violation"):
            reader.problem("tools", f"unknown key '{key}' in 'tools'; use allow or deny (and on_violation)")
    if len(lists) != 1:
        reader.problem("tools", "'tools' needs exactly one of 'allow' or 'deny'")
        return None
    mode = lists[0]
    names = spec[mode]
    if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() for n in names):
        reader.problem("tools", f"'tools.{mode}' must be a list of tool names (text)")
        return None
    if mode == "deny" and not all(skeleton(name) for name in names):
        reader.problem("tools", "a deny-listed name is made only of invisible characters")
        return None
    return ToolList.of(mode, names)


def _parse_on_violation(reader: _RuleReader, is_tool_rule: bool, stages: frozenset[str]) -> str | None:
    tools = reader.data.get("tools")
    nested = tools.get("on_violation") if isinstance(tools, dict) else None
    if nested is not None and "on_violation" in reader.data:
        reader.problem("on_violation", "'on_violation' is set twice (in the rule and in 'tools'); keep one")
    value = reader.choice("on_violation", ON_VIOLATION, None)
    if nested is not None:
        value = nested if nested in ON_VIOLATION else None
        if value is None:
            reader.problem("tools", f"'tools.on_violation' must be one of: {', '.join(ON_VIOLATION)}")
    if value is None:
        return None
    if not is_tool_rule and "tool_call" not in stages:
        reader.problem("on_violation", "'on_violation' applies to tool rules and to stage tool_call")
    if value == "strip" and not is_tool_rule:
        reader.problem("on_violation", "'strip' removes a declared tool: only a tool rule can do that")
    return value


def _parse_approval(reader: _RuleReader, stages: frozenset[str]) -> ApprovalSpec:
    spec = reader.get("approval", dict, "a mapping (mode, timeout_s, on_timeout, notify)")
    if spec is None:
        return DEFAULT_APPROVAL
    sub = reader.nested(spec, "approval")
    for key in spec:
        if key not in _APPROVAL_KEYS:
            sub.problem(str(key), f"unknown key '{key}' in 'approval'; use {', '.join(sorted(_APPROVAL_KEYS))}")
    mode = sub.choice("mode", ("hold", "defer"), "hold") or "hold"
    on_timeout = sub.choice("on_timeout", ("deny", "approve"), "deny") or "deny"
    timeout = sub.get("timeout_s", (int, float), "a number of seconds", 300)
    if timeout <= 0:
        sub.problem("timeout_s", "'timeout_s' must be more than 0 seconds")
    webhook = None
    notify = sub.get("notify", dict, "a mapping like {webhook: https://...}")
    if notify is not None:
        webhook = notify.get("webhook")
        if not isinstance(webhook, str) or not webhook.startswith(("http://", "https://")) or len(notify) != 1:
            sub.problem("notify", "'notify' takes one key, webhook: an http(s) URL")
            webhook = None
    if mode == "defer" and "request" not in stages:
        sub.problem("mode", "mode 'defer' answers the request at once, so it only works at stage request; "
                            "use 'hold' for tool calls")
    return ApprovalSpec(mode=mode, timeout_s=float(timeout), on_timeout=on_timeout, webhook=webhook)


def _parse_matcher(reader: _RuleReader, action: str) -> TextMatcher | None:
    source = reader.get("pattern", str, "a regular expression (text)")
    pattern = None
    if source is not None:
        try:
            pattern = re.compile(source)
        except re.error as exc:
            reader.problem("pattern", f"the pattern does not compile: {exc}; fix the regular expression "
                                      "(Python re syntax; single-quote it in YAML)")
    detectors = reader.get("detectors", list, "a list of detector names", [])
    unknown = [name for name in detectors if name not in DETECTORS]
    if unknown:
        reader.problem("detectors", f"unknown detector(s) {', '.join(map(str, unknown))}; "
                                    f"available: {', '.join(DETECTORS)}")
        return None
    if pattern is None and not detectors:
        return None
    return TextMatcher.build(pattern, detectors)


def _parse_tags(reader: _RuleReader) -> tuple[str, ...]:
    tags = reader.get("tags", list, "a list of tags (text)")
    if not tags or not all(isinstance(tag, str) and tag for tag in tags):
        reader.problem("tags" if "tags" in reader.data else "action", "a tag rule needs 'tags': a list of text")
        return ()
    return tuple(tags)


def _parse_sample(reader: _RuleReader) -> float:
    sample = reader.get("sample", (int, float), "a number from 0 to 1", 1.0)
    if not 0 <= sample <= 1:
        reader.problem("sample", f"'sample' is {sample}; use a fraction from 0 to 1 (0.1 = one in ten)")
        return 1.0
    return float(sample)

