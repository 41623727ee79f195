"""Sending the cases through the gateway with the official `openai` SDK, and scoring them.

Every case goes to every alias `repeat` times, at most `concurrency` requests at once,
as a plain Chat Completions call (non-streaming, `max_retries=0` so the gateway's own
retries and failover are what gets measured). Each request carries `X-Lockgate-Agent:
eval` and `metadata: {"eval_case": <id>}`, so eval traffic is attributed in the ledger,
`/v1/usage` and policy conditions like any agent's.

Latency is measured by the client, end to end. Tokens come from the answer's `usage`;
cost prices them for the target model that served (`X-Lockgate-Model`) with the
gateway's own price table, so it matches what the ledger records. A failed request
costs nothing here (the gateway meters what an upstream reported, if anything).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway.eval.dataset import Case
from gateway.eval.judge import JudgeReplyError, judge_messages, read_grade, verdict_for
from gateway.eval.scoring import POLICY_FAILURE, Failure, Outcome, Score, ToolCall, score
from gateway.pricing import PriceTable
from gateway.usage import Usage, usage_from_chat

if TYPE_CHECKING:
    from openai import AsyncOpenAI

AGENT = "eval"
AGENT_HEADER = "X-Lockgate-Agent"
JUDGE_FAILURE = "judge"
_ANSWER_LIMIT = 2000


@dataclass(frozen=True, slots=True)
class Settings:
    aliases: tuple[str, ...]
    concurrency: int = 4
    repeat: int = 1
    judge: str | None = None


@dataclass(slots=True)
class Reply:
    """One request's answer as the eval sees it."""

    outcome: Outcome
    latency_ms: float
    usage: Usage | None = None
    model: str | None = None
    provider: str | None = None
    attempts: int | None = None

    def cost(self, prices: PriceTable) -> float | None:
        if self.usage is None:
            return 0.0 if self.outcome.failure is not None else None
        return prices.cost(self.model, self.usage) if self.model else None


@dataclass(slots=True)
class RunResult:
    """One case sent once to one alias, scored."""

    case: Case
    alias: str
    run: int
    score: Score
    reply: Reply
    cost_usd: float | None
    judge_failure: Failure | None = None
    judge_cost_usd: float | None = None

    @property
    def verdict(self) -> str:
        return self.score.verdict

    @property
    def error_kind(self) -> str | None:
        """What went wrong, if anything; a policy refusal on a refusal case is the expected answer."""
        failure = self.reply.outcome.failure
        if failure is not None and not (self.case.match == "refusal" and failure.kind == POLICY_FAILURE):
            return failure.kind
        return JUDGE_FAILURE if self.judge_failure is not None else None

    def as_json(self) -> dict[str, Any]:
        reply, outcome = self.reply, self.reply.outcome
        usage = reply.usage or Usage()
        failure = outcome.failure or self.judge_failure
        return {
            "case": self.case.id, "number": self.case.number, "category": self.case.category,
            "match": self.case.match, "expected": self.case.expected_json(), "alias": self.alias, "run": self.run,
            "verdict": self.verdict, "detail": self.score.detail, "judge_score": self.score.judge_score,
            "latency_ms": round(reply.latency_ms, 3), "model": reply.model, "provider": reply.provider,
            "attempts": reply.attempts, "input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
            "cached_tokens": usage.cached_tokens, "cost_usd": self.cost_usd, "judge_cost_usd": self.judge_cost_usd,
            "policies": list(outcome.policies), "error": self.error_kind,
            "error_detail": None if failure is None else {"status": failure.status, "code": failure.code,
                                                          "message": failure.message},
            "answer": outcome.answer[:_ANSWER_LIMIT],
            "tool_calls": [{"name": call.name, "arguments": call.arguments} for call in outcome.tool_calls],
        }


Progress = Callable[[RunResult], None]


async def run_eval(client: AsyncOpenAI, cases: list[Case], settings: Settings, prices: PriceTable,
                   progress: Progress | None = None) -> list[RunResult]:
    """Every (alias, case, run), scored; in alias, case, run order whatever order they finished in."""
    gate = asyncio.Semaphore(max(1, settings.concurrency))
    jobs = [(alias, case, run) for run in range(1, settings.repeat + 1) for case in cases
            for alias in settings.aliases]

    async def one(alias: str, case: Case, run: int) -> RunResult:
        async with gate:
            result = await _run_case(client, alias, case, run, settings.judge, prices)
        if progress is not None:
            progress(result)
        return result

    results = await asyncio.gather(*(one(*job) for job in jobs))
    order = {alias: index for index, alias in enumerate(settings.aliases)}
    return sorted(results, key=lambda result: (order[result.alias], result.case.number, result.run))


