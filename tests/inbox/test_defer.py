"""`InboxTransaction.defer`: a write queued to the optimistic chunk's commit
(one hop and one pipelined round trip for the chunk), run at once anywhere
else (like `run`). What commits is what `run` commits: the writes with the
inbox rows, nothing of a handler that raised, a failing deferred write
redoes the chunk with savepoints (where it runs at once and takes its
call's error path), a duplicate's write never runs. Real SQLite and
PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import lagom
import pytest

import anycqrs
from anycqrs.consumers import consume
from anycqrs.errors import InboxError
from anycqrs.events.bootstrap import bootstrap
from anycqrs.inbox import InboxStore, InboxTransaction, derive_id

from .inbox_helpers import Harness, PostgresHarness, Shipped, SqliteHarness, paid
from .test_batch import RETRY, Event, Plan, drain, offsets, transport

pytestmark = pytest.mark.anyio

KINDS = [
    "sqlite",
    "sqlite-batch",
    "postgres",
    "postgres-optimistic",
    "postgres-optimistic-one-hop",
    "postgres-pool-optimistic",
]


@pytest.fixture(params=KINDS)
def store_db(request: pytest.FixtureRequest, tmp_path: Path, unique: str) -> Iterator[Harness]:
    harness: Harness
    kind = request.param
    if kind.startswith("sqlite"):
        harness = SqliteHarness(tmp_path / "app.db", unique)
    else:
        dsn = request.getfixturevalue("postgres_dsn")
        harness = PostgresHarness(dsn, unique, pooled="-pool" in kind)
    harness.batch = kind.endswith(("-batch", "-optimistic", "-one-hop"))
    harness.optimistic = "optimistic" in kind
    harness.one_hop = kind.endswith("-one-hop")  # type: ignore[attr-defined]
    try:
        yield harness
    finally:
        harness.close()


def make_defers(harness: Harness) -> bool:
    """Whether the store defers its begin (``defer_begin=True``)."""
    return bool(getattr(harness, "one_hop", False))


def make(harness: Harness) -> InboxStore:
    return harness.store(defer_begin=make_defers(harness))


class Deferring(anycqrs.EventHandler[Event]):
    """Defers its effect row (and, when the plan says, an outbox event)."""

    outbox_too = False
    late: list[bool] = []
    """Per write run, whether its handler had returned from ``defer`` by then."""

    def __init__(self, tx: InboxTransaction, plan: Plan) -> None:
        self.tx = tx
        self.plan = plan

    async def handle(self, event: Event) -> None:
        plan, order_id = self.plan, event.payload.order_id
        call = plan.calls.count(order_id)
        plan.calls.append(order_id)
        if plan.before is not None:
            await plan.before(order_id, call)
        tx = self.tx

        returned = False

        def write(connection: Any, order_id: int) -> None:
            Deferring.late.append(returned)
            if plan.during is not None:
                plan.during(connection, order_id, call)
            plan.harness.write(connection, "Effect", order_id)
            if Deferring.outbox_too:
                tx.outbox.add(
                    anycqrs.NotificationEvent(
                        payload=Shipped(order_id), topic="shipments", event_id=tx.derive_id(0)
                    )
                )

        await tx.defer(write, order_id)
        returned = True
        if plan.after is not None:
            await plan.after(order_id, call)


def deferring(plan: Plan, inbox: InboxStore) -> anycqrs.EventMediator:
    container = lagom.Container()
    container[Plan] = plan
    return bootstrap(
        di_container=container,
        events_mapper=lambda events: events.bind(Event, Deferring),
        inbox=inbox,
    )


def clash(harness: Harness) -> Any:
    """A `during` hook: order 2's write hits a unique violation (on its
    first call only, or on every call with `always`)."""

    def during(always: bool) -> Any:
        def hook(connection: Any, order_id: int, call: int) -> None:
            if order_id == 2 and (always or call == 0):
                sql = f"INSERT INTO {harness.effects_table} (id, k, v) VALUES (0, 'clash', 0)"
                for _ in range(2):
                    connection.execute(sql if harness.kind == "sqlite" else sql.encode())

        return hook

    return during


class TestDefer:
    async def test_deferred_writes_commit_with_the_inbox_rows(self, store_db: Harness) -> None:
        plan, inbox = Plan(store_db), make(store_db)
        source = transport(*(paid(i) for i in range(1, 6)))
        Deferring.late.clear()
        await drain(deferring(plan, inbox), source)
        assert plan.calls == [1, 2, 3, 4, 5]
        # queued to the commit in an optimistic chunk, else run at once
        assert Deferring.late == [store_db.optimistic] * 5
        assert store_db.effects() == [("Effect", i) for i in range(1, 6)]
        assert store_db.inbox_rows() == 5
        assert offsets(source) == [0, 1, 2, 3, 4]
        inbox.close()

    async def test_outbox_and_derive_id_work_in_a_deferred_write(self, store_db: Harness) -> None:
        plan, inbox = Plan(store_db), make(store_db)
        events = [paid(1), paid(2)]
        Deferring.outbox_too = True
        try:
            await drain(deferring(plan, inbox), transport(*events))
        finally:
            Deferring.outbox_too = False
        assert store_db.outbox_ids() == [
            str(derive_id("Deferring", event.event_id, "own:0")) for event in events
        ]
        inbox.close()

    async def test_duplicates_skip_their_deferred_writes(self, store_db: Harness) -> None:
        plan, inbox = Plan(store_db), make(store_db)
        events = [paid(i) for i in range(1, 5)]
        mediator = deferring(plan, inbox)
        await drain(mediator, transport(events[0], events[2]))
        # handled ones first (the chunk's first call finds a duplicate), a
        # new one, one twice in the chunk
        again = transport(events[0], events[2], events[1], events[3], events[1])
        await drain(mediator, again)
        # (a deferred begin calls the chunk's first handler, a duplicate: its
        # defer stops it before the write is queued)
        assert sorted(plan.calls) == ([1, 1, 2, 3, 4] if make_defers(store_db) else [1, 2, 3, 4])
        assert sorted(store_db.effects()) == [("Effect", i) for i in range(1, 5)]
        assert store_db.inbox_rows() == 4
        assert offsets(again) == [0, 1, 2, 3, 4]
        inbox.close()

    @pytest.mark.parametrize("dead", [False, True])
    async def test_handler_raising_after_defer_leaves_nothing(
        self, store_db: Harness, dead: bool
    ) -> None:
        plan, inbox = Plan(store_db), make(store_db)

        async def fail(order_id: int, call: int) -> None:
            if order_id == 2 and (dead or call == 0):
                raise RuntimeError("2 fails after its defer")

        plan.after = fail
        source = transport(paid(1), paid(2), paid(3))
        await drain(deferring(plan, inbox), source)
        if dead:
            assert sorted(store_db.effects()) == [("Effect", 1), ("Effect", 3)]
            assert [d.record.offset for d in source.dead_letters] == [1]
            assert store_db.inbox_rows() == 2
        else:
            assert sorted(store_db.effects()) == [("Effect", i) for i in (1, 2, 3)]
            assert source.dead_letters == []
            assert store_db.inbox_rows() == 3
        assert offsets(source) == [0, 1, 2]
        inbox.close()

    @pytest.mark.parametrize("dead", [False, True])
    async def test_failing_deferred_write_takes_its_calls_error_path(
        self, store_db: Harness, dead: bool
    ) -> None:
        """Order 2's write hits a unique violation: in an optimistic chunk at
        the commit (the chunk is redone with savepoints, where the write runs
        in its call), elsewhere at once; the other effects exactly once."""
        plan, inbox = Plan(store_db), make(store_db)
        plan.during = clash(store_db)(dead)
        source = transport(paid(1), paid(2), paid(3))
        await drain(deferring(plan, inbox), source)
        effects = [e for e in store_db.effects() if e[0] == "Effect"]
        if dead:
            assert sorted(effects) == [("Effect", 1), ("Effect", 3)]
            assert [d.record.offset for d in source.dead_letters] == [1]
            assert store_db.inbox_rows() == 2
            clashes = f"SELECT COUNT(*) FROM {store_db.effects_table} WHERE id = 0"
            assert store_db.execute(clashes)[0][0] == 0
        else:
            assert sorted(effects) == [("Effect", i) for i in (1, 2, 3)]
            assert source.dead_letters == []
            assert store_db.inbox_rows() == 3
        assert offsets(source) == [0, 1, 2]
        # the store goes on (optimistically again, where it was)
        later = transport(paid(4), paid(5))
        await drain(deferring(plan, inbox), later)
        assert offsets(later) == [0, 1]
        assert inbox._redo == set()
        inbox.close()

    async def test_defer_outside_a_guarded_handler_raises(self, store_db: Harness) -> None:
        with pytest.raises(InboxError, match="No inbox transaction"):
            await InboxTransaction().defer(lambda connection: None)

    async def test_defer_after_commit_true_raises(self, store_db: Harness) -> None:
        seen: list[BaseException] = []

        class Late(anycqrs.EventHandler[Event]):
            def __init__(self, tx: InboxTransaction) -> None:
                self.tx = tx

            async def handle(self, event: Event) -> None:
                await self.tx.run(lambda connection: None, commit=True)
                try:
                    await self.tx.defer(lambda connection: None)
                except InboxError as error:
                    seen.append(error)

        inbox = make(store_db)
        mediator = bootstrap(events_mapper=lambda events: events.bind(Event, Late), inbox=inbox)
        with anyio.fail_after(60):
            await consume(mediator, transport(paid(1)), concurrency=1, retry=RETRY)
        assert len(seen) == 1 and "already ended" in str(seen[0])
        inbox.close()


class Named(anycqrs.EventHandler[Event]):
    """Defers one effect row named after its class; `failing` names the
    classes whose write hits a unique violation (and how often)."""

    failing: dict[str, int] = {}

    def __init__(self, tx: InboxTransaction, plan: Plan) -> None:
        self.tx = tx
        self.plan = plan

    async def handle(self, event: Event) -> None:
        name, harness = type(self).__name__, self.plan.harness
        fails = Named.failing.get(name, 0) > 0
        if fails:
            Named.failing[name] -= 1

        def write(connection: Any, order_id: int) -> None:
            harness.write(connection, name, order_id)
            if fails:
                sql = f"INSERT INTO {harness.effects_table} (id, k, v) VALUES (0, 'clash', 0)"
                for _ in range(2):
                    connection.execute(sql if harness.kind == "sqlite" else sql.encode())

        await self.tx.defer(write, event.payload.order_id)


class First(Named):
    pass


class Second(Named):
    pass


class Third(Named):
    pass


async def test_one_of_three_handlers_deferred_write_fails(store_db: Harness) -> None:
    """Second's write fails twice (at the optimistic commit, then in the
    savepoint pass at once): only Second is retried; every effect once."""
    plan, inbox = Plan(store_db), make(store_db)
    container = lagom.Container()
    container[Plan] = plan

    def bind(events: anycqrs.EventMap) -> None:
        for handler in (First, Second, Third):
            events.bind(Event, handler)

    Named.failing = {"Second": 2 if store_db.optimistic else 1}
    mediator = bootstrap(di_container=container, events_mapper=bind, inbox=inbox)
    source = transport(paid(7), paid(8))
    await drain(mediator, source)
    effects = sorted(e for e in store_db.effects() if e[0] != "clash")
    assert effects == sorted((name, i) for name in ("First", "Second", "Third") for i in (7, 8))
    assert store_db.inbox_rows() == 6
    assert source.dead_letters == []
    assert offsets(source) == [0, 1]
    inbox.close()


async def test_cancelled_after_defer_leaves_nothing(store_db: Harness) -> None:
    plan, inbox = Plan(store_db), make(store_db)
    entered = anyio.Event()

    async def block(order_id: int, call: int) -> None:
        if order_id == 2:
            entered.set()
            await anyio.sleep_forever()

    plan.after = block
    events = [paid(1), paid(2)]
    source = transport(*events)
    with anyio.fail_after(30):
        async with anyio.create_task_group() as group:
            group.start_soon(consume, deferring(plan, inbox), source)
            await entered.wait()
            group.cancel_scope.cancel()
    if store_db.batch:  # the chunk (1 and 2) rolled back, nothing settled
        assert store_db.effects() == []
        assert source.settled == []
    else:  # 1 committed on its own
        assert store_db.effects() == [("Effect", 1)]
    assert inbox._redo == set()
    plan.after = None
    again = transport(*events)  # redelivered
    await drain(deferring(plan, inbox), again)
    assert offsets(again) == [0, 1]
    assert sorted(store_db.effects()) == [("Effect", 1), ("Effect", 2)]
    inbox.close()


class Holder:
    """The mediator a handler sends nested events through."""

    mediator: anycqrs.EventMediator | None = None


class DeferOuter(anycqrs.EventHandler[Event]):
    """Defers its row, then sends a nested event (joined to its transaction)."""

    def __init__(self, tx: InboxTransaction, plan: Plan, holder: Holder) -> None:
        self.tx, self.plan, self.holder = tx, plan, holder

    async def handle(self, event: Event) -> None:
        tx, harness = self.tx, self.plan.harness
        await tx.defer(lambda connection: harness.write(connection, tx.handler, 1))
        assert self.holder.mediator is not None
        await self.holder.mediator.send(
            anycqrs.NotificationEvent(
                payload=Shipped(event.payload.order_id), topic="s", event_id=tx.derive_id("n")
            )
        )


class DeferInner(anycqrs.EventHandler[anycqrs.NotificationEvent[Shipped]]):
    """The nested handler: its deferred write sees its own identity."""

    def __init__(self, tx: InboxTransaction, plan: Plan) -> None:
        self.tx, self.plan = tx, plan

    async def handle(self, event: anycqrs.NotificationEvent[Shipped]) -> None:
        tx, harness = self.tx, self.plan.harness
        await tx.defer(lambda connection: harness.write(connection, tx.handler, 2))


async def test_nested_send_defers_into_the_outer_transaction(store_db: Harness) -> None:
    plan, inbox, holder = Plan(store_db), make(store_db), Holder()
    container = lagom.Container()
    container[Plan] = plan
    container[Holder] = holder

    def bind(events: anycqrs.EventMap) -> None:
        events.bind(Event, DeferOuter)
        events.bind(anycqrs.NotificationEvent[Shipped], DeferInner)

    holder.mediator = bootstrap(di_container=container, events_mapper=bind, inbox=inbox)
    event = paid(9)
    await drain(holder.mediator, transport(event))
    await drain(holder.mediator, transport(event))  # redelivered: nothing runs again
    assert sorted(store_db.effects()) == [("DeferInner", 2), ("DeferOuter", 1)]
    assert store_db.inbox_rows() == 2
    inbox.close()
