"""The storage contract, run against every backend: SQLite on a file, PostgreSQL on a real server.

Each contract test runs once per backend and asserts what `gateway.store.base.Store` promises:
keys, the ledger (exact floats, atomic batches), approvals (decided once, expired by their
`on_timeout`, used once), the audit log and reviews. Then what only several replicas can
break: two PostgresStore instances on one database racing to decide, expire and use the
same approvals (a third connection holds the row lock so the racers really collide), and
opening at once (migrations run once). Finally the same ledger read from both backends
gives identical rows and an identical usage report.
"""

from __future__ import annotations

import asyncio
import math
import random
import sqlite3
from collections.abc import AsyncIterator, Awaitable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest

from gateway.reporting import ERROR_TYPES, GROUP_KEYS, usage_report
from gateway.store import SQLiteStore, Store, open_store
from gateway.store.base import ApprovalRecord, AuditEvent, KeyRecord, LedgerQuery, LedgerRow, ReviewRecord
from gateway.store.postgres import MIGRATION_LOCK_KEY, PostgresStore
from gateway.store.schema import POSTGRES_MIGRATIONS

if TYPE_CHECKING:
    from tests.pg import PostgresServer


EVERYTHING = LedgerQuery(tenant=None, since=0.0, until=1e12)
LOCK_WAIT_S = 10.0


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'lockgate.db'}"
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        url = await server.create_database()
    opened = open_store(url)  # as the gateway picks its backend from `storage.url`
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture
async def replicas(postgres_url: str) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    """Two gateway replicas' stores on one database."""
    pair = PostgresStore(postgres_url), PostgresStore(postgres_url)
    await asyncio.gather(*(replica.open() for replica in pair))
    yield pair
    await asyncio.gather(*(replica.close() for replica in pair))


def key(hex_digest: str, tenant: str = "acme", created_at: float = 1000.0) -> KeyRecord:
    return KeyRecord(key_hash=f"sha256:{hex_digest.ljust(64, '0')}", tenant=tenant, name=f"key {hex_digest}",
                     created_at=created_at)


def ledger_row(ts: float, tenant: str = "acme", **fields: Any) -> LedgerRow:
    defaults: dict[str, Any] = {"request_id": f"req_{ts}", "agent": None, "alias": "fast", "provider": "openai",
                                "model": "gpt-4o-mini", "api": "chat", "stream": False, "status": 200,
                                "latency_ms": 12.5}
    return LedgerRow(ts=ts, tenant=tenant, **{**defaults, **fields})


def as_stored(row: LedgerRow, row_id: int) -> dict[str, Any]:
    """What `ledger_rows` returns for `row`: SQLite's shape, flags as 0/1, decisions joined."""
    return {"id": row_id, **dict(zip(LedgerRow.COLUMNS, row.values(), strict=True))}


def typed(rows: list[dict[str, Any]]) -> list[list[tuple[str, type]]]:
    return [[(column, type(value)) for column, value in row.items()] for row in rows]


def approval(approval_id: str, **fields: Any) -> ApprovalRecord:
    defaults: dict[str, Any] = {
        "status": "pending", "tenant": "acme", "agent": "planner", "policy": "default", "rule": "refunds",
        "stage": "tool_call", "mode": "hold", "tool_name": "refund", "arguments": '{"amount": 120}',
        "summary": "refund 120 EUR", "digest": f"sha256:{approval_id}", "policy_version": "v1",
        "request_id": f"req_{approval_id}", "on_timeout": "deny", "created_at": 1000.0, "expires_at": 2000.0}
    return ApprovalRecord(id=approval_id, **{**defaults, **fields})


# -- keys -------------------------------------------------------------------------------------


async def test_keys_are_added_found_and_listed_by_tenant_in_creation_order(store: Store) -> None:
    first, second, other = key("aa01", created_at=3.0), key("bb02", created_at=1.0), key("cc03", "globex", 2.0)
    for record in (first, second, other):
        await store.add_key(record)
    assert await store.find_key(first.key_hash) == first
    assert await store.find_key("sha256:" + "f" * 64) is None
    assert await store.list_keys() == [second, other, first]
    assert await store.list_keys("acme") == [second, first]
    assert await store.list_keys("nobody") == []


