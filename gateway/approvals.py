"""Human approvals: holds that wait for a decision, deferred approvals redeemed on retry.

An approval is stored before anyone waits on it, so a pending approval survives a
restart and can be decided from any replica. A hold waits on a local event (woken at
once by a decision made through this process) and re-reads the store every second (a
decision made through another replica). A sweep applies `on_timeout` to approvals past
their expiry; past it, no human can decide it any more. A deferred approval is bound to
the tenant, the rule, the policy version and a digest of the request (or of the tool name
and arguments), is used once, and only within its redemption window (`redeemable_until`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson

from gateway.metrics import Metrics
from gateway.store import ApprovalRecord, Store

log = logging.getLogger("lockgate.approvals")
POLL_S = 1.0
SWEEP_S = 1.0
PENDING, APPROVED, DENIED, EXPIRED = "pending", "approved", "denied", "expired"
ABANDONED = "the request was abandoned before a decision (its client left)"
SHUT_DOWN = "the gateway shut down before a decision (past its drain timeout)"
STATUSES = (PENDING, APPROVED, DENIED, EXPIRED)
TIMEOUT = "timeout"
"""`decided_by` of an approval decided by its `on_timeout` (the stores write it in the sweep)."""


def request_digest(body: dict[str, Any]) -> str:
    """The canonical JSON of a request body (keys sorted, no whitespace), hashed."""
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def tool_digest(name: str, arguments: str) -> str:
    try:
        canonical = orjson.dumps(orjson.loads(arguments or "{}"), option=orjson.OPT_SORT_KEYS)
    except orjson.JSONDecodeError:
        canonical = arguments.encode()
    return hashlib.sha256(name.encode() + b"\0" + canonical).hexdigest()


def new_approval_id() -> str:
    return "apr_" + os.urandom(12).hex()


def redeemable_until(record: ApprovalRecord) -> float:
    """The last moment an approved deferred approval lets its retry through.

    The client gets the approval's own `timeout_s` again, counted from the decision (by a
    human, or by `on_timeout: approve`): long enough to notice and retry, short enough that
    an approval forgotten for weeks cannot be replayed.
    """
    decided_at = record.decided_at if record.decided_at is not None else record.expires_at
    return decided_at + (record.expires_at - record.created_at)


def _utc(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def timed_out(record: ApprovalRecord, now: float) -> bool:
    """Whether the approval's time for a human decision is over (swept or not yet)."""
    return record.decided_by == TIMEOUT or (record.status == PENDING and record.expires_at <= now)


def undecidable(approval_id: str, current: ApprovalRecord | None) -> str:
    """Why `decide` refused: what the CLI and the admin API both say."""
    if current is None:
        return f"No approval {approval_id}."
    if timed_out(current, time.time()):
        return (f"Approval {approval_id} expired at {_utc(current.expires_at)} before anyone decided it; "
                f"its on_timeout ({current.on_timeout}) applies and it can no longer be approved or denied.")
    return f"Approval {approval_id} is already {current.status}; only pending approvals can be decided."


