"""Eval datasets: YAML or JSONL files of cases, checked whole before any request is sent.

A case is one prompt and what a good answer looks like:

    - id: weather-paris                  # optional; default case-<number>
      category: task management          # optional; default "uncategorized"
      input: "What's the weather in Paris?"   # a string, or a list of chat messages
      tools: [{name: weather_tool, parameters: {...}}]   # optional chat tools
      match: tool_call                   # exact | contains | regex | json_schema | tool_call | refusal | judge
      expected: {name: weather_tool, arguments: {unit: celsius}}

A YAML file is a list of cases or a mapping with `cases:` (and an optional
`description:`); a JSONL file has one case object per line. Every problem is reported
with the case number, the line, and what to change (docs/eval.md is the reference), so
a dataset either loads whole or nothing is sent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from gateway.eval.schema import schema_problems
from gateway.yamlsrc import SourceList, SourceMap, YamlError, line_of, parse_yaml

MATCH_TYPES = ("exact", "contains", "regex", "json_schema", "tool_call", "refusal", "judge")
DEFAULT_CATEGORY = "uncategorized"
ROLES = ("system", "developer", "user", "assistant", "tool")
_CASE_KEYS = ("id", "input", "tools", "category", "match", "expected", "ignore_case", "rubric", "description")
_FILE_KEYS = ("cases", "description")
_TEXT_MATCHES = ("exact", "contains", "regex")


@dataclass(frozen=True, slots=True)
class ToolExpectation:
    name: str
    arguments: dict[str, Any] | None
    """A subset the call's arguments must contain; None: any arguments."""


@dataclass(frozen=True, slots=True)
class Case:
    number: int
    """1-based position in the file, as problems and reports name it."""
    id: str
    category: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None
    match: str
    expected: Any
    """By match: exact/contains/refusal a tuple of strings (refusal: rule names, maybe empty);
    regex a tuple of compiled patterns; json_schema the schema; tool_call a ToolExpectation;
    judge the reference answer or None."""
    ignore_case: bool = False
    rubric: str | None = None
    line: int = 0

    def expected_json(self) -> Any:
        """`expected` as JSON, for results files."""
        if isinstance(self.expected, ToolExpectation):
            return {"name": self.expected.name, "arguments": self.expected.arguments}
        if isinstance(self.expected, tuple):
            return [item.pattern if isinstance(item, re.Pattern) else item for item in self.expected]
        return self.expected


@dataclass(frozen=True, slots=True)
class DatasetProblem:
    file: str
    case: int | None
    line: int
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: case {self.case}: {self.message}" if self.case else f"{where}: {self.message}"


class DatasetError(Exception):
    def __init__(self, problems: list[DatasetProblem]) -> None:
        super().__init__("\n".join(map(str, problems)))
        self.problems = problems