async def _run_case(client: AsyncOpenAI, alias: str, case: Case, run: int, judge: str | None,
                    prices: PriceTable) -> RunResult:
    reply = await send_chat(client, alias, case.messages, case.tools, {"eval_case": case.id})
    result = RunResult(case=case, alias=alias, run=run, score=Score("incorrect"), reply=reply,
                       cost_usd=reply.cost(prices))
    if case.match != "judge" or reply.outcome.failure is not None:
        result.score = score(case, reply.outcome)
        return result
    assert judge is not None, "judge cases need a judge alias"
    graded = await send_chat(client, judge, judge_messages(case, reply.outcome.answer), None,
                             {"eval_case": case.id, "eval_role": "judge"}, temperature=0)
    result.judge_cost_usd = graded.cost(prices)
    if graded.outcome.failure is not None:
        result.judge_failure = graded.outcome.failure
    else:
        try:
            result.score = verdict_for(*read_grade(graded.outcome.answer))
            return result
        except JudgeReplyError as exc:
            result.judge_failure = Failure(JUDGE_FAILURE, str(exc))
    result.score = Score("incorrect", f"not graded: {result.judge_failure.message}"[:160])
    return result


async def send_chat(client: AsyncOpenAI, alias: str, messages: list[dict[str, Any]],
                    tools: list[dict[str, Any]] | None, metadata: dict[str, str], **options: Any) -> Reply:
    """One Chat Completions call; never raises for what the gateway or the network answered."""
    import openai  # only `lockgate eval` needs the SDK

    if tools:
        options["tools"] = tools
    started = time.perf_counter()
    try:
        raw = await client.chat.completions.with_raw_response.create(
            model=alias, messages=messages, metadata=metadata, extra_headers={AGENT_HEADER: AGENT}, **options)
    except openai.APIStatusError as exc:
        error = exc.body if isinstance(exc.body, Mapping) else {}
        failure = Failure(failure_kind(exc.status_code, error.get("type"), error.get("code")),
                          str(error.get("message") or exc.message), exc.status_code, error.get("code"))
        return _reply(Outcome(policies=policy_labels(exc.response.headers), failure=failure), started,
                      exc.response.headers)
    except openai.APITimeoutError:
        return _reply(Outcome(failure=Failure("timeout", "no answer before the client timeout (--timeout)")),
                      started, {})
    except openai.APIConnectionError as exc:
        return _reply(Outcome(failure=Failure("connection", f"cannot reach the gateway: {exc}")), started, {})
    completion = raw.parse()
    message = completion.choices[0].message if completion.choices else None
    calls = tuple(ToolCall(call.function.name, call.function.arguments or "")
                  for call in (message.tool_calls or []) if message is not None and getattr(call, "function", None))
    outcome = Outcome(answer=(message.content or "") if message is not None else "", tool_calls=calls,
                      policies=policy_labels(raw.headers))
    usage = usage_from_chat(completion.usage.model_dump()) if completion.usage is not None else None
    return _reply(outcome, started, raw.headers, usage)


def _reply(outcome: Outcome, started: float, headers: Mapping[str, str], usage: Usage | None = None) -> Reply:
    attempts = headers.get("X-Lockgate-Attempts")
    return Reply(outcome=outcome, latency_ms=(time.perf_counter() - started) * 1000, usage=usage,
                 model=headers.get("X-Lockgate-Model"), provider=headers.get("X-Lockgate-Provider"),
                 attempts=int(attempts) if attempts and attempts.isdigit() else None)


def policy_labels(headers: Mapping[str, str]) -> tuple[str, ...]:
    """The `X-Lockgate-Policies` labels (`policy/rule=action`), in order."""
    return tuple(label.strip() for label in (headers.get("X-Lockgate-Policies") or "").split(",") if label.strip())


def failure_kind(status: int, error_type: Any, code: Any) -> str:
    """The error bucket of a gateway answer, named as in `lockgate usage` where one fits."""
    if error_type in ("policy_violation", "approval_required"):
        return POLICY_FAILURE
    if code == "budget_exceeded":
        return "budget"
    if status == 429:
        return "rate_limit"
    if status == 504 or code == "upstream_timeout":
        return "timeout"
    if status >= 500:
        return "upstream_error"
    if status in (401, 403):
        return "auth"
    return "validation_error"

