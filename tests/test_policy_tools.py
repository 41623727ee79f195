"""The bypass suite for tool rules at the request: name variants against allow- and
deny-lists, every place a request can name a tool, and stripping."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.policy.names import ToolList, ToolRef, skeleton
from tests.test_policy_support import facts, tenant

# Variants of "delete_file" a human (or a lenient dispatcher) reads as the same name.
VARIANTS = [
    "Delete_File",
    "DELETE_FILE",
    " delete_file ",
    "delete_file\n",
    "delete_\u200bfile",            # zero-width space
    "\ufeffdelete_file",            # byte order mark
    "de\u00adlete_file",            # soft hyphen
    "delete\u2060_file",            # word joiner
    "ｄｅｌｅｔｅ＿ｆｉｌｅ",         # fullwidth
    "d\u0435l\u0435t\u0435_file",  # Cyrillic е
    "delete_f\u0456le",             # Cyrillic і
    "d\u03b5lete_file",             # Greek ε
    "DELETE_F\u0399LE",             # Greek capital iota
    "de\u0301lete_file",            # combining accent
    "delete-file",                  # dash for underscore
    "delete\u2013file",             # en dash
    "de1ete_fi1e",                  # digit one for l
    "delete_fiIe",                  # capital I for l
    "𝐝𝐞𝐥𝐞𝐭𝐞_𝐟𝐢𝐥𝐞",                  # mathematical bold
    "ᴅᴇʟᴇᴛᴇ_ꜰɪʟᴇ".replace("ꜰ", "f"),  # small capitals
]


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_deny_list_catches_every_variant(variant: str) -> None:
    assert ToolList.of("deny", ["delete_file"]).violated_by(ToolRef(variant))


@pytest.mark.parametrize("variant", VARIANTS)
def test_an_allow_list_admits_no_variant(variant: str) -> None:
    assert ToolList.of("allow", ["delete_file"]).violated_by(ToolRef(variant))
    assert not ToolList.of("allow", ["delete_file"]).violated_by(ToolRef("delete_file"))


def test_a_deny_list_leaves_other_names_alone() -> None:
    deny = ToolList.of("deny", ["delete_file"])
    for name in ("read_file", "delete_folder", "file_delete", "undelete_file_log"):
        assert not deny.violated_by(ToolRef(name)), name


@pytest.mark.parametrize("name", ["rսn_shell", "ruո_shell", "run_sheꓡꓡ", "ʀᴜɴ_ꜱʜᴇʟʟ"])
def test_letters_no_table_folds_never_escape_a_deny_list(name: str) -> None:
    # Armenian, Lisu, ... hold Latin look-alikes too: a name left outside ASCII once folded
    # cannot be cleared by a deny-list, whichever names it lists.
    assert ToolList.of("deny", ["run_shell"]).violated_by(ToolRef(name))
    assert ToolList.of("deny", ["something_else"]).violated_by(ToolRef(name)) == (not skeleton(name).isascii())


def test_a_tool_without_a_name_violates_both_kinds_of_list() -> None:
    assert ToolList.of("deny", ["x"]).violated_by(ToolRef(""))
    assert ToolList.of("allow", ["x"]).violated_by(ToolRef(""))


_invisible = st.sampled_from(["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", " ", "\t", "\u0301"])


@given(st.lists(st.tuples(st.integers(0, 11), _invisible), max_size=6), st.lists(st.booleans(), min_size=11,
                                                                                 max_size=11))
def test_invisible_characters_and_case_never_escape_a_deny_list(inserts: list, upper: list) -> None:
    name = "".join(c.upper() if up else c for c, up in zip("delete_file", upper, strict=True))
    for position, char in sorted(inserts, reverse=True):
        name = name[:position] + char + name[position:]
    assert skeleton(name) == skeleton("delete_file")
    assert ToolList.of("deny", ["delete_file"]).violated_by(ToolRef(name))
    if name != "delete_file":
        assert ToolList.of("allow", ["delete_file"]).violated_by(ToolRef(name))


# -- where a request names tools ---------------------------------------------------

ALLOW = """
policy: team
rules:
  - name: whitelist
    tools: {allow: [weather_tool, "mcp:docs", web_search, crm.lookup]}
"""
DENY = """
policy: team
rules:
  - name: blacklist
    tools: {deny: [delete_file, code_interpreter, "mcp:github"]}
