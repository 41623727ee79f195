"""Policies applied to a live request: the pure engine (`gateway.policy`) meets the
pipeline, the approvals service, metrics and the audit log.

One `Enforcer` per request. The request stage may change the body (stripped tools,
redacted text), refuse it, or wait for a human. On the way back, a JSON answer is gated
whole; a stream passes through `PolicyStage`, which relays text at once and holds only
a tool call that a rule must see. Every decision is counted, listed in
`X-Lockgate-Policies`, and written to the audit log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway import errors
from gateway.approvals import ABANDONED, APPROVED, EXPIRED, SHUT_DOWN, request_digest, tool_digest
from gateway.exchange import Exchange
from gateway.policy import (
    ChatStreamGate,
    Decision,
    Emit,
    Fail,
    GateItem,
    Hold,
    RequestFacts,
    ResponsesStreamGate,
    TenantPolicies,
    gate_chat_completion,
    gate_responses_response,
)
from gateway.store import ApprovalRecord, AuditEvent, ReviewRecord
from providers.base import CHAT, EMBEDDINGS
from providers.sse import SSEEvent

if TYPE_CHECKING:
    from gateway.runtime import Runtime

log = logging.getLogger("lockgate.policy")
APPROVAL_HEADER = "X-Lockgate-Approval"
REVIEW_LIMIT = 64 * 1024
KeepAlive = Callable[[Awaitable[ApprovalRecord]], Awaitable[ApprovalRecord]]
"""Waits for a held approval while keeping the client's connection alive."""