async def test_a_key_is_revoked_by_an_unambiguous_prefix_of_its_id(store: Store) -> None:
    await store.add_key(key("ab12"))
    await store.add_key(key("ab13"))
    assert await store.revoke_key("ab1") is None  # two active keys start with it: refused
    assert all(record.revoked_at is None for record in await store.list_keys())
    assert await store.revoke_key("ffff") is None

    revoked = await store.revoke_key("AB12")  # key ids are hex: their case does not matter
    assert revoked is not None and revoked.key_hash == key("ab12").key_hash and revoked.tenant == "acme"
    found = await store.find_key(key("ab12").key_hash)
    assert found is not None and found.revoked_at is not None
    assert await store.revoke_key("ab12") is None  # revoked already
    assert (await store.revoke_key("ab1")).key_hash == key("ab13").key_hash  # the revoked one no longer counts


@pytest.mark.parametrize("key_id", ["", "%", "_", "a%", "sha256:", " ab12", "ab12 ", "g"])
async def test_a_key_id_that_is_not_hex_revokes_nothing(store: Store, key_id: str) -> None:
    await store.add_key(key("ab12"))  # the only key: any pattern-like or empty id would match it
    assert await store.revoke_key(key_id) is None
    assert (await store.find_key(key("ab12").key_hash)).revoked_at is None


# -- ledger -----------------------------------------------------------------------------------


async def test_ledger_rows_come_back_exactly_with_every_column(store: Store) -> None:
    full = ledger_row(1_700_000_000.123456, agent="planner", stream=True, status=502, error_type="upstream_error",
                      input_tokens=2**40, output_tokens=7, cached_tokens=3, cache_write_tokens=2, reasoning_tokens=1,
                      cost_usd=0.1, latency_ms=1 / 3, ttft_ms=1e-12, upstream_ms=123456.789, overhead_ms=0.2,
                      attempts=2, decisions=["allow:tools", "redact:pii"], estimated=True)
    bare = ledger_row(1_700_000_001.5, alias=None, provider=None, model=None)
    await store.write_ledger([full, bare])
    await store.write_ledger([])
    rows = await store.ledger_rows(EVERYTHING)
    expected = [as_stored(full, 1), as_stored(bare, 2)]
    assert rows == expected
    assert typed(rows) == typed(expected)


async def test_ledger_query_is_a_half_open_window_by_tenant_in_time_order(store: Store) -> None:
    await store.write_ledger([ledger_row(300.0), ledger_row(100.0), ledger_row(200.0),
                              ledger_row(200.5, tenant="globex")])
    window = await store.ledger_rows(LedgerQuery(tenant=None, since=100.0, until=300.0))
    assert [(row["ts"], row["tenant"]) for row in window] == [(100.0, "acme"), (200.0, "acme"), (200.5, "globex")]
    acme = await store.ledger_rows(LedgerQuery(tenant="acme", since=150.0, until=300.5))
    assert [row["ts"] for row in acme] == [200.0, 300.0]


async def test_spend_since_sums_the_tenants_costs_exactly(store: Store) -> None:
    await store.write_ledger([ledger_row(100.0, cost_usd=0.5), ledger_row(200.0, cost_usd=0.25),
                              ledger_row(250.0, cost_usd=None), ledger_row(300.0, cost_usd=0.125),
                              ledger_row(300.0, tenant="globex", cost_usd=0.1),
                              ledger_row(400.0, tenant="globex", cost_usd=0.2)])
    assert await store.spend_since("acme", 0.0) == 0.875
    assert await store.spend_since("acme", 200.0) == 0.375  # `since` itself is included
    assert await store.spend_since("globex", 0.0) == 0.1 + 0.2  # two floats add up the same in any order
    nothing = await store.spend_since("acme", 301.0)
    assert nothing == 0.0 and isinstance(nothing, float)


async def test_a_ledger_batch_lands_whole_or_not_at_all(store: Store) -> None:
    broken = ledger_row(2.0, tenant=None)  # type: ignore[arg-type]  # tenant is NOT NULL
    with pytest.raises((sqlite3.IntegrityError, asyncpg.NotNullViolationError)):
        await store.write_ledger([ledger_row(1.0), broken, ledger_row(3.0)])
    assert await store.ledger_rows(EVERYTHING) == []