class Approvals:
    def __init__(self, store: Store, metrics: Metrics) -> None:
        self.store = store
        self.metrics = metrics
        self._events: dict[str, asyncio.Event] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self.on_decided: list[Callable[[ApprovalRecord], Awaitable[None]]] = []

    async def start(self) -> None:
        await self._refresh_gauges()
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever(), name="lockgate-approvals")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    async def create(self, *, tenant: str, agent: str | None, policy: str, rule: str, stage: str, mode: str,
                     timeout_s: float, on_timeout: str, digest: str, policy_version: str, request_id: str,
                     tool_name: str | None = None, arguments: str | None = None, summary: str | None = None,
                     webhook: str | None = None) -> ApprovalRecord:
        now = time.time()
        record = ApprovalRecord(
            id=new_approval_id(), status=PENDING, tenant=tenant, agent=agent, policy=policy, rule=rule,
            stage=stage, mode=mode, tool_name=tool_name, arguments=arguments, summary=summary, digest=digest,
            policy_version=policy_version, request_id=request_id, on_timeout=on_timeout, created_at=now,
            expires_at=now + timeout_s)
        await self.store.add_approval(record)
        self.metrics.approvals_pending.inc()
        log.info("approval %s pending: tenant=%s rule=%s stage=%s tool=%s", record.id, tenant, rule, stage,
                 tool_name)
        if webhook:
            self._background(self._notify(webhook, record))
        return record

    async def wait(self, record: ApprovalRecord) -> ApprovalRecord:
        """Block until the approval is decided or expires (then `on_timeout` applies)."""
        event = self._events.setdefault(record.id, asyncio.Event())
        try:
            while True:
                remaining = record.expires_at - time.time()
                if remaining <= 0:
                    await self._expire()
                try:
                    await asyncio.wait_for(event.wait(), min(POLL_S, max(remaining, 0.01)))
                except TimeoutError:
                    pass
                current = await self.store.get_approval(record.id)
                if current is not None and current.status != PENDING:
                    return current
        finally:
            self._events.pop(record.id, None)

    async def decide(self, approval_id: str, approve: bool, by: str, reason: str | None) -> ApprovalRecord | None:
        """Approve or deny a pending approval; None when it is not pending (any more) or has
        expired (`undecidable` says which)."""
        record = await self.store.decide_approval(approval_id, APPROVED if approve else DENIED, by, reason,
                                                  time.time())
        if record is not None:
            self._decided(record)
            return record
        # Too late for a human: apply on_timeout now, as the sweep would (the CLI decides even
        # while no gateway runs, so no sweep may have run since the expiry).
        await self._expire()
        return None

    async def redeem(self, approval_id: str, *, tenant: str, rule: str, digest: str, policy_version: str
                     ) -> tuple[str, ApprovalRecord | None]:
        """Check a retry's `X-Lockgate-Approval`: ("ok" | "pending" | "denied" | "mismatch", record).

        "denied" also covers an approval that timed out, or was approved but not used within
        its redemption window; the record's `reason` then says so.
        """
        record = await self.store.get_approval(approval_id)
        if record is None or record.tenant != tenant:
            return "mismatch", None
        if record.rule != rule or record.digest != digest or record.policy_version != policy_version:
            return "mismatch", record
        now = time.time()
        if record.status == PENDING and record.expires_at <= now:
            await self._expire()  # its on_timeout decides it now, whether or not a sweep ran
            record = await self.store.get_approval(approval_id) or record
        if record.status == PENDING:
            return "pending", record
        if record.status != APPROVED:
            return "denied", record
        if now > redeemable_until(record):
            return "denied", replace(record, reason=(
                f"approval {approval_id} was approved at {_utc(record.decided_at or record.expires_at)} but not "
                f"used before {_utc(redeemable_until(record))}; send the request without the approval header "
                "to ask for a new one"))
        if not await self.store.use_approval(approval_id, now):
            return "mismatch", record  # already used: an approval lets one request through
        return "ok", record

    def abandon(self, approval_id: str, reason: str = ABANDONED) -> None:
        """The request a hold kept waiting went away (its client left, a shutdown ended it):
        the approval expires now, so that nobody decides what nothing waits for any more."""
        self._background(self._abandon(approval_id, reason))

    async def _abandon(self, approval_id: str, reason: str) -> None:
        record = await self.store.decide_approval(approval_id, EXPIRED, "lockgate", reason, time.time())
        if record is not None:
            self._decided(record)

    def wake(self, approval_id: str) -> None:
        """A decision was made elsewhere (another replica): release a hold waiting here."""
        event = self._events.get(approval_id)
        if event is not None:
            event.set()

    def _decided(self, record: ApprovalRecord) -> None:
        self.metrics.approvals_pending.dec()
        event = self._events.get(record.id)
        if event is not None:
            event.set()
        log.info("approval %s %s by %s", record.id, record.status, record.decided_by)
        for listener in self.on_decided:
            self._background(listener(record))

    async def _expire(self) -> None:
        for record in await self.store.expire_approvals(time.time()):
            self._decided(record)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_S)
            try:
                await self._expire()
                await self._refresh_gauges()
            except Exception:
                log.exception("approval sweep failed")

    async def _refresh_gauges(self) -> None:
        pending = await self.store.list_approvals(PENDING, None, 100_000)
        now = time.time()
        self.metrics.approvals_pending.set(len(pending))
        self.metrics.approvals_overdue.set(sum(1 for record in pending if record.expires_at < now - 2 * SWEEP_S))

    async def _notify(self, url: str, record: ApprovalRecord) -> None:
        """Post a Slack-compatible message; failures are logged, never felt by the request."""
        what = f"tool call `{record.tool_name}`" if record.tool_name else "a request"
        text = (f"Lockgate approval {record.id}: tenant {record.tenant} wants {what} "
                f"(rule {record.policy}/{record.rule}). Approve: POST /admin/approvals/{record.id}/approve")
        payload = {"text": text, "approval": record.public()}
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        for attempt in range(3):
            try:
                async with self._session.post(url, json=payload) as response:
                    if response.status < 500:
                        return
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("approval webhook failed (%s), attempt %d", type(exc).__name__, attempt + 1)
            await asyncio.sleep(0.5 * 2 ** attempt)

    def _background(self, coroutine: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