def load_dataset(path: Path) -> list[Case]:
    """Every case of `path` (`.jsonl` is JSON Lines, anything else YAML); DatasetError lists all problems."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError([DatasetProblem(str(path), None, 0, f"cannot read the dataset: {exc}")]) from exc
    entries, problems = (_jsonl_entries if path.suffix.lower() == ".jsonl" else _yaml_entries)(text, str(path))
    cases: list[Case] = []
    seen: dict[str, int] = {}
    for number, (raw, line) in enumerate(entries, 1):
        if raw is _UNREADABLE:
            continue
        case, messages = _case(raw, number, line)
        problems += [DatasetProblem(str(path), number, found_line, message) for found_line, message in messages]
        if case is None:
            continue
        if case.id in seen:
            problems.append(DatasetProblem(str(path), number, line, f"id '{case.id}' is already used by case "
                                           f"{seen[case.id]}; ids must be unique"))
        seen.setdefault(case.id, number)
        cases.append(case)
    if not entries and not problems:
        problems.append(DatasetProblem(str(path), None, 0, "the dataset has no cases"))
    if problems:
        raise DatasetError(problems)
    return cases


# --- files -------------------------------------------------------------------------------------

Entries = list[tuple[Any, int]]
_UNREADABLE = object()
"""A JSONL line that is not JSON: it keeps its case number, its problem is already reported."""


def _yaml_entries(text: str, file: str) -> tuple[Entries, list[DatasetProblem]]:
    try:
        document = parse_yaml(text, file)
    except YamlError as exc:
        return [], [DatasetProblem(file, None, exc.problem.line, exc.problem.message)]
    if isinstance(document, Mapping):
        unknown = [key for key in document if key not in _FILE_KEYS]
        if unknown:
            return [], [DatasetProblem(file, None, line_of(document, unknown[0]), f"unknown key '{unknown[0]}' "
                                       f"at the top; a dataset has {' and '.join(_FILE_KEYS)}")]
        document = document.get("cases")
    if not isinstance(document, SourceList):
        return [], [DatasetProblem(file, None, line_of(document, 0), "the dataset must be a list of cases, "
                                   "or a mapping with a 'cases:' list")]
    return [(raw, document.line_of(index)) for index, raw in enumerate(document)], []


def _jsonl_entries(text: str, file: str) -> tuple[Entries, list[DatasetProblem]]:
    entries: Entries = []
    problems: list[DatasetProblem] = []
    for line_number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            entries.append((json.loads(line), line_number))
        except json.JSONDecodeError as exc:
            entries.append((_UNREADABLE, line_number))
            problems.append(DatasetProblem(file, len(entries), line_number,
                                           f"invalid JSON: {exc.msg} at column {exc.colno}"))
    return entries, problems


# --- one case ------------------------------------------------------------------------------------

Found = list[tuple[int, str]]
"""(line, message) pairs."""


def _case(raw: Any, number: int, line: int) -> tuple[Case | None, Found]:
    if not isinstance(raw, Mapping):
        return None, [(line, "a case must be a mapping with at least 'input' and 'match'")]
    found: Found = []

    def where(key: str) -> int:
        return line_of(raw, key) or line

    def reporter(key: str) -> Report:
        return lambda message, at=0: found.append((at or where(key), message))

    def problem(key: str, message: str) -> None:
        reporter(key)(message)

    for key in raw:
        if key not in _CASE_KEYS:
            problem(key, f"unknown field '{key}'; a case has {', '.join(_CASE_KEYS)}")
    case_id = raw.get("id", f"case-{number}")
    if not isinstance(case_id, str | int) or isinstance(case_id, bool) or not str(case_id).strip():
        problem("id", "'id' must be a non-empty string")
    category = raw.get("category", DEFAULT_CATEGORY)
    if not isinstance(category, str) or not category.strip():
        problem("category", "'category' must be a non-empty string")
    messages = _messages(raw.get("input"), reporter("input"))
    tools = _tools(raw.get("tools"), reporter("tools"))
    ignore_case = raw.get("ignore_case", False)
    if not isinstance(ignore_case, bool):
        problem("ignore_case", "'ignore_case' must be true or false")
    rubric = raw.get("rubric")
    match = raw.get("match")
    expected: Any = None
    if match is None:
        problem("match", f"'match' is required: one of {', '.join(MATCH_TYPES)}")
    elif match not in MATCH_TYPES:
        problem("match", f"unknown match type {match!r}; use one of {', '.join(MATCH_TYPES)}")
    else:
        expected = EXPECTATIONS[match](raw, tools, reporter("expected"))
        if match == "judge" and not (isinstance(rubric, str) and rubric.strip()):
            problem("rubric", "a judge case needs 'rubric': what the judge should look for")
    if rubric is not None and match != "judge":
        problem("rubric", "'rubric' is only read by 'match: judge' cases")
    if "ignore_case" in raw and match not in _TEXT_MATCHES:
        problem("ignore_case", f"'ignore_case' applies to {', '.join(_TEXT_MATCHES)} matches only")
    if found:
        return None, found
    assert messages is not None
    return Case(number=number, id=str(case_id), category=category.strip(), messages=messages, tools=tools,
                match=match, expected=expected, ignore_case=ignore_case, rubric=rubric, line=line), []


class Report(Protocol):
    def __call__(self, message: str, line: int = 0, /) -> None:
        """Record a problem at `line` (0: the line of the field being checked)."""


def _messages(value: Any, report: Report) -> list[dict[str, Any]] | None:
    if isinstance(value, str) and value.strip():
        return [{"role": "user", "content": value}]
    if not isinstance(value, list) or not value:
        report("'input' is required: a non-empty string, or a list of chat messages ({role, content})")
        return None
    for index, message in enumerate(value):
        if not isinstance(message, Mapping) or message.get("role") not in ROLES:
            report(f"input[{index}] must be a message with 'role' one of {', '.join(ROLES)}", line_of(value, index))
            return None
        if message["role"] in ("system", "developer", "user") and not isinstance(message.get("content"), str | list):
            report(f"input[{index}] ({message['role']}) needs 'content': a string or a list of parts",
                   line_of(value, index))
            return None
    return plain(value)


def _tools(value: Any, report: Report) -> list[dict[str, Any]] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        report("'tools' must be a non-empty list of tools ({type: function, function: {name, parameters}} "
               "or the short form {name, description, parameters})")
        return None
    tools = []
    for index, tool in enumerate(value):
        function = tool.get("function", tool) if isinstance(tool, Mapping) else None
        if not isinstance(function, Mapping) or not isinstance(function.get("name"), str) or not function["name"]:
            report(f"tools[{index}] needs a function 'name'", line_of(value, index))
            return None
        if "parameters" in function and not isinstance(function["parameters"], Mapping):
            report(f"tools[{index}].parameters must be a JSON schema object", line_of(value, index))
            return None
        if isinstance(tool, Mapping) and tool.get("type", "function") != "function":
            report(f"tools[{index}].type must be 'function'", line_of(value, index))
            return None
        # The short form (Responses-style) may carry its `type` beside the name; Chat keeps it outside.
        tools.append({"type": "function", "function": {key: plain(item) for key, item in function.items()
                                                        if key != "type"}})
    return tools


def tool_names(tools: list[dict[str, Any]] | None) -> list[str]:
    return [tool["function"]["name"] for tool in tools or []]


# --- expectations, by match type -----------------------------------------------------------------


def _strings(raw: Mapping[str, Any], report: Report, *, required: bool = True) -> tuple[str, ...]:
    value = raw.get("expected")
    if value is None and not required:
        return ()
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(item, str) and item for item in items):
        report(f"'expected' must be a non-empty string or a list of them for 'match: {raw['match']}'")
        return ()
    return tuple(items)


def _patterns(raw: Mapping[str, Any], tools: Any, report: Report) -> tuple[re.Pattern[str], ...]:
    flags = re.IGNORECASE if raw.get("ignore_case") is True else 0
    compiled = []
    for pattern in _strings(raw, report):
        try:
            compiled.append(re.compile(pattern, flags))
        except re.error as exc:
            report(f"bad regex {pattern!r}: {exc}")
    return tuple(compiled)


def _schema(raw: Mapping[str, Any], tools: Any, report: Report) -> Any:
    schema = raw.get("expected")
    if schema is None:
        report("'expected' must be the JSON schema the answer validates against")
        return None
    for problem in schema_problems(schema):
        report(f"invalid schema: {problem}")
    return plain(schema)


def _tool_call(raw: Mapping[str, Any], tools: list[dict[str, Any]] | None, report: Report) -> ToolExpectation | None:
    expected = raw.get("expected")
    if not isinstance(expected, Mapping) or not isinstance(expected.get("name"), str):
        report("'expected' must be {name: <tool>, arguments: {...}} for 'match: tool_call'")
        return None
    unknown = [key for key in expected if key not in ("name", "arguments")]
    if unknown:
        report(f"expected.{unknown[0]} is not known; a tool_call expectation has name and arguments")
    arguments = expected.get("arguments")
    if arguments is not None and not isinstance(arguments, Mapping):
        report("expected.arguments must be a mapping: the arguments the call must contain")
    names = tool_names(tools)
    if "tools" not in raw:
        report(f"expects a call to '{expected['name']}': declare it under 'tools'")
    elif tools is not None and expected["name"] not in names:
        report(f"expects a call to '{expected['name']}' but the case declares only {', '.join(names)}")
    return ToolExpectation(expected["name"], plain(arguments) if isinstance(arguments, Mapping) else None)


def _reference(raw: Mapping[str, Any], tools: Any, report: Report) -> str | None:
    reference = raw.get("expected")
    if reference is not None and not isinstance(reference, str):
        report("'expected' of a judge case is an optional reference answer (a string)")
    return reference if isinstance(reference, str) else None


EXPECTATIONS: dict[str, Callable[[Mapping[str, Any], Any, Report], Any]] = {
    "exact": lambda raw, tools, report: _strings(raw, report),
    "contains": lambda raw, tools, report: _strings(raw, report),
    "regex": _patterns,
    "json_schema": _schema,
    "tool_call": _tool_call,
    "refusal": lambda raw, tools, report: _strings(raw, report, required=False),
    "judge": _reference,
}


def plain(value: Any) -> Any:
    """YAML's line-aware containers as plain dicts and lists (for the SDK and JSON files)."""
    if isinstance(value, SourceMap | Mapping):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value