async def test_ten_thousand_ledger_rows_in_one_call(store: Store) -> None:
    batch = [ledger_row(1000.0 + n / 8, tenant=f"t{n % 7}", input_tokens=n, cost_usd=n / 1024, stream=n % 2 == 0)
             for n in range(10_000)]
    await store.write_ledger(batch)
    rows = await store.ledger_rows(EVERYTHING)
    assert rows == [as_stored(row, n + 1) for n, row in enumerate(batch)]
    assert await store.spend_since("t3", 0.0) == sum(row.cost_usd for row in batch if row.tenant == "t3")


# -- approvals --------------------------------------------------------------------------------


async def test_an_approval_reads_back_as_written(store: Store) -> None:
    record = approval("ap_1", agent=None, tool_name=None, arguments=None, summary=None, stage="request")
    await store.add_approval(record)
    assert await store.get_approval("ap_1") == record
    assert await store.get_approval("ap_missing") is None


async def test_approvals_are_listed_newest_first_filtered_by_status_and_tenant(store: Store) -> None:
    for record in (approval("a", created_at=1.0), approval("b", created_at=4.0, status="approved"),
                   approval("c", created_at=3.0, tenant="globex"), approval("d", created_at=2.0)):
        await store.add_approval(record)

    async def ids(status: str | None, tenant: str | None, limit: int = 10) -> list[str]:
        return [record.id for record in await store.list_approvals(status, tenant, limit)]

    assert await ids(None, None) == ["b", "c", "d", "a"]
    assert await ids("pending", None) == ["c", "d", "a"]
    assert await ids(None, "acme") == ["b", "d", "a"]
    assert await ids("pending", "acme") == ["d", "a"]
    assert await ids(None, None, limit=2) == ["b", "c"]
    assert await ids("expired", None) == []


async def test_an_approval_is_decided_once(store: Store) -> None:
    await store.add_approval(approval("ap_1"))
    decided = await store.decide_approval("ap_1", "approved", "alice", "looks fine", 1500.0)
    assert decided == replace(approval("ap_1"), status="approved", decided_by="alice", reason="looks fine",
                              decided_at=1500.0)
    assert await store.decide_approval("ap_1", "denied", "bob", None, 1600.0) is None
    assert await store.get_approval("ap_1") == decided
    assert await store.decide_approval("ap_missing", "approved", "alice", None, 1500.0) is None


async def test_an_approval_past_its_expiry_is_no_longer_decided(store: Store) -> None:
    await store.add_approval(approval("late", expires_at=2000.0))
    await store.add_approval(approval("in_time", expires_at=2000.0))
    assert await store.decide_approval("late", "approved", "alice", None, 2000.0) is None  # expiry is the end
    assert await store.decide_approval("late", "approved", "alice", None, 5000.0) is None
    assert (await store.get_approval("late")).status == "pending"  # left for on_timeout (the sweep)
    assert (await store.decide_approval("in_time", "approved", "alice", None, 1999.5)).status == "approved"
    assert [record.id for record in await store.expire_approvals(5000.0)] == ["late"]


async def test_expiry_applies_each_approvals_on_timeout_once(store: Store) -> None:
    for record in (approval("deny", expires_at=900.0), approval("allow", expires_at=900.0, on_timeout="approve"),
                   approval("due_now", expires_at=1000.0), approval("later", expires_at=1000.5),
                   approval("decided", expires_at=500.0, status="denied", decided_by="alice", decided_at=400.0)):
        await store.add_approval(record)
    expired = sorted(await store.expire_approvals(1000.0), key=lambda record: record.id)
    assert [(record.id, record.status, record.decided_by, record.decided_at) for record in expired] == [
        ("allow", "approved", "timeout", 1000.0), ("deny", "expired", "timeout", 1000.0),
        ("due_now", "expired", "timeout", 1000.0)]
    assert await store.expire_approvals(1000.0) == []
    assert (await store.get_approval("later")).status == "pending"
    assert (await store.get_approval("decided")).decided_by == "alice"