class Enforcer:
    def __init__(self, runtime: Runtime, exchange: Exchange, headers: Mapping[str, str]) -> None:
        assert exchange.tenant is not None and exchange.body is not None and exchange.alias is not None
        snapshot = runtime.snapshot
        self.runtime = runtime
        self.exchange = exchange
        self.version = snapshot.policies.version
        self.policies: TenantPolicies = snapshot.policies.for_tenant(exchange.tenant.policies)
        body = exchange.body
        self.facts = RequestFacts(tenant=exchange.tenant.name, agent=exchange.agent, alias=exchange.alias,
                                  api=exchange.api, body=body, headers=headers,
                                  estimate_tokens=exchange.estimated_prompt_tokens)
        self.approval_id = headers.get(APPROVAL_HEADER)
        self._original = body
        self._gate: ChatStreamGate | ResponsesStreamGate | None = None
        self._recorded = 0
        self._reviews: list[Decision] = []

    @property
    def gates_responses(self) -> bool:
        return self.exchange.api != EMBEDDINGS and (self.policies.has_tool_rules or self.policies.has_response_rules)

    # -- request stage ---------------------------------------------------------------

    async def check_request(self, keep_alive: KeepAlive | None = None) -> dict[str, Any] | None:
        """Apply the request stage: a changed body to send instead, or None; raises to refuse.

        `keep_alive` wraps the wait of a held approval (streams keep their client's connection
        alive meanwhile).
        """
        if self.exchange.api == EMBEDDINGS or not self.policies.has_request_rules:
            return None
        verdict = self.policies.evaluate_request(self.facts)
        self.record(verdict.decisions)
        deciding = verdict.deciding
        if verdict.outcome == "deny":
            assert deciding is not None
            raise errors.policy_violation(verdict.error_code or "blocked_by_policy", _refusal(deciding))
        if verdict.outcome == "require_approval":
            assert deciding is not None
            approved, reason = await self.approve(deciding, request_digest(self._original),
                                                  keep_alive=keep_alive)
            if not approved:
                raise errors.policy_violation("approval_denied", _denial(deciding, reason))
        return verdict.body

    # -- approvals -------------------------------------------------------------------

    async def approve(self, decision: Decision, digest: str, tool_name: str | None = None,
                      arguments: str | None = None, keep_alive: KeepAlive | None = None
                      ) -> tuple[bool, str | None]:
        """Wait for a human (hold), or check the retry's approval (defer). Raises `approval_required`."""
        spec = decision.approval
        assert spec is not None
        approvals = self.runtime.approvals
        if spec.mode == "defer" and self.approval_id:
            return await self._redeem(decision, digest)
        record = await approvals.create(
            tenant=self.facts.tenant, agent=self.exchange.agent, policy=decision.policy, rule=decision.rule,
            stage=decision.stage, mode=spec.mode, timeout_s=spec.timeout_s, on_timeout=spec.on_timeout,
            digest=digest, policy_version=self.version, request_id=self.exchange.request_id,
            tool_name=tool_name, arguments=arguments, summary=None if tool_name else _summary(self.facts),
            webhook=spec.webhook)
        self._audit("approval", decision, {"approval_id": record.id, "status": "pending", "mode": spec.mode})
        if spec.mode == "defer":
            raise errors.approval_required(record.id, decision.rule)
        waiting = approvals.wait(record)
        began = time.perf_counter()
        try:
            final = await (keep_alive(waiting) if keep_alive is not None else waiting)
        except asyncio.CancelledError:  # nothing waits for a decision any more
            approvals.abandon(record.id, SHUT_DOWN if self.runtime.drain_expired else ABANDONED)
            raise
        finally:
            self.exchange.approval_wait_s += time.perf_counter() - began
        self._audit("approval", decision, {"approval_id": record.id, "status": final.status,
                                           "decided_by": final.decided_by})
        reason = final.reason or ("timed out" if final.status == EXPIRED else None)
        return final.status == APPROVED, reason

    async def _redeem(self, decision: Decision, digest: str) -> tuple[bool, str | None]:
        """A retry that carries an approval id: it passes once, if the approval fits it."""
        assert self.approval_id is not None
        outcome, record = await self.runtime.approvals.redeem(
            self.approval_id, tenant=self.facts.tenant, rule=decision.rule, digest=digest,
            policy_version=self.version)
        if outcome == "ok":
            return True, None
        if outcome == "denied" and record is not None:
            return False, record.reason or ("timed out" if record.status == EXPIRED else None)
        if outcome == "mismatch":
            raise errors.policy_violation("approval_denied", (
                f"Approval {self.approval_id} does not match this request: it was given for another request, "
                "tenant, rule or policy version, or it was already used. Send the request without "
                f"{APPROVAL_HEADER} to ask for a new approval."))
        raise errors.approval_required(self.approval_id, decision.rule)  # still pending

    # -- response stage --------------------------------------------------------------

    async def gate_json(self, payload: Any) -> dict[str, Any] | None:
        """Gate a whole answer: the changed answer, or None when nothing changed."""
        if not self.gates_responses or not isinstance(payload, dict):
            return None
        gate = gate_chat_completion if self.exchange.api == CHAT else gate_responses_response
        result = gate(self.policies, self.facts, payload)
        for pending in result.pending:
            approved, reason = await self.approve(pending.decision, tool_digest(pending.name, pending.arguments),
                                                  pending.name, pending.arguments)
            result.resolve(pending.key, approved, reason)
        body, error, decisions = result.finish()
        self.record(decisions)
        if error is not None:
            code, message, _rule = error
            raise errors.policy_violation(code, message)
        return body

    def stream_stage(self) -> PolicyStage | None:
        if not self.gates_responses:
            return None
        if self.exchange.api == CHAT:
            self._gate = ChatStreamGate(self.policies, self.facts)
        else:
            self._gate = ResponsesStreamGate(self.policies, self.facts)
        return PolicyStage(self, self._gate)

    def on_target(self, provider: str | None, model: str | None) -> None:
        """The target is known: conditions at the response stages may read it."""
        self.facts.provider, self.facts.target_model = provider, model

    # -- bookkeeping -----------------------------------------------------------------

    def record(self, decisions: list[Decision]) -> None:
        metrics = self.runtime.metrics
        for decision in decisions:
            self.exchange.decisions.append(decision.label)
            action = f"shadow_{decision.action}" if decision.shadow else decision.action
            metrics.policy_decisions(decision.policy, decision.rule, action).inc()
            if decision.error:
                metrics.policy_errors(decision.policy, decision.rule).inc()
                log.warning("policy %s/%s failed closed on %s: %s", decision.policy, decision.rule,
                            self.exchange.request_id, decision.error)
            if decision.action == "review" and not decision.shadow:
                self._reviews.append(decision)
            self._audit("decision", decision, {"message": decision.message, "error": decision.error,
                                               "tool": decision.tool_name, "tags": list(decision.tags)})

    def close(self, response: Any = None) -> None:
        """The request ended: record what the stream gate decided, queue reviews."""
        if self._gate is not None:
            decisions = self._gate.decisions
            self.record(decisions[self._recorded:])
            self._recorded = len(decisions)
        for decision in self._reviews:
            self.runtime.background(self.runtime.store.add_review(ReviewRecord(
                ts=time.time(), request_id=self.exchange.request_id, tenant=self.facts.tenant,
                agent=self.exchange.agent, policy=decision.policy, rule=decision.rule,
                request=_clip(self._original), response=_clip(response) if response is not None else None)))
        self._reviews.clear()

    def _audit(self, kind: str, decision: Decision, detail: dict[str, Any]) -> None:
        self.runtime.audit.append(AuditEvent(
            ts=time.time(), request_id=self.exchange.request_id, tenant=self.facts.tenant,
            agent=self.exchange.agent, kind=kind, policy=decision.policy, rule=decision.rule,
            stage=decision.stage, action=decision.action, shadow=decision.shadow,
            detail={key: value for key, value in detail.items() if value not in (None, [], "")}))


