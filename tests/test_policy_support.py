"""Shared helpers for the policy tests (no tests here): policy sets from YAML text,
request facts, chunk builders, and replaying gate output through the OpenAI SDK's own
stream accumulators, which is what proves a client sees what we claim."""

from __future__ import annotations

import itertools
import textwrap
from pathlib import Path
from typing import Any

from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.lib.streaming.responses import ResponseStreamState
from openai.types.chat import ChatCompletionChunk
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from gateway.policy import Emit, Fail, GateItem, Hold, PolicySet, RequestFacts, load_policies
from gateway.policy.engine import TenantPolicies

FIXTURES = Path(__file__).parent / "fixtures" / "policy"
_RESPONSE_EVENT = TypeAdapter(ResponseStreamEvent)
_counter = itertools.count()


def policy_set(tmp_path: Path, *documents: str) -> PolicySet:
    """Load YAML documents (one policy each) as a policy directory; fail on problems."""
    directory = tmp_path / f"policies-{next(_counter)}"
    directory.mkdir()
    for index, text in enumerate(documents):
        (directory / f"p{index}.yaml").write_text(textwrap.dedent(text))
    policies, problems = load_policies(directory)
    assert not problems, [str(problem) for problem in problems]
    assert policies is not None
    return policies


def tenant(tmp_path: Path, *documents: str, names: tuple[str, ...] = ()) -> TenantPolicies:
    """The tenant view of `documents` (all of them, in order, after `default`)."""
    policies = policy_set(tmp_path, *documents)
    return policies.for_tenant(list(names) or [n for n in policies.names() if n != "default"])


def facts(body: dict | None = None, *, tenant: str = "acme", api: str | None = None, **extra: Any) -> RequestFacts:
    body = body if body is not None else {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    return RequestFacts(
        tenant=tenant,
        agent=extra.pop("agent", None),
        alias=extra.pop("alias", "m"),
        api=api or ("responses" if "input" in body else "chat"),
        body=body,
        headers=extra.pop("headers", {}),
        **extra,
    )


def chunk(delta: dict, finish: str | None = None, index: int = 0) -> dict:
    return {
        "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1700000000, "model": "gpt-4o-mini",
        "choices": [{"index": index, "delta": delta, "finish_reason": finish, "logprobs": None}],
    }


def call_delta(index: int, *, call_id: str | None = None, name: str | None = None,
               arguments: str | None = None) -> dict:
    entry: dict[str, Any] = {"index": index}
    if call_id is not None:
        entry.update(id=call_id, type="function")
    function = {key: value for key, value in (("name", name), ("arguments", arguments)) if value is not None}
    if function:
        entry["function"] = function
    return entry


def as_expected(item: object) -> dict:
    """A gate item as the golden fixtures write it."""
    if isinstance(item, Emit):
        return {"emit": item.payload, "original": item.original}
    if isinstance(item, Hold):
        return {"hold": {"call_key": item.call_key, "name": item.name, "arguments": item.arguments,
                         "rule": item.decision.rule}}
    assert isinstance(item, Fail)
    return {"fail": {"code": item.code, "message": item.message, "rule": item.rule}}


def emitted(items: list[GateItem]) -> list[Any]:
    """The payloads of the Emit items (asserting nothing else came out)."""
    assert all(isinstance(item, Emit) for item in items), items
    return [item.payload for item in items]  # type: ignore[union-attr]


def run_chat(gate: Any, chunks: list[dict], approve: bool | None = None) -> tuple[list[GateItem], list[int]]:
    """Feed every chunk; answer Holds with `approve`. Returns (items, emit counts per feed)."""
    items: list[GateItem] = []
    per_feed: list[int] = []
    for payload in chunks:
        out = _answer_holds(gate, gate.feed(payload), approve)
        per_feed.append(sum(isinstance(item, Emit) for item in out))
        items += out
    items += _answer_holds(gate, gate.finish(), approve)
    return items, per_feed


def run_responses(gate: Any, events: list[dict], approve: bool | None = None) -> list[GateItem]:
    items: list[GateItem] = []
    for event in events:
        items += _answer_holds(gate, gate.feed(event["type"], event), approve)
    return items + _answer_holds(gate, gate.finish(), approve)


def _answer_holds(gate: Any, items: list[GateItem], approve: bool | None) -> list[GateItem]:
    out: list[GateItem] = []
    while items:
        item = items.pop(0)
        out.append(item)
        if isinstance(item, Hold):
            assert approve is not None, f"unexpected hold {item}"
            items = gate.resolve(item.call_key, approve, None if approve else "not today") + items
    return out


def chat_final(items: list[GateItem]) -> Any:
    """The completion the OpenAI SDK assembles from the emitted chunks."""
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    for payload in emitted([item for item in items if not isinstance(item, (Hold, Fail))]):
        state.handle_chunk(ChatCompletionChunk.model_validate(payload))
    return state.get_final_completion()


def responses_final(items: list[GateItem]) -> Any:
    """The response the OpenAI SDK assembles from the emitted events (each validated)."""
    from openai import omit

    state: ResponseStreamState[Any] = ResponseStreamState(input_tools=omit, text_format=omit)
    final = None
    for payload in emitted([item for item in items if not isinstance(item, (Hold, Fail))]):
        event = _RESPONSE_EVENT.validate_python(payload)
        for produced in state.handle_event(event):
            if produced.type == "response.completed":
                final = produced.response
    return final
