"""Batch mode behind a consumer (``batch=True``): one transaction per lane
chunk, a savepoint per guarded handler call. A failing handler mid-chunk
rolls back only its own savepoint; a failed commit or a broken transaction
(a killed backend, a deadlock between two chunks) has the whole chunk
handled again, with nothing settled before; cancelling mid-chunk leaves
nothing committed or settled. Real SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import lagom
import pytest

import anycqrs
from anycqrs import RetryPolicy
from anycqrs.consumers import InMemoryTransport, consume
from anycqrs.events.bootstrap import bootstrap
from anycqrs.inbox import InboxStore, InboxTransaction

from .inbox_helpers import Harness, Paid, PostgresHarness, SqliteHarness, paid

pytestmark = pytest.mark.anyio

Event = anycqrs.NotificationEvent[Paid]

RETRY = RetryPolicy(attempts=5, delay=0.01)

Hook = Callable[[int, int], Awaitable[None]]


class Plan:
    """What the test handler does: its calls (order ids), and hooks run
    before and after its write (``(order_id, call)``) and inside it."""

    def __init__(self, harness: Harness) -> None:
        self.harness = harness
        self.calls: list[int] = []
        self.before: Hook | None = None
        self.after: Hook | None = None
        self.during: Callable[[Any, int, int], None] | None = None


class Effect(anycqrs.EventHandler[Event]):
    def __init__(self, tx: InboxTransaction, plan: Plan) -> None:
        self.tx = tx
        self.plan = plan

    async def handle(self, event: Event) -> None:
        plan, order_id = self.plan, event.payload.order_id
        call = plan.calls.count(order_id)
        plan.calls.append(order_id)
        if plan.before is not None:
            await plan.before(order_id, call)

        def write(connection: Any) -> None:
            if plan.during is not None:
                plan.during(connection, order_id, call)
            plan.harness.write(connection, "Effect", order_id)

        await self.tx.run(write)
        if plan.after is not None:
            await plan.after(order_id, call)


def guarded(plan: Plan, inbox: InboxStore) -> anycqrs.EventMediator:
    container = lagom.Container()
    container[Plan] = plan
    return bootstrap(
        di_container=container,
        events_mapper=lambda events: events.bind(Event, Effect),
        inbox=inbox,
    )


def transport(*events: Event) -> InMemoryTransport:
    made = InMemoryTransport()
    for event in events:
        made.put_event(event)  # no key: one lane, one chunk
    made.close()
    return made


async def drain(mediator: anycqrs.EventMediator, source: InMemoryTransport) -> None:
    with anyio.fail_after(60):
        await consume(mediator, source, concurrency=1, retry=RETRY)


@pytest.fixture(params=["sqlite", "postgres"])
def batch_db(request: pytest.FixtureRequest, tmp_path: Path, unique: str) -> Iterator[Harness]:
    harness: Harness
    if request.param == "sqlite":
        harness = SqliteHarness(tmp_path / "app.db", unique)
    else:
        harness = PostgresHarness(request.getfixturevalue("postgres_dsn"), unique)
    harness.batch = True
    try:
        yield harness
    finally:
        harness.close()


@pytest.fixture
def pg(postgres_dsn: str, unique: str) -> Iterator[PostgresHarness]:
    harness = PostgresHarness(postgres_dsn, unique)
    harness.batch = True
    try:
        yield harness
    finally:
        harness.close()


def offsets(source: InMemoryTransport) -> list[int]:
    return sorted(record.offset for record in source.settled)


class TestChunk:
    async def test_chunk_commits_once_and_skips_duplicates(self, batch_db: Harness) -> None:
        plan, inbox = Plan(batch_db), batch_db.store()
        assert inbox.batch
        events = [paid(i) for i in range(1, 6)]
        first = transport(*events)
        await drain(guarded(plan, inbox), first)
        again = transport(*events)  # redelivered as one chunk: every handler skipped
        await drain(guarded(plan, inbox), again)
        assert plan.calls == [1, 2, 3, 4, 5]
        assert batch_db.effects() == [("Effect", i) for i in range(1, 6)]
        assert batch_db.inbox_rows() == 5
        assert offsets(first) == offsets(again) == [0, 1, 2, 3, 4]
        inbox.close()

    @pytest.mark.parametrize("dead", [False, True])
    async def test_failing_handler_mid_chunk(self, batch_db: Harness, dead: bool) -> None:
        plan, inbox = Plan(batch_db), batch_db.store()

        async def fail(order_id: int, call: int) -> None:
            if order_id == 2 and (dead or call == 0):
                raise RuntimeError("2 fails")

        plan.after = fail  # after its write: the savepoint rolls it back
        source = transport(paid(1), paid(2), paid(3))
        await drain(guarded(plan, inbox), source)
        if dead:
            assert plan.calls == [1, 2, 2, 2, 2, 2, 3]
            assert batch_db.effects() == [("Effect", 1), ("Effect", 3)]
            assert [d.record.offset for d in source.dead_letters] == [1]
            assert batch_db.inbox_rows() == 2
        else:
            assert plan.calls == [1, 2, 2, 3]
            assert batch_db.effects() == [("Effect", 1), ("Effect", 2), ("Effect", 3)]
            assert source.dead_letters == []
            assert batch_db.inbox_rows() == 3
        assert offsets(source) == [0, 1, 2]
        inbox.close()

    async def test_cancelled_mid_chunk(self, batch_db: Harness) -> None:
        plan, inbox = Plan(batch_db), batch_db.store()
        entered = anyio.Event()

        async def block(order_id: int, call: int) -> None:
            if order_id == 2:
                entered.set()
                await anyio.sleep_forever()

        plan.after = block
        source = transport(paid(1), paid(2))
        with anyio.fail_after(30):
            async with anyio.create_task_group() as group:
                group.start_soon(consume, guarded(plan, inbox), source)
                await entered.wait()
                group.cancel_scope.cancel()
        assert batch_db.effects() == []  # 1 was in the chunk's transaction too
        assert batch_db.inbox_rows() == 0
        assert source.settled == []
        plan.after = None
        again = transport(paid(1), paid(2))
        await drain(guarded(plan, inbox), again)
        assert batch_db.effects() == [("Effect", 1), ("Effect", 2)]
        assert offsets(again) == [0, 1]
        inbox.close()


class TestChunkAgain:
    """The whole chunk is handled again, nothing settled before."""

    async def test_failed_commit(self, pg: PostgresHarness) -> None:
        pg.execute(
            f'ALTER TABLE "{pg.effects_table}" ADD CONSTRAINT "u_{pg.effects_table}" '
            "UNIQUE (v) DEFERRABLE INITIALLY DEFERRED"
        )
        plan, inbox = Plan(pg), pg.store()

        def clash(connection: Any, order_id: int, call: int) -> None:
            if order_id == 2 and call == 0:  # violates the constraint at COMMIT only
                pg.write(connection, "Clash", 1)

        plan.during = clash
        source = transport(paid(1), paid(2))
        await drain(guarded(plan, inbox), source)
        assert plan.calls == [1, 2, 1, 2]
        assert pg.effects() == [("Effect", 1), ("Effect", 2)]
        assert pg.inbox_rows() == 2
        assert [record.offset for record in source.settled] == [0, 1]  # once each
        inbox.close()

    async def test_killed_backend(self, pg: PostgresHarness) -> None:
        import psycopg

        plan, inbox = Plan(pg), pg.store()

        def kill(connection: Any, order_id: int, call: int) -> None:
            if order_id == 2 and call == 0:
                with psycopg.connect(pg.dsn, autocommit=True) as other:
                    other.execute("SELECT pg_terminate_backend(%s)", (connection.info.backend_pid,))

        plan.during = kill
        source = transport(paid(1), paid(2), paid(3))
        await drain(guarded(plan, inbox), source)
        assert plan.calls == [1, 2, 1, 2, 3]
        assert pg.effects() == [("Effect", 1), ("Effect", 2), ("Effect", 3)]
        assert pg.inbox_rows() == 3
        assert [record.offset for record in source.settled] == [0, 1, 2]
        inbox.close()

    async def test_concurrent_duplicate_chunks_deadlock(
        self, pg: PostgresHarness, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Two consumers get the same two messages in opposite orders: each
        holds one row the other needs; PostgreSQL aborts one transaction,
        whose chunk is handled again and finds both rows committed."""
        one, two = paid(1), paid(2)
        a, b = Plan(pg), Plan(pg)
        a_holds, b_holds = anyio.Event(), anyio.Event()

        async def a_waits(order_id: int, call: int) -> None:
            if order_id == 1 and call == 0:
                a_holds.set()
                await b_holds.wait()

        async def b_waits(order_id: int, call: int) -> None:
            if order_id == 2 and call == 0:
                b_holds.set()
                await a_holds.wait()

        a.before, b.before = a_waits, b_waits
        first, second = pg.store(), pg.store()
        source_a, source_b = transport(one, two), transport(two, one)
        with anyio.fail_after(60):
            async with anyio.create_task_group() as group:
                group.start_soon(drain, guarded(a, first), source_a)
                group.start_soon(drain, guarded(b, second), source_b)
        assert sorted(pg.effects()) == [("Effect", 1), ("Effect", 2)]
        # the victim ran its first handler only; its second attempt found duplicates
        assert len(a.calls) + len(b.calls) == 3
        assert "failed as a whole" in caplog.text
        assert pg.inbox_rows() == 2
        assert offsets(source_a) == offsets(source_b) == [0, 1]
        first.close()
        second.close()