@dataclass(frozen=True, slots=True)
class PendingHold:
    """A streamed tool call waiting for a human; the relay keeps the stream alive meanwhile."""

    stage: PolicyStage
    hold: Hold

    async def resolve(self) -> list[SSEEvent | PendingHold]:
        return await self.stage.resolve(self.hold)


class PolicyStage:
    """The stream gate as a relay stage: Emit -> events (original bytes when unchanged)."""

    def __init__(self, enforcer: Enforcer, gate: ChatStreamGate | ResponsesStreamGate) -> None:
        self.enforcer = enforcer
        self.gate = gate
        self._origins: dict[int, SSEEvent] = {}

    def feed(self, event: SSEEvent) -> list[SSEEvent | PendingHold]:
        if event.is_done:
            return [event]
        payload = event.json()
        self._origins[id(payload)] = event
        if isinstance(self.gate, ChatStreamGate):
            items = self.gate.feed(payload)
        else:
            items = self.gate.feed(str(payload.get("type", event.event)), payload)
        return self._events(items)

    def finish(self) -> list[SSEEvent | PendingHold]:
        return self._events(self.gate.finish())

    async def resolve(self, hold: Hold) -> list[SSEEvent | PendingHold]:
        approved, reason = await self.enforcer.approve(hold.decision, tool_digest(hold.name, hold.arguments),
                                                       hold.name, hold.arguments)
        return self._events(self.gate.resolve(hold.call_key, approved, reason))

    def _events(self, items: list[GateItem]) -> list[SSEEvent | PendingHold]:
        out: list[SSEEvent | PendingHold] = []
        for item in items:
            if isinstance(item, Emit):
                original = self._origins.pop(id(item.payload), None) if item.original else None
                out.append(original if original is not None else SSEEvent.of(item.payload, item.event))
            elif isinstance(item, Hold):
                out.append(PendingHold(self, item))
            elif isinstance(item, Fail):
                raise errors.policy_violation(item.code, item.message)
        return out


def _refusal(decision: Decision) -> str:
    if decision.message:
        return decision.message
    what = f"tool '{decision.tool_name}'" if decision.tool_name else "this request"
    return f"Policy rule '{decision.policy}/{decision.rule}' does not allow {what}."


def _denial(decision: Decision, reason: str | None) -> str:
    why = f": {reason}" if reason else "."
    return f"The approval that policy rule '{decision.policy}/{decision.rule}' requires was not given{why}"


def _summary(facts: RequestFacts) -> str:
    """What an approver reads: the approval covers the whole request, so not only its last
    user message but also what steers it (system and developer instructions) and its tools."""
    parts = [facts.user_input[:500]]
    instructions = " ".join(message["content"] for message in facts.messages
                            if message["role"] in ("system", "developer") and message["content"])
    if instructions:
        parts.append(f"[instructions] {instructions[:300]}")
    if facts.tool_names:
        parts.append(f"[tools] {', '.join(facts.tool_names)[:200]}")
    parts.append(f"[messages] {len(facts.messages)}")
    return "\n".join(parts)


def _clip(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text[:REVIEW_LIMIT]
