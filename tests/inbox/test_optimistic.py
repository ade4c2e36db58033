"""Optimistic chunks (``PostgresInbox(batch=True, optimistic=True)``): a
chunk claims the inbox rows of its events in one statement per handler, no
savepoints. What commits is what batch mode commits: a failing handler has
the chunk rolled back and handled again with savepoints (then only the
failing call runs again), claims no call used are deleted, two consumers
claiming the same rows at once do not deadlock. Real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import lagom
import pytest

import anycqrs
from anycqrs import RetryPolicy
from anycqrs.consumers import consume
from anycqrs.consumers._protocols import ChunkPlan
from anycqrs.events.bootstrap import bootstrap
from anycqrs.inbox import InboxTransaction, PostgresInbox, SqliteInbox

from .inbox_helpers import PostgresHarness, paid
from .test_batch import Event, Plan, drain, guarded, offsets, transport

pytestmark = pytest.mark.anyio


@pytest.fixture
def pg(postgres_dsn: str, unique: str) -> Iterator[PostgresHarness]:
    harness = PostgresHarness(postgres_dsn, unique)
    harness.batch = harness.optimistic = True
    try:
        yield harness
    finally:
        harness.close()


class Calls:
    """The handlers' calls, in order, and which of them fail (name -> how often)."""

    def __init__(self, harness: PostgresHarness) -> None:
        self.harness = harness
        self.calls: list[str] = []
        self.fail: dict[str, int] = {}


class Named(anycqrs.EventHandler[Event]):
    def __init__(self, tx: InboxTransaction, calls: Calls) -> None:
        self.tx = tx
        self.record = calls

    async def handle(self, event: Event) -> None:
        name = type(self).__name__
        self.record.calls.append(name)
        await self.tx.run(self.record.harness.write, name, event.payload.order_id)
        if self.record.fail.get(name, 0) > 0:  # after its write: must leave no effect
            self.record.fail[name] -= 1
            raise RuntimeError(f"{name} fails")


class First(Named):
    pass


class Second(Named):
    pass


class Third(Named):
    pass


def three(calls: Calls, inbox: PostgresInbox) -> anycqrs.EventMediator:
    container = lagom.Container()
    container[Calls] = calls

    def bind(events: anycqrs.EventMap) -> None:
        for handler in (First, Second, Third):
            events.bind(Event, handler)

    return bootstrap(di_container=container, events_mapper=bind, inbox=inbox)