async def test_an_approved_approval_is_used_once(store: Store) -> None:
    for record in (approval("yes", status="approved"), approval("no", status="denied"), approval("wait")):
        await store.add_approval(record)
    assert await store.use_approval("yes", 1700.0) is True
    assert await store.use_approval("yes", 1800.0) is False
    assert (await store.get_approval("yes")).used_at == 1700.0
    assert await store.use_approval("no", 1700.0) is False
    assert await store.use_approval("wait", 1700.0) is False
    assert await store.use_approval("ap_missing", 1700.0) is False


# -- audit and reviews ------------------------------------------------------------------------


async def test_audit_events_round_trip_their_detail_newest_first(store: Store) -> None:
    detail = {"matched": ["ssn", "email"], "score": 0.1, "big": 2**60, "ok": True, "none": None, "empty": {},
              "text": 'héllo ✓ "quoted" \\ back', "nested": {"list": [1, 2.5, {"deep": "x"}]}}
    events = [AuditEvent(ts=10.0, request_id="r1", tenant="acme", agent="planner", kind="decision",
                         policy="default", rule="pii", stage="response", action="redact", shadow=True, detail=detail),
              AuditEvent(ts=20.0, request_id="r2", tenant=None, agent=None, kind="reload"),
              AuditEvent(ts=20.0, request_id="r1", tenant="acme", agent=None, kind="approval", action="hold")]
    await store.write_audit(events)
    await store.write_audit([])
    read = await store.audit_events(0.0, None, 10)
    assert [(row["id"], row["kind"]) for row in read] == [(3, "approval"), (2, "reload"), (1, "decision")]
    assert read[2] == {"id": 1, **{column: getattr(events[0], column) for column in AuditEvent.COLUMNS}}
    assert read[1]["detail"] == {} and read[1]["shadow"] is False and read[2]["shadow"] is True
    assert [row["id"] for row in await store.audit_events(0.0, "r1", 10)] == [3, 1]
    assert [row["id"] for row in await store.audit_events(15.0, None, 10)] == [3, 2]
    assert [row["id"] for row in await store.audit_events(0.0, None, 1)] == [3]


async def test_reviews_are_listed_newest_first_by_tenant(store: Store) -> None:
    reviews = [ReviewRecord(ts=float(ts), request_id=f"r{ts}", tenant=tenant, agent=None, policy="default",
                            rule="sample", request='{"model": "m"}', response=None if ts == 3 else f"answer {ts}")
               for ts, tenant in ((1, "acme"), (2, "globex"), (3, "acme"))]
    for review in reviews:
        await store.add_review(review)
    read = await store.list_reviews(0.0, None, 10)
    assert read == [{"id": n, **{column: getattr(reviews[n - 1], column) for column in ReviewRecord.COLUMNS}}
                    for n in (3, 2, 1)]
    assert [row["ts"] for row in await store.list_reviews(0.0, "acme", 10)] == [3.0, 1.0]
    assert [row["ts"] for row in await store.list_reviews(2.0, None, 1)] == [3.0]


async def test_text_holding_u0000_is_stored_and_never_fails_a_batch(store: Store) -> None:
    # PostgreSQL cannot store U+0000 in text or JSONB, so that backend keeps U+FFFD in its place.
    def stored(text: str) -> str:
        return text.replace("\x00", "\ufffd") if isinstance(store, PostgresStore) else text

    await store.write_ledger([ledger_row(1.0, agent="agent\x00", model="m\x00odel")])
    await store.write_audit([AuditEvent(ts=1.0, request_id="r1", tenant="acme", agent=None, kind="decision",
                                        rule="pii\x00", detail={"match\x00": ["\x00", "\\u0000 stays"]})])
    await store.add_approval(approval("ap_1", arguments='{"path": "a\x00b"}'))
    [row] = await store.ledger_rows(EVERYTHING)
    assert (row["agent"], row["model"]) == (stored("agent\x00"), stored("m\x00odel"))
    [event] = await store.audit_events(0.0, None, 10)
    assert event["rule"] == stored("pii\x00")
    assert event["detail"] == {stored("match\x00"): [stored("\x00"), "\\u0000 stays"]}
    assert (await store.get_approval("ap_1")).arguments == stored('{"path": "a\x00b"}')


# -- several replicas on one PostgreSQL -------------------------------------------------------