"""


def _fn(name: str) -> dict:
    return {"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}


CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
RESPONSES = {"model": "m", "input": "hi"}

DECLARATIONS = [
    # (policy, body, denied tool name or None when allowed)
    ("allow", {**CHAT, "tools": [_fn("weather_tool")]}, None),
    ("allow", {**CHAT, "tools": [_fn("weather_tool"), _fn("Weather_tool")]}, "Weather_tool"),
    ("allow", {**CHAT, "tools": [{"type": "custom", "custom": {"name": "shell"}}]}, "shell"),
    ("allow", {**CHAT, "functions": [{"name": "delete_file"}]}, "delete_file"),
    ("allow", {**CHAT, "function_call": {"name": "run_sql"}}, "run_sql"),
    ("allow", {**CHAT, "tools": [_fn("weather_tool")],
               "tool_choice": {"type": "function", "function": {"name": "run_sql"}}}, "run_sql"),
    ("allow", {**CHAT, "tools": [_fn("weather_tool")], "tool_choice": "required"}, None),
    ("allow", {**CHAT, "tools": [{"type": "function"}]}, "<unreadable>"),
    ("allow", {**CHAT, "tools": ["weather_tool"]}, "<unreadable>"),
    ("allow", {**CHAT, "tools": {"weather_tool": {}}}, "<unreadable>"),
    ("allow", {**RESPONSES, "tools": [{"type": "function", "name": "weather_tool"}]}, None),
    ("allow", {**CHAT, "web_search_options": {}}, None),  # web_search is on the allow-list
    ("deny", {**CHAT, "web_search_options": {"search_context_size": "low"}}, None),
    ("allow", {**RESPONSES, "tools": [{"type": "web_search_preview_2025_03_11"}]}, None),
    ("allow", {**RESPONSES, "tools": [{"type": "code_interpreter", "container": {"type": "auto"}}]},
     "code_interpreter"),
    ("allow", {**RESPONSES, "tools": [{"type": "mcp", "server_label": "docs", "server_url": "https://x"}]}, None),
    ("allow", {**RESPONSES, "tools": [{"type": "mcp", "server_label": "github", "server_url": "https://x"}]},
     "mcp:github"),
    ("allow", {**RESPONSES, "tools": [{"type": "namespace", "name": "crm", "description": "",
                                       "tools": [{"type": "function", "name": "lookup"},
                                                 {"type": "function", "name": "delete"}]}]}, "crm.delete"),
    ("allow", {**RESPONSES, "tool_choice": {"type": "function", "name": "run_sql"}}, "run_sql"),
    ("allow", {**RESPONSES, "tool_choice": {"type": "file_search"}}, "file_search"),
    ("allow", {**RESPONSES, "tools": [{"type": "custom", "name": "grammar_tool"}]}, "grammar_tool"),
    ("deny", {**CHAT, "tools": [_fn("read_file")]}, None),
    ("deny", {**CHAT, "tools": [_fn("DELETE\u200b_FILE")]}, "DELETE\u200b_FILE"),
    ("deny", {**CHAT, "functions": [{"name": "dеlete_file"}]}, "dеlete_file"),
    ("deny", {**CHAT, "tool_choice": {"type": "function", "function": {"name": "Delete-File"}}}, "Delete-File"),
    ("deny", {**RESPONSES, "tools": [{"type": "code_interpreter"}]}, "code_interpreter"),
    ("deny", {**RESPONSES, "tools": [{"type": "mcp", "server_label": "GitHub"}]}, "mcp:GitHub"),
    ("deny", {**RESPONSES, "tool_choice": {"type": "mcp", "server_label": "github", "name": "x"}}, "mcp:github"),
    # An MCP server's tools run at the provider: a deny-list judges what it may call, up front.
    ("deny", {**RESPONSES, "tools": [{"type": "mcp", "server_label": "docs", "allowed_tools": ["read_file"]}]}, None),
    ("deny", {**RESPONSES, "tools": [{"type": "mcp", "server_label": "docs",
                                      "allowed_tools": ["read_file", "delete_file"]}]}, "mcp:docs"),
    ("deny", {**RESPONSES, "tools": [{"type": "mcp", "server_label": "docs",
                                      "allowed_tools": {"tool_names": ["DELETE_FILE"]}}]}, "mcp:docs"),
    ("deny", {**RESPONSES, "tools": [{"type": "mcp", "server_label": "docs"}]}, "mcp:docs"),
    ("deny", {**RESPONSES, "tools": [{"type": "mcp", "server_label": "docs",
                                      "allowed_tools": {"read_only": True}}]}, "mcp:docs"),
    ("deny", {**RESPONSES, "tools": [{"type": "mcp", "server_label": "docs", "allowed_tools": "read_file"}]},
     "<unreadable>"),
    ("deny", {**RESPONSES, "tools": [{"type": "namespace", "name": "fs", "description": "",
                                      "tools": [{"type": "function", "name": "delete_file"}]}]}, "fs.delete_file"),
]


@pytest.mark.parametrize(("kind", "body", "denied"), DECLARATIONS)
def test_every_way_to_name_a_tool_is_checked(tmp_path: Path, kind: str, body: dict, denied: str | None) -> None:
    policies = tenant(tmp_path, ALLOW if kind == "allow" else DENY)
    verdict = policies.evaluate_request(facts(copy.deepcopy(body)))
    if denied is None:
        assert verdict.outcome == "allow" and not verdict.decisions
        return
    assert verdict.outcome == "deny"
    assert verdict.error_code == "tool_not_allowed"
    assert verdict.deciding is not None and verdict.deciding.tool_name == denied
    assert denied in (verdict.deciding.message or "")
    if body.get("tools") == [{"type": "mcp", "server_label": "docs"}]:
        assert "allowed_tools" in (verdict.deciding.message or "")  # says how to fix it


STRIP = """
policy: team
rules:
  - name: whitelist
    tools: {allow: [weather_tool], on_violation: strip}
