"""Conditions: every variable, evaluation order, fail-closed errors, regex(), and facts
that are computed only when a rule reads them."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.policy.conditions import _compiled
from tests.test_policy_support import facts, tenant


def _rule(when: str, action: str = "deny", stage: str = "request") -> str:
    return f"""
policy: team
rules:
  - name: r
    stage: {stage}
    action: {action}
    when: '{when}'
"""


CHAT = {
    "model": "m",
    "metadata": {"team": "support", "tier": "vip"},
    "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "first"}, {"type": "image_url", "image_url": {}}]},
        {"role": "assistant", "content": None, "tool_calls": []},
        {"role": "user", "content": "what is my password"},
    ],
    "tools": [{"type": "function", "function": {"name": "weather_tool"}}],
}
RESPONSES = {
    "model": "m",
    "instructions": "be kind",
    "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "hello there"}]},
        {"type": "function_call_output", "call_id": "c", "output": "42 degrees"},
    ],
    "tools": [{"type": "web_search_preview"}, {"type": "mcp", "server_label": "docs"}],
}

VARIABLES = [
    ('tenant == "acme"', CHAT, True),
    ('agent == "triage"', CHAT, True),
    ('model == "gpt-x"', CHAT, True),
    ("target_model == null && provider == null", CHAT, True),
    ('api == "chat"', CHAT, True),
    ('api == "responses"', RESPONSES, True),
    ('user_input == "what is my password"', CHAT, True),
    ('user_input == "hello there"', RESPONSES, True),
    ('messages.size() == 4 && messages[1].content == "first" && messages[2].content == ""', CHAT, True),
    ('messages[0].role == "system" && messages[0].content == "be kind"', RESPONSES, True),
    ('messages.exists(m, m.role == "tool" && m.content == "42 degrees")', RESPONSES, True),
    ('"weather_tool" in tool_names', CHAT, True),
    ('"web_search" in tool_names && "mcp:docs" in tool_names && "mcp" in tool_names', RESPONSES, True),
    ("estimated_input_tokens == 1234", CHAT, True),
    ("estimated_cost_usd > 0.5", CHAT, True),
    ('headers["x-team"] == "blue"', CHAT, True),
    ('!("authorization" in headers)', CHAT, True),
    ('metadata.tier == "vip"', CHAT, True),
    ('has(metadata.missing)', CHAT, False),
    ('regex(user_input, "(?i)PASSWORD")', CHAT, True),
    ('user_input.matches("pass(word)?")', CHAT, True),
    ('user_input.lowerAscii().contains("password")', CHAT, True),
]


@pytest.mark.parametrize(("when", "body", "matches"), VARIABLES, ids=[v[0] for v in VARIABLES])
def test_each_variable(tmp_path: Path, when: str, body: dict, matches: bool) -> None:
    policies = tenant(tmp_path, _rule(when.replace("'", "''")))
    verdict = policies.evaluate_request(facts(
        body, agent="triage", alias="gpt-x", headers={"X-Team": "blue", "Authorization": "Bearer sk-x"},
        estimate_tokens=lambda: 1234, estimate_cost=lambda: 0.75,
    ))
    assert verdict.outcome == ("deny" if matches else "allow"), verdict.decisions
    assert all(decision.error is None for decision in verdict.decisions)


@pytest.mark.parametrize(("when", "action", "outcome"), [
    ('metadata.missing == "x"', "deny", "deny"),
    ('metadata.missing == "x"', "allow", "deny"),
    ('metadata.missing == "x"', "tag", "deny"),
    ('metadata.missing == "x"', "require_approval", "require_approval"),
    ("estimated_cost_usd > 1.0", "deny", "deny"),   # null when unknown: a type error
    ('user_input == "hi" ? "just text" : true', "allow", "deny"),  # not a boolean (for this input)
    ("1 / 0 == 1", "allow", "deny"),
])
def test_a_condition_that_fails_at_run_time_fails_closed(tmp_path: Path, when: str, action: str,
                                                          outcome: str) -> None:
    body = _rule(when.replace("'", "''"), action) + ("    tags: [x]\n" if action == "tag" else "")
    verdict = tenant(tmp_path, body).evaluate_request(facts())
    assert verdict.outcome == outcome
    assert verdict.deciding is not None and verdict.deciding.error
    assert verdict.error_code == ("blocked_by_policy" if outcome == "deny" else None)


def test_a_shadow_rule_that_fails_changes_nothing(tmp_path: Path) -> None:
    verdict = tenant(tmp_path, _rule("metadata.missing") + "    shadow: true\n").evaluate_request(facts())
    assert verdict.outcome == "allow"
    assert [(d.rule, d.action, d.shadow, bool(d.error)) for d in verdict.decisions] == [("r", "deny", True, True)]


ORDER = """
policy: team
rules:
  - name: tag-all
    action: tag
    tags: [seen]
  - name: shadow-deny
    action: deny
    shadow: true
  - name: admins
    when: 'agent == "admin"'
    action: allow
  - name: no-secrets
    when: 'user_input.contains("secret")'
    action: deny
  - name: approve-big
    when: 'user_input.size() > 5'
    action: require_approval
  - name: review
    action: review
  - name: never-sampled
    action: review
    sample: 0