class TestOptimistic:
    def test_needs_batch_and_postgres(self, pg: PostgresHarness) -> None:
        with pytest.raises(ValueError, match="optimistic"):
            PostgresInbox(pg.dsn, optimistic=True)
        assert pg.store().batch

    async def test_chunk_commits_once_and_skips_duplicates(self, pg: PostgresHarness) -> None:
        plan, inbox = Plan(pg), pg.store()
        events = [paid(i) for i in range(1, 6)]
        first = transport(*events[:2])
        await drain(guarded(plan, inbox), first)
        # a chunk with two handled messages, new ones, and one twice
        again = transport(*events, events[3])
        await drain(guarded(plan, inbox), again)
        assert plan.calls == [1, 2, 3, 4, 5]
        assert pg.effects() == [("Effect", i) for i in range(1, 6)]
        assert pg.inbox_rows() == 5
        assert offsets(again) == [0, 1, 2, 3, 4, 5]
        inbox.close()

    @pytest.mark.parametrize("dead", [False, True])
    async def test_failing_handler_redoes_the_chunk(self, pg: PostgresHarness, dead: bool) -> None:
        plan, inbox = Plan(pg), pg.store()

        async def fail(order_id: int, call: int) -> None:
            if order_id == 2 and (dead or call == 0):
                raise RuntimeError("2 fails")

        plan.after = fail  # after its write: the rollback must undo it
        source = transport(paid(1), paid(2), paid(3))
        await drain(guarded(plan, inbox), source)
        # the optimistic pass stops at 2; the chunk again, with savepoints
        if dead:
            assert plan.calls == [1, 2, 1, 2, 2, 2, 2, 2, 3]
            assert pg.effects() == [("Effect", 1), ("Effect", 3)]
            assert [d.record.offset for d in source.dead_letters] == [1]
            assert pg.inbox_rows() == 2
        else:
            assert plan.calls == [1, 2, 1, 2, 3]
            assert pg.effects() == [("Effect", 1), ("Effect", 2), ("Effect", 3)]
            assert source.dead_letters == []
            assert pg.inbox_rows() == 3
        assert offsets(source) == [0, 1, 2]
        # the next chunk runs optimistically again
        later = transport(paid(4), paid(5))
        await drain(guarded(plan, inbox), later)
        assert plan.calls[-2:] == [4, 5]
        assert inbox._redo == set()
        inbox.close()

    async def test_redo_is_immediate_and_uses_no_attempt(self, pg: PostgresHarness) -> None:
        # attempts=1: no retry at all, yet the redo runs (at once, no sleep)
        # and the failing call is dead-lettered as in batch mode
        plan, inbox = Plan(pg), pg.store()
        slept: list[float] = []

        async def sleep(seconds: float) -> None:
            slept.append(seconds)

        async def fail(order_id: int, call: int) -> None:
            if order_id == 2:
                raise RuntimeError("2 fails")

        plan.after = fail
        source = transport(paid(1), paid(2), paid(3))
        with anyio.fail_after(60):
            await consume(
                guarded(plan, inbox),
                source,
                concurrency=1,
                retry=RetryPolicy(attempts=1),
                sleep=sleep,
            )
        assert plan.calls == [1, 2, 1, 2, 3]
        assert pg.effects() == [("Effect", 1), ("Effect", 3)]
        assert [d.record.offset for d in source.dead_letters] == [1]
        assert offsets(source) == [0, 1, 2]
        assert slept == []
        inbox.close()

    async def test_third_of_three_fails(self, pg: PostgresHarness) -> None:
        calls = Calls(pg)
        calls.fail["Third"] = 2  # in the optimistic pass and the first savepoint pass
        inbox = pg.store()
        source = transport(paid(7))
        await drain(three(calls, inbox), source)
        # optimistic pass: all three, rolled back; the savepoint pass: all
        # three, Third rolled back alone; its retry: only Third runs again
        assert calls.calls == ["First", "Second", "Third"] * 2 + ["Third"]
        assert sorted(pg.effects()) == [("First", 7), ("Second", 7), ("Third", 7)]
        assert pg.inbox_rows() == 3
        assert offsets(source) == [0]
        inbox.close()

    async def test_unused_claims_are_deleted(self, pg: PostgresHarness) -> None:
        plan, inbox = Plan(pg), pg.store()
        mediator = guarded(plan, inbox)
        one, two, three = paid(1), paid(2), paid(3)
        scope = mediator.chunk()
        assert scope is not None and isinstance(scope, ChunkPlan)
        scope.expect([one, two, three])
        async with scope:
            await mediator.send(one)  # claims all three; 2 and 3 are never handled
        assert pg.effects() == [("Effect", 1)]
        assert pg.inbox_rows() == 1
        assert not await inbox.seen("Effect", two.event_id)
        again = transport(two, three)
        await drain(mediator, again)
        assert plan.calls == [1, 2, 3]
        assert pg.inbox_rows() == 3
        inbox.close()

    async def test_concurrent_chunks_claim_without_deadlock(self, pg: PostgresHarness) -> None:
        """Two consumers get the same messages in opposite orders at once:
        the claims lock in key order, so the second waits for the first's
        commit and finds duplicates; every effect once."""
        events = [paid(i) for i in range(1, 9)]
        a, b = Plan(pg), Plan(pg)
        first, second = pg.store(), pg.store()
        source_a, source_b = transport(*events), transport(*reversed(events))
        with anyio.fail_after(60):
            async with anyio.create_task_group() as group:
                group.start_soon(drain, guarded(a, first), source_a)
                group.start_soon(drain, guarded(b, second), source_b)
        assert sorted(pg.effects()) == [("Effect", i) for i in range(1, 9)]
        assert sorted(a.calls + b.calls) == list(range(1, 9))
        assert pg.inbox_rows() == 8
        assert offsets(source_a) == offsets(source_b) == list(range(8))
        first.close()
        second.close()

    async def test_cancelled_mid_chunk(self, pg: PostgresHarness) -> None:
        plan, inbox = Plan(pg), pg.store()
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
        assert pg.effects() == []
        assert pg.inbox_rows() == 0
        assert source.settled == []
        assert inbox._redo == set()  # a cancellation is no handler failure
        plan.after = None
        again = transport(paid(1), paid(2))
        await drain(guarded(plan, inbox), again)
        assert pg.effects() == [("Effect", 1), ("Effect", 2)]
        inbox.close()


def test_sqlite_has_no_optimistic_chunks(tmp_path: Any) -> None:
    with pytest.raises(TypeError):
        SqliteInbox(tmp_path / "x.db", batch=True, optimistic=True)  # type: ignore[call-arg]