"""


def test_strip_removes_tools_without_touching_the_callers_body(tmp_path: Path) -> None:
    body = {**CHAT, "tools": [_fn("delete_file"), _fn("weather_tool"), _fn("run_sql")],
            "tool_choice": {"type": "function", "function": {"name": "run_sql"}}, "parallel_tool_calls": True}
    original = copy.deepcopy(body)
    verdict = tenant(tmp_path, STRIP).evaluate_request(facts(body))
    assert body == original
    assert verdict.outcome == "allow" and verdict.body is not None
    assert verdict.body["tools"] == [_fn("weather_tool")]
    assert "tool_choice" not in verdict.body and verdict.body["parallel_tool_calls"] is True
    # run_sql twice: declared in tools, and forced by tool_choice
    assert [(d.tool_name, d.action, d.on_violation) for d in verdict.decisions] == [
        ("delete_file", "deny", "strip"), ("run_sql", "deny", "strip"), ("run_sql", "deny", "strip")]


def test_chat_web_search_options_is_a_declared_web_search_tool(tmp_path: Path) -> None:
    body = {**CHAT, "tools": [_fn("weather_tool")], "web_search_options": {"search_context_size": "low"}}
    verdict = tenant(tmp_path, STRIP).evaluate_request(facts(copy.deepcopy(body)))
    assert verdict.body is not None and "web_search_options" not in verdict.body
    assert verdict.body["tools"] == [_fn("weather_tool")]
    assert [d.tool_name for d in verdict.decisions] == ["web_search"]


def test_stripping_every_tool_drops_the_settings_that_need_tools(tmp_path: Path) -> None:
    body = {**CHAT, "tools": [_fn("delete_file")], "tool_choice": "auto", "parallel_tool_calls": False,
            "functions": [{"name": "x"}], "function_call": "auto"}
    verdict = tenant(tmp_path, STRIP).evaluate_request(facts(body))
    assert verdict.body == CHAT


def test_strip_inside_a_namespace_keeps_its_allowed_functions(tmp_path: Path) -> None:
    policy = STRIP.replace("[weather_tool]", "[crm.lookup]")
    namespace = {"type": "namespace", "name": "crm", "description": "CRM",
                 "tools": [{"type": "function", "name": "lookup"}, {"type": "function", "name": "erase"}]}
    verdict = tenant(tmp_path, policy).evaluate_request(facts({**RESPONSES, "tools": [namespace]}))
    assert verdict.body is not None
    assert verdict.body["tools"] == [{**namespace, "tools": [{"type": "function", "name": "lookup"}]}]


def test_a_shadow_tool_rule_records_but_strips_nothing(tmp_path: Path) -> None:
    policy = STRIP.replace("on_violation: strip}", "on_violation: strip}\n    shadow: true")
    verdict = tenant(tmp_path, policy).evaluate_request(facts({**CHAT, "tools": [_fn("delete_file")]}))
    assert verdict.outcome == "allow" and verdict.body is None
    assert [(d.rule, d.shadow) for d in verdict.decisions] == [("whitelist", True)]


def test_a_tool_rule_with_approval_holds_the_request(tmp_path: Path) -> None:
    policy = """
    policy: team
    rules:
      - name: new-tools
        tools: {allow: [weather_tool]}
        action: require_approval
        approval: {mode: defer, timeout_s: 60}
    """
    verdict = tenant(tmp_path, policy).evaluate_request(facts({**CHAT, "tools": [_fn("send_email")]}))
    assert verdict.outcome == "require_approval" and verdict.error_code is None
    assert verdict.deciding is not None and verdict.deciding.approval is not None
    assert (verdict.deciding.approval.mode, verdict.deciding.approval.timeout_s) == ("defer", 60.0)


def test_a_tool_rule_only_applies_when_its_condition_holds(tmp_path: Path) -> None:
    policy = """
    policy: team
    rules:
      - name: demo-only
        when: 'tenant == "demo"'
        tools: {allow: [weather_tool]}
    """
    policies = tenant(tmp_path, policy)
    body = {**CHAT, "tools": [_fn("lookup_product")]}
    assert policies.evaluate_request(facts(body, tenant="acme")).outcome == "allow"
    assert policies.evaluate_request(facts(body, tenant="demo")).outcome == "deny"
