"""The native condition evaluator against the CEL runtime it stands in for.

Every result of the native closures must be the runtime's result, errors included
(an error makes a rule fail closed): on a table of the runtime's quirks
(fixtures/policy/native_semantics.json), on every supported form with generated
values, and on generated expressions mixing the forms (precedence included). Then
the engine: which conditions run natively, and that the rest still runs on the
runtime in the same pass.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import cel
import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gateway.policy.conditions import FUNCTIONS
from gateway.policy.native import EvalError, compile_native
from tests.test_policy_support import FIXTURES, facts, tenant

REPO = Path(__file__).resolve().parent.parent
NAMES = frozenset({"s", "t", "n", "m", "l", "x", "headers"})
FIELDS = ("a", "tier", "k")
TEXTS = ("", "a", "A", "vip", "tier", "é", "😀", "Straße", "SS", "ab", 'say "hi"', "back\\slash", "x-team", "1")
NUMBERS = (0, 1, -1, 2, 40, 2**53 + 1, 2**63 - 1, -(2**63), 2**63, 2**64 - 1)
DOUBLES = (0.0, -0.0, 0.5, 1.0, 40.0, 2.0**53, 1e300, 5e-324)
PATTERNS = ("a", "(?i)VIP", "^S", r"\d", "é$", "a|b", "[")

_texts = st.sampled_from(TEXTS) | st.text(max_size=6)
_scalars = (st.none() | st.booleans() | _texts | st.sampled_from(NUMBERS) | st.integers(-50, 50)
            | st.sampled_from(DOUBLES) | st.floats(allow_nan=False, allow_infinity=False))
json_values = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.sampled_from(FIELDS) | _texts, children, max_size=3),
    max_leaves=8,
)
contexts = st.fixed_dictionaries({
    "s": _texts, "t": _texts, "n": st.sampled_from(NUMBERS) | st.sampled_from(DOUBLES) | st.integers(-50, 50),
    "m": st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=3),
    "l": st.lists(_scalars, max_size=3), "x": json_values,
    "headers": st.dictionaries(st.sampled_from(("x-team", "x-env")), _texts, max_size=2),
})


def _string_literal(text: str, style: int) -> str:
    """`text` as a CEL string literal, in one of several spellings."""
    if style == 1 and not set(text) & {"'", "\\", "\n", "\r"}:
        return f"'{text}'"
    if style == 2 and not set(text) & {'"', "\\", "\n", "\r"}:
        return f'r"{text}"'
    escapes = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r"}
    escaped = "".join(
        escapes.get(char) or (f"\\u{ord(char):04x}" if style == 3 and 127 < ord(char) < 0xD800 else char)
        for char in text
    )
    return f'"{escaped}"'


def _number_literal(value: int | float) -> str:
    text = repr(abs(value)) if isinstance(value, float) else str(abs(value))
    return f"-{text}" if math.copysign(1, value) < 0 else text


_literals = (
    st.builds(_string_literal, _texts, st.integers(0, 3))
    | st.sampled_from([n for n in NUMBERS if n < 2**63] + list(DOUBLES)).map(_number_literal)
    | st.integers(-50, 50).map(_number_literal)
    | st.sampled_from(["true", "false", "null", "0x10"])
)
_leaves = st.sampled_from(sorted(NAMES)) | _literals
_patterns = st.builds(_string_literal, st.sampled_from(PATTERNS), st.just(0))


_FORMS = (
    "{a} {op} {b}", "!{a}", "!!{a}", "{a}.{field}", "has({a}.{field})", "{a}[{b}]", "{a}.size()", "size({b})",
    "{a}.contains({b})", "{a}.startsWith({b})", "{a}.endsWith({b})", "regex({b}, {pattern})",
    "regex({b}, {c})", "{a}.regex({pattern})", "[]", "[{b}]", "[{b}, {c}]",
)
_OPERATORS = ("==", "!=", "<", "<=", ">", ">=", "in", "&&", "||")


@st.composite
def expressions(draw: st.DrawFn, depth: int = 3) -> str:
    """A supported form over generated operands. Operands are parenthesized only
    sometimes, so the text also exercises precedence: whatever tree the runtime reads,
    the native parser must read the same one."""
    if depth == 0 or draw(st.integers(0, 3)) == 0:
        return draw(_leaves)
    operand = expressions(depth - 1)
    a, b, c = draw(operand), draw(operand), draw(operand)
    return draw(st.sampled_from(_FORMS)).format(
        # `-1.size()` negates a call: arithmetic, which is left to the runtime.
        a=f"({a})" if "-" in a or draw(st.booleans()) else a, b=b, c=c, op=draw(st.sampled_from(_OPERATORS)),
        field=draw(st.sampled_from(FIELDS)), pattern=draw(_patterns),
    )


_TEXT_OPERANDS = ("s", "t", "m.tier", 'headers["x-team"]', "l[0]", "x")
_NUMBER_OPERANDS = ("n", "size(s)", "l.size()", "m.size()", "m.a", "x")


@st.composite
def conditions(draw: st.DrawFn, depth: int = 3) -> str:
    """Mostly well-typed conditions, as policies are written: most examples evaluate to
    true or false rather than to a type error."""
    text = st.sampled_from(_TEXT_OPERANDS) | st.builds(_string_literal, _texts, st.integers(0, 3))
    number = st.sampled_from(_NUMBER_OPERANDS) | st.sampled_from(NUMBERS[:8] + DOUBLES).map(_number_literal)
    comparison = st.sampled_from(_OPERATORS[:6])
    atoms = st.one_of(
        st.builds("{} {} {}".format, text, comparison, text),
        st.builds("{} {} {}".format, number, comparison, number),
        st.builds("{}.{}({})".format, text, st.sampled_from(["contains", "startsWith", "endsWith"]), text),
        st.builds("regex({}, {})".format, text, _patterns),
        st.builds("has(m.{})".format, st.sampled_from(FIELDS)),
        st.builds("{} in {}".format, text | number, st.sampled_from(["l", "m", "headers", '["a", 1, "vip"]'])),
        st.sampled_from(["true", "false"]),
    )
    if depth == 0 or draw(st.integers(0, 2)) == 0:
        return draw(atoms)
    left, right = draw(conditions(depth - 1)), draw(conditions(depth - 1))
    left, right = (f"({side})" if draw(st.booleans()) else side for side in (left, right))
    return draw(st.sampled_from(["{} && {}", "{} || {}", "!{}", "!({}) == {}"])).format(left, right)


def _runtime(source: str, variables: dict[str, Any]) -> tuple[str, Any]:
    try:
        return "value", cel.compile(source).execute(cel.Context(variables, {"regex": FUNCTIONS["regex"]}))
    except Exception:
        return "error", None


def _native(source: str, variables: dict[str, Any]) -> tuple[str, Any]:
    evaluate = compile_native(source, FUNCTIONS, NAMES | variables.keys())
    assert evaluate is not None, f"{source} should compile natively"
    try:
        return "value", evaluate(variables)  # anything but EvalError is a bug: it propagates
    except EvalError:
        return "error", None


def _same(left: Any, right: Any) -> bool:
    """Equal values of the same Python types, all the way down."""
    if type(left) is not type(right):
        return False
    if isinstance(left, list):
        return len(left) == len(right) and all(map(_same, left, right))
    if isinstance(left, dict):
        return left.keys() == right.keys() and all(_same(left[k], right[k]) for k in left)
    return bool(left == right)


def _assert_agree(source: str, variables: dict[str, Any]) -> None:
    runtime, native = _runtime(source, variables), _native(source, variables)
    assert runtime[0] == native[0] and _same(runtime[1], native[1]), (source, variables, runtime, native)


SEMANTICS = json.loads((FIXTURES / "native_semantics.json").read_text())


@pytest.mark.parametrize("case", SEMANTICS, ids=[case["name"] for case in SEMANTICS])
def test_the_runtimes_quirks_are_reproduced(case: dict[str, Any]) -> None:
    expected = ("error", None) if case["expected"].get("error") else ("value", case["expected"]["value"])
    variables = case["variables"]
    for result in (_runtime(case["when"], variables), _native(case["when"], variables)):
        assert result[0] == expected[0] and _same(result[1], expected[1]), result


# Every form the native evaluator supports, each run on generated values (of the right
# types and of the wrong ones) against the runtime.
FORMS = [
    's == "vip"', 's != "vip"', "n == 40", "n != 40.0", "x == null", "x == l", "m == x",
    "n > 100000", "n >= 0.5", "n < -1", "n <= 2", "s < t", "x > n", "s >= x",
    's.contains("a")', 's.startsWith("ab")', 's.endsWith(t)', "x.contains(s)",
    '"vip" in l', "x in l", '"x-team" in headers', "n in m", "x in x",
    "l.size() > 1", "size(s) == 2", "m.size() >= 1", "x.size() == 0",
    "has(m.tier)", "has(x.a)", 'm.tier == "vip"', "m.a.k == 1", 'headers["x-team"] == "night"',
    "l[0] == n", "x[1]", 'x["a"]',
    'has(m.tier) && m.tier == "vip"', 'm.tier == "vip" || s == "a"', '!(s == "a")', "!x", "!!x",
    'n > 3 && s.startsWith("a") || !has(m.a)', 'regex(s, "(?i)VIP|a")', 's.regex("^S")', "regex(s, t)",
    '[s, "a"] == l', 's in ["a", "vip", 1]', "x",
]


@pytest.mark.parametrize("form", FORMS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(variables=contexts)
def test_each_supported_form_agrees_with_the_runtime(form: str, variables: dict[str, Any]) -> None:
    _assert_agree(form, variables)


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(source=expressions(), variables=contexts)
def test_generated_expressions_agree_with_the_runtime(source: str, variables: dict[str, Any]) -> None:
    try:
        cel.compile(source)
    except Exception:
        assume(False)  # not CEL at all (the loader would refuse it)
    _assert_agree(source, variables)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(source=conditions(), variables=contexts)
def test_generated_conditions_agree_with_the_runtime(source: str, variables: dict[str, Any]) -> None:
    _assert_agree(source, variables)


@pytest.mark.parametrize("source", [
    "n + 1 > 2", "s.lowerAscii() == 'a'", "l.exists(e, e == 1)", "s.matches('a')", "x ? 1 : 2",
    "{'a': 1} == m", "-n < 0", "n == 1u", "b'a' == x", '"""a""" == s', "type(n) == int", "int(s) == 1",
])
def test_the_rest_is_left_to_the_runtime(source: str) -> None:
    cel.compile(source)
    assert compile_native(source, FUNCTIONS, NAMES | {"e"}) is None  # `int` is the runtime's own name


@pytest.mark.parametrize("path", ["bench/policies/bench.yaml", "policies/default.yaml",
                                  "policies/examples/acme-support.yaml"])
def test_shipped_and_benchmarked_conditions_run_natively(tmp_path: Path, path: str) -> None:
    policies = tenant(tmp_path, (REPO / path).read_text())
    conditions = [rule.when for policy in policies.policies for rule in policy.rules if rule.when is not None]
    assert conditions and all(condition.native is not None for condition in conditions)


MIXED = """
policy: team
rules:
  - name: native-tag
    when: 'metadata.tier == "vip"'
    action: tag
    tags: [vip]
  - name: runtime-tag
    when: 'messages.exists(m, m.content.lowerAscii().contains("refund"))'
    action: tag
    tags: [refund]
  - name: runtime-deny
    when: 'metadata.tier.upperAscii() == "VIP" && size(messages) > 1'
    action: deny