"""


@pytest.mark.parametrize(("agent", "text", "outcome", "rules"), [
    ("admin", "my secret plan", "allow", ["tag-all", "shadow-deny", "admins", "review"]),
    (None, "my secret plan", "deny", ["tag-all", "shadow-deny", "no-secrets", "review"]),
    (None, "a long question", "require_approval", ["tag-all", "shadow-deny", "approve-big", "review"]),
    (None, "hi", "allow", ["tag-all", "shadow-deny", "review"]),
])
def test_first_deciding_rule_decides_and_the_others_still_apply(
        tmp_path: Path, agent: str | None, text: str, outcome: str, rules: list[str]) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": text}]}
    verdict = tenant(tmp_path, ORDER).evaluate_request(facts(body, agent=agent))
    assert verdict.outcome == outcome
    assert [d.rule for d in verdict.decisions] == rules
    assert verdict.decisions[0].tags == ("seen",)


def test_facts_no_rule_reads_are_never_computed(tmp_path: Path) -> None:
    calls: list[str] = []
    request = facts(estimate_tokens=lambda: calls.append("tokens") or 10)
    tenant(tmp_path, _rule('tenant == "x"')).evaluate_request(request)
    assert calls == []
    assert not {"messages", "user_input", "tool_names", "declared"} & set(vars(request))
    second = "  - name: s\n    action: deny\n    when: 'estimated_input_tokens > 50'\n"
    two = _rule("estimated_input_tokens > 5") + second
    tenant(tmp_path, two).evaluate_request(request)
    assert calls == ["tokens"]


def test_regex_compiles_each_pattern_once(tmp_path: Path) -> None:
    policies = tenant(tmp_path, _rule('regex(user_input, "b[aeiou]+t")'))
    hits = _compiled.cache_info().hits
    for text in ("beet", "boat", "bt"):
        body = {"model": "m", "messages": [{"role": "user", "content": text}]}
        policies.evaluate_request(facts(body))
    assert _compiled.cache_info().hits >= hits + 2


TOOL_CALL = """
policy: team
rules:
  - name: r
    stage: tool_call
    action: deny
    when: '{when}'
"""


@pytest.mark.parametrize(("when", "reads_arguments"), [
    ('tool_call.name == "x"', False),
    ('tool_call . name.startsWith("db_")', False),
    ('tool_call.arguments.table == "users"', True),
    ('has(tool_call.arguments.force)', True),
    ('tool_call["arguments"].size() > 0', True),
    ('size(tool_call) > 1', True),
    ('tool_call.name == "x" && tenant == "a"', False),
])
def test_which_conditions_need_the_arguments(tmp_path: Path, when: str, reads_arguments: bool) -> None:
    policies = tenant(tmp_path, TOOL_CALL.format(when=when.replace("'", "''")))
    assert policies.has_tool_rules and policies.needs_tool_arguments is reads_arguments


@pytest.mark.parametrize(("arguments", "outcome", "failed"), [
    ('{"table": "users"}', "deny", False),
    ('{"table": "orders"}', "allow", False),
    ('{"table": ', "deny", True),       # not JSON: fails closed
    ('["users"]', "deny", True),         # not an object
    ('{}', "deny", True),                # missing key
])
def test_tool_call_arguments(tmp_path: Path, arguments: str, outcome: str, failed: bool) -> None:
    policies = tenant(tmp_path, TOOL_CALL.format(when='tool_call.arguments.table == "users"'))
    verdict = policies.evaluate_tool_call(facts(), "db_write", arguments)
    assert verdict.outcome == outcome
    assert bool(verdict.deciding and verdict.deciding.error) is failed
    if verdict.deciding:
        assert verdict.deciding.tool_name == "db_write" and verdict.on_violation == "replace"


def test_unreadable_arguments_do_not_matter_when_no_rule_reads_them(tmp_path: Path) -> None:
    policies = tenant(tmp_path, TOOL_CALL.format(when='tool_call.name == "rm"'))
    assert policies.evaluate_tool_call(facts(), "ls", "{not json").outcome == "allow"
    assert policies.evaluate_tool_call(facts(), "rm", "{not json").outcome == "deny"


def test_arguments_patterns_see_decoded_strings(tmp_path: Path) -> None:
    policy = """
    policy: team
    rules:
      - name: no-keys-to-tools
        stage: tool_call
        action: deny
        detectors: [openai_key]
    """
    policies = tenant(tmp_path, policy)
    assert policies.needs_tool_arguments
    hidden = '{"note": "\\u0073k-abcdefghijklmnopqrstuvwxyz"}'  # "sk-..." spelled with a JSON escape
    assert policies.evaluate_tool_call(facts(), "send", hidden).outcome == "deny"
    assert policies.evaluate_tool_call(facts(), "send", '{"note": "hello"}').outcome == "allow"