async def collide(url: str, lock_sql: str, lock_args: tuple[Any, ...], racers: list[Awaitable[Any]]) -> list[Any]:
    """Start the racers while a third session holds a lock; release it once all of them queue on it."""
    blocker = await asyncpg.connect(url)
    tasks: list[asyncio.Future[Any]] = []
    try:
        async with blocker.transaction():
            await blocker.execute(lock_sql, *lock_args)
            tasks = [asyncio.ensure_future(racer) for racer in racers]
            deadline = asyncio.get_running_loop().time() + LOCK_WAIT_S
            while True:
                await blocker.execute("SELECT pg_stat_clear_snapshot()")  # else the view is frozen in a transaction
                waiting = await blocker.fetchval("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                                                 "current_database() AND wait_event_type = 'Lock'")
                if waiting >= len(tasks):
                    break
                assert asyncio.get_running_loop().time() < deadline, f"only {waiting} of {len(tasks)} racers queued"
                await asyncio.sleep(0.02)
        return await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()  # a no-op unless a failure above left it running
        await blocker.close()


ROW_LOCK = "SELECT 1 FROM approvals WHERE id = $1 FOR UPDATE"


async def test_two_replicas_deciding_one_approval_at_once_decide_it_once(
        replicas: tuple[PostgresStore, PostgresStore], postgres_url: str) -> None:
    first, second = replicas
    await first.add_approval(approval("ap_1"))
    results = await collide(postgres_url, ROW_LOCK, ("ap_1",), [
        first.decide_approval("ap_1", "approved", "alice", None, 1500.0),
        second.decide_approval("ap_1", "denied", "bob", "no", 1500.0)])
    winners = [record for record in results if record is not None]
    assert len(winners) == 1
    assert await second.get_approval("ap_1") == await first.get_approval("ap_1") == winners[0]


async def test_two_replicas_using_one_approval_at_once_use_it_once(
        replicas: tuple[PostgresStore, PostgresStore], postgres_url: str) -> None:
    first, second = replicas
    await first.add_approval(approval("ap_1", status="approved"))
    results = await collide(postgres_url, ROW_LOCK, ("ap_1",), [first.use_approval("ap_1", 1700.0),
                                                                second.use_approval("ap_1", 1701.0)])
    assert sorted(results) == [False, True]


async def test_two_replicas_sweeping_at_once_never_expire_an_approval_twice(
        replicas: tuple[PostgresStore, PostgresStore]) -> None:
    first, second = replicas
    for sweep in range(3):
        ids = {f"ap_{sweep}_{n}" for n in range(200)}
        for approval_id in ids:
            await first.add_approval(approval(approval_id, expires_at=900.0,
                                              on_timeout="approve" if approval_id.endswith("7") else "deny"))
        swept = await asyncio.gather(first.expire_approvals(1000.0), second.expire_approvals(1000.0))
        by_first, by_second = ({record.id for record in records} for records in swept)
        assert not by_first & by_second
        assert by_first | by_second == ids
        assert all(record.status == ("approved" if record.id.endswith("7") else "expired")
                   for records in swept for record in records)


async def test_a_human_and_a_sweep_at_once_decide_each_approval_once(
        replicas: tuple[PostgresStore, PostgresStore]) -> None:
    first, second = replicas
    ids = [f"ap_{n}" for n in range(100)]
    for approval_id in ids:
        await first.add_approval(approval(approval_id, expires_at=900.0))
    # The human decides just before the expiry; the sweeping replica's clock is already past it.
    results = await asyncio.gather(second.expire_approvals(1000.0),
                                   *(first.decide_approval(approval_id, "approved", "alice", None, 899.0)
                                     for approval_id in ids))
    expired, decided = {record.id for record in results[0]}, {record.id for record in results[1:] if record}
    assert not expired & decided
    assert expired | decided == set(ids)


async def test_replicas_opening_at_once_migrate_the_schema_once(postgres_url: str) -> None:
    stores = [PostgresStore(postgres_url) for _ in range(3)]
    # Both migrators queue on the advisory lock, then run one after the other.
    await collide(postgres_url, "SELECT pg_advisory_xact_lock($1)", (MIGRATION_LOCK_KEY,),
                  [store.open() for store in stores[:2]])
    await stores[2].open()  # a later start finds nothing to do
    try:
        await stores[0].write_ledger([ledger_row(1.0)])
        assert [row["ts"] for row in await stores[1].ledger_rows(EVERYTHING)] == [1.0]
        connection = await asyncpg.connect(postgres_url)
        try:
            versions = [row["version"] for row in await connection.fetch("SELECT version FROM schema_version")]
        finally:
            await connection.close()
        assert sorted(versions) == list(range(1, len(POSTGRES_MIGRATIONS) + 1))
    finally:
        await asyncio.gather(*(store.close() for store in stores))


async def test_a_store_lives_in_the_schema_its_url_names(postgres_url: str) -> None:
    connection = await asyncpg.connect(postgres_url)
    try:
        await connection.execute("CREATE SCHEMA lockgate")
        store = PostgresStore(postgres_url + "?search_path=lockgate")  # unknown DSN parameters are settings
        await store.open()
        await store.add_key(key("ab12"))
        await store.close()
        assert await connection.fetchval("SELECT count(*) FROM lockgate.api_keys") == 1
        assert await connection.fetchval("SELECT to_regclass('public.api_keys')") is None
    finally:
        await connection.close()


# -- the same ledger from both backends -------------------------------------------------------


def random_ledger(seed: int, count: int) -> list[LedgerRow]:
    rng = random.Random(seed)
    start = 1_767_225_600.0  # 2026-01-01T00:00:00Z; the rows span three days
    rows = []
    for n in range(count):
        failed = rng.random() < 0.1
        rows.append(ledger_row(
            start + rng.uniform(0, 3 * 86400), tenant=rng.choice(["acme", "globex", "initech"]),
            request_id=f"req_{n}", agent=rng.choice([None, "", "planner", "writer"]),
            alias=rng.choice(["fast", "smart", None]), provider=rng.choice(["openai", "anthropic", "gemini"]),
            model=rng.choice(["gpt-4o-mini", "claude-sonnet", "gemini-flash"]), stream=rng.random() < 0.5,
            status=502 if failed else 200, error_type=rng.choice(ERROR_TYPES) if failed else None,
            input_tokens=rng.randrange(0, 50_000), output_tokens=rng.randrange(0, 4_000),
            cached_tokens=rng.randrange(0, 1_000), reasoning_tokens=rng.randrange(0, 500),
            cost_usd=None if rng.random() < 0.05 else rng.uniform(0, 0.05), latency_ms=rng.uniform(50, 9_000),
            ttft_ms=rng.uniform(20, 800) if rng.random() < 0.7 else None, overhead_ms=rng.uniform(0.1, 3),
            attempts=rng.randrange(1, 4), estimated=rng.random() < 0.05))
    return rows


async def test_the_same_ledger_reads_and_reports_identically_from_both_backends(
        tmp_path: Path, postgres_url: str) -> None:
    ledger = random_ledger(seed=20260101, count=3_000)
    sqlite_store, postgres_store = SQLiteStore(tmp_path / "lockgate.db"), PostgresStore(postgres_url)
    read: list[list[dict[str, Any]]] = []
    spent: list[float] = []
    for backend in (sqlite_store, postgres_store):
        await backend.open()
        try:
            for start in range(0, len(ledger), 500):  # in batches, as the metering writer sends them
                await backend.write_ledger(ledger[start:start + 500])
            read.append(await backend.ledger_rows(EVERYTHING))
            spent.append(await backend.spend_since("acme", ledger[0].ts))
        finally:
            await backend.close()
    from_sqlite, from_postgres = read
    assert from_postgres == from_sqlite
    assert typed(from_postgres) == typed(from_sqlite)
    expected_spend = math.fsum(row.cost_usd or 0.0 for row in ledger if row.tenant == "acme" and row.ts >= ledger[0].ts)
    assert spent == pytest.approx([expected_spend] * 2, rel=1e-12)  # the order of a float sum is the engine's

    since, until = ledger[0].ts, ledger[0].ts + 2 * 86400
    for tenant in (None, "acme"):
        for by in (None, *GROUP_KEYS):
            report = usage_report(from_postgres, tenant=tenant, since=since, until=until, by=by)
            assert report == usage_report(from_sqlite, tenant=tenant, since=since, until=until, by=by)
            assert report["totals"]["requests"] == sum(
                1 for row in ledger if since <= row.ts < until and tenant in (None, row.tenant))