"""


@pytest.mark.parametrize(("tier", "text", "outcome", "rules"), [
    ("vip", "A REFUND please", "deny", ["native-tag", "runtime-tag", "runtime-deny"]),
    ("basic", "hello", "allow", []),
    (7, "refund", "deny", ["runtime-tag", "runtime-deny"]),  # upperAscii() of an int: fails closed
])
def test_native_and_runtime_conditions_share_one_pass(tmp_path: Path, tier: Any, text: str, outcome: str,
                                                      rules: list[str]) -> None:
    body = {"model": "m", "metadata": {"tier": tier},
            "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}]}
    verdict = tenant(tmp_path, MIXED).evaluate_request(facts(body))
    assert verdict.outcome == outcome
    assert [decision.rule for decision in verdict.decisions] == rules
    assert bool(verdict.deciding and verdict.deciding.error) is (tier == 7)


def _rule(when: str) -> str:
    return f"policy: team\nrules:\n  - name: r\n    action: deny\n    when: {yaml.safe_dump(when).strip()}\n"


@pytest.mark.parametrize("when", ['headers["x-team"] == "night"', 'headers.exists(h, h == "x-team")',
                                  'agent == "admin" || true', 'false && agent == "admin"'])
def test_a_header_that_is_not_utf8_fails_closed(tmp_path: Path, when: str) -> None:
    # aiohttp keeps invalid UTF-8 in headers as lone surrogates, which no CEL string holds.
    bad = facts(headers={"X-Team": "night\udcff"}, agent="admin\udcff")
    verdict = tenant(tmp_path, _rule(when)).evaluate_request(bad)
    assert verdict.outcome == "deny" and verdict.deciding is not None
    assert "not valid UTF-8" in (verdict.deciding.error or "")


def test_conditions_that_do_not_read_a_broken_header_are_unaffected(tmp_path: Path) -> None:
    bad = facts(headers={"X-Team": "night\udcff"}, agent="admin\udcff")
    assert tenant(tmp_path, _rule('tenant == "acme" && model == "x"')).evaluate_request(bad).outcome == "allow"


def test_a_value_the_runtime_cannot_hold_fails_closed(tmp_path: Path) -> None:
    body = {"model": "m", "messages": [], "metadata": {"note": "\udcff"}}
    verdict = tenant(tmp_path, _rule('metadata.exists(k, k == "note")')).evaluate_request(facts(body))
    assert verdict.outcome == "deny" and verdict.deciding is not None
    assert "ValueError" in (verdict.deciding.error or "")


def test_values_outside_json_are_left_to_the_runtime(tmp_path: Path) -> None:
    # A policy test case (YAML) can hold values no JSON body can; the runtime decides those.
    body = {"model": "m", "messages": [], "metadata": {"pair": (1, 2)}}
    policies = tenant(tmp_path, _rule("metadata.pair == [1, 2]"))
    verdict = policies.evaluate_request(facts(body))
    assert verdict.outcome == "deny" and verdict.deciding is not None and verdict.deciding.error is None
