"""The one-hop paths: ``defer_begin=True`` (the begin and the inbox row go
in the hop of the handler's first `InboxTransaction.run`) and
``run(fn, commit=True)`` (the commit goes in the hop of the last call), over
every store and database, the contract suite included."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import anyio.from_thread
import lagom
import pytest

import anycqrs
from anycqrs.errors import InboxError
from anycqrs.events.bootstrap import bootstrap
from anycqrs.inbox import InboxStore, InboxTransaction, derive_id

from . import test_contract as contract
from .inbox_helpers import Harness, Paid, Shipped, paid
from .test_contract import App, First, Publisher, Second, Third, mediator

pytestmark = pytest.mark.anyio

Event = anycqrs.NotificationEvent[Paid]


class Deferred(Harness):
    """The harness of `db`, its stores made with ``defer_begin=True``."""

    def __init__(self, inner: Harness) -> None:
        self.inner = inner
        self.kind = inner.kind
        self.table = inner.table
        self.outbox = inner.outbox
        self.effects_table = inner.effects_table
        self.batch = inner.batch
        self.optimistic = inner.optimistic

    def store(self, **kwargs: Any) -> InboxStore:
        kwargs.setdefault("defer_begin", True)
        return self.inner.store(**kwargs)

    def write(self, connection: Any, key: str, value: int) -> None:
        self.inner.write(connection, key, value)

    def execute(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        return self.inner.execute(sql, params)

    def blocked(self, inbox: InboxStore) -> bool:
        return self.inner.blocked(inbox)


@pytest.fixture
def db(db: Harness) -> Iterator[Harness]:
    """The contract suite's harness, deferring every store's begin."""
    yield Deferred(db)


class TestOnceDeferred(contract.TestOnce):
    """`TestOnce`, where a duplicate is found at the handler's first run."""

    @pytest.mark.parametrize("parallel", [False, True])
    async def test_per_handler_redelivery(self, db: Harness, parallel: bool) -> None:
        app, inbox = App(db), db.store()
        m = mediator(app, inbox, First, Second, Third, parallel=parallel)
        event = paid(7)
        app.fail = {"Third"}
        with pytest.raises(RuntimeError, match="Third fails"):
            await m.send(event)
        committed = {name for name, _ in db.effects()}
        assert committed <= {"First", "Second"}
        if not parallel:
            assert committed == {"First", "Second"}
        app.fail = set()
        app.calls.clear()
        await m.send(event)  # every handler starts; the committed ones stop at their run
        assert sorted(app.calls) == ["First", "Second", "Third"]
        assert sorted(db.effects()) == [("First", 7), ("Second", 7), ("Third", 7)]
        assert db.inbox_rows() == 3
        inbox.close()


class TestFollowUpsDeferred(contract.TestFollowUps):
    """`TestFollowUps`, where a duplicate is found at the handler's first run."""

    async def test_derived_ids(self, db: Harness) -> None:
        app, inbox = App(db), db.store()
        m = mediator(app, inbox, Publisher, follow=True)
        event = paid(5)
        await m.send(event)
        expected = derive_id("Publisher", event.event_id, 0)
        assert app.calls == ["Publisher", f"OnShipped:{expected}"]
        await m.send(event)  # duplicate: stopped at its run, its follow-up dropped
        assert app.calls == ["Publisher", f"OnShipped:{expected}", "Publisher"]
        assert sorted(db.effects()) == [("OnShipped", 5), ("Publisher", 5)]
        inbox.close()


class TestRollbackDeferred(contract.TestRollback):
    """`TestRollback` with the begin deferred."""


class TestConcurrencyDeferred(contract.TestConcurrency):
    """`TestConcurrency` with the begin deferred."""


class TestMisuseDeferred(contract.TestMisuse):
    """`TestMisuse` with the begin deferred."""


class Plan:
    """What the one-hop handlers do: fail where asked, record what ran."""

    def __init__(self, harness: Harness) -> None:
        self.harness = harness
        self.raise_in_fn = False
        self.raise_after = False
        self.swallow = False
        self.again = False
        self.calls: list[str] = []
        self.errors: list[BaseException] = []
        self.cancel: anyio.CancelScope | None = None


class Last(anycqrs.EventHandler[Event]):
    """Writes its effect in a last ``run(..., commit=True)``."""

    def __init__(self, tx: InboxTransaction, plan: Plan) -> None:
        self.tx = tx
        self.plan = plan

    async def handle(self, event: Event) -> None:
        plan = self.plan
        plan.calls.append("Last")

        def write(connection: Any) -> None:
            plan.harness.write(connection, "Last", event.payload.order_id)
            if plan.cancel is not None:
                anyio.from_thread.run_sync(plan.cancel.cancel)
            if plan.raise_in_fn:
                raise RuntimeError("fn fails")

        try:
            await self.tx.run(write, commit=True)
        except RuntimeError as error:
            if not plan.swallow:
                raise
            plan.errors.append(error)
        if plan.again:
            await self.tx.run(plan.harness.write, "Last", -1)
        if plan.raise_after:
            raise RuntimeError("fails after the commit")


class Guarded(anycqrs.EventHandler[Event]):
    """Catches ``Exception`` around its run (a duplicate is no Exception)."""

    def __init__(self, tx: InboxTransaction, plan: Plan) -> None:
        self.tx = tx
        self.plan = plan

    async def handle(self, event: Event) -> None:
        try:
            await self.tx.run(self.plan.harness.write, "Guarded", event.payload.order_id)
        except Exception as error:
            self.plan.errors.append(error)
        self.plan.calls.append("Guarded:after-run")


class NoRun(anycqrs.EventHandler[Event]):
    """Never touches the transaction; emits a follow-up."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan

    async def handle(self, event: Event) -> None:
        self.plan.calls.append("NoRun")
        self.emit(anycqrs.NotificationEvent(payload=Shipped(event.payload.order_id), topic="s"))


class OnShipped(anycqrs.EventHandler[anycqrs.NotificationEvent[Shipped]]):
    def __init__(self, plan: Plan) -> None:
        self.plan = plan

    async def handle(self, event: anycqrs.NotificationEvent[Shipped]) -> None:
        self.plan.calls.append(f"OnShipped:{event.event_id}")


class Early(anycqrs.EventHandler[Event]):
    """Reads the connection before its first run."""

    def __init__(self, tx: InboxTransaction, plan: Plan) -> None:
        self.tx = tx
        self.plan = plan

    async def handle(self, event: Event) -> None:
        try:
            self.plan.calls.append(type(self.tx.connection).__name__)
        except InboxError as error:
            self.plan.errors.append(error)
        await self.tx.run(self.plan.harness.write, "Early", event.payload.order_id)


def build(plan: Plan, inbox: InboxStore, *handlers: type) -> anycqrs.EventMediator:
    def bind(events: anycqrs.EventMap) -> None:
        for handler in handlers:
            events.bind(Event, handler)
        events.bind(anycqrs.NotificationEvent[Shipped], OnShipped)

    container = lagom.Container()
    container[Plan] = plan
    return bootstrap(di_container=container, events_mapper=bind, inbox=inbox)


@pytest.mark.parametrize("defer", [False, True], ids=["begin-first", "defer-begin"])
class TestCommitInRun:
    """``run(fn, commit=True)``: the commit in the hop of the last call."""

    async def test_commits_with_the_call(self, db: Harness, defer: bool) -> None:
        plan, inbox = Plan(db), db.store(defer_begin=defer)
        m = build(plan, inbox, Last)
        event = paid(1)
        await m.send(event)
        await m.send(event)  # a duplicate
        assert db.effects() == [("Last", 1)]
        assert db.inbox_rows() == 1
        assert plan.calls == ["Last"] if not defer else ["Last", "Last"]
        inbox.close()

    async def test_fn_raising_rolls_back_in_the_hop(self, db: Harness, defer: bool) -> None:
        plan, inbox = Plan(db), db.store(defer_begin=defer)
        m = build(plan, inbox, Last)
        event = paid(2)
        plan.raise_in_fn = True
        with pytest.raises(RuntimeError, match="fn fails"):
            await m.send(event)
        assert db.effects() == []
        assert db.inbox_rows() == 0
        plan.raise_in_fn = False
        await m.send(event)  # delivered again: runs and commits
        assert db.effects() == [("Last", 2)]
        inbox.close()

    async def test_a_swallowed_failure_fails_the_delivery(self, db: Harness, defer: bool) -> None:
        plan, inbox = Plan(db), db.store(defer_begin=defer)
        m = build(plan, inbox, Last)
        plan.raise_in_fn = plan.swallow = True
        with pytest.raises(InboxError, match="rolled back"):
            await m.send(paid(3))
        assert len(plan.errors) == 1
        assert db.effects() == []
        assert db.inbox_rows() == 0
        inbox.close()

    async def test_an_error_after_the_commit(self, db: Harness, defer: bool) -> None:
        plan, inbox = Plan(db), db.store(defer_begin=defer)
        m = build(plan, inbox, Last)
        event = paid(4)
        plan.raise_after = True
        with pytest.raises(RuntimeError, match="after the commit"):
            await m.send(event)
        assert db.effects() == [("Last", 4)]  # committed: the redelivery is a duplicate
        plan.raise_after = False
        await m.send(event)
        assert db.effects() == [("Last", 4)]
        inbox.close()

    async def test_run_after_the_commit(self, db: Harness, defer: bool) -> None:
        plan, inbox = Plan(db), db.store(defer_begin=defer)
        m = build(plan, inbox, Last)
        plan.again = True
        with pytest.raises(InboxError, match="already ended"):
            await m.send(paid(5))
        assert db.effects() == [("Last", 5)]
        inbox.close()

    async def test_cancelled_in_the_last_hop(self, db: Harness, defer: bool) -> None:
        plan, inbox = Plan(db), db.store(defer_begin=defer)
        m = build(plan, inbox, Last)
        event = paid(6)
        with anyio.fail_after(20):
            with anyio.CancelScope() as scope:
                plan.cancel = scope  # cancelled from inside fn: the hop still commits
                await m.send(event)
        assert scope.cancel_called  # landed or not (no checkpoint may follow the hop)
        assert db.effects() == [("Last", 6)]
        assert db.inbox_rows() == 1
        plan.cancel = None
        await m.send(event)  # the redelivery is a duplicate
        assert db.effects() == [("Last", 6)]
        inbox.close()


class TestDeferredBegin:
    """``defer_begin=True``: the duplicate is found at the first run."""

    async def test_a_duplicate_is_not_an_exception(self, db: Harness) -> None:
        plan, inbox = Plan(db), db.store()
        m = build(plan, inbox, Guarded)
        event = paid(7)
        await m.send(event)
        await m.send(event)  # stopped at its run: its except Exception does not see it
        assert plan.errors == []
        assert plan.calls == ["Guarded:after-run"]
        assert db.effects() == [("Guarded", 7)]
        inbox.close()

    async def test_a_handler_without_run(self, db: Harness) -> None:
        plan, inbox = Plan(db), db.store()
        m = build(plan, inbox, NoRun)
        event = paid(8)
        await m.send(event)  # begun and committed in one hop after it returned
        assert await inbox.seen(NoRun, event.event_id)
        followed = f"OnShipped:{derive_id('NoRun', event.event_id, 0)}"
        assert plan.calls == ["NoRun", followed]
        await m.send(event)  # a duplicate: it ran again, its follow-up is dropped
        assert plan.calls == ["NoRun", followed, "NoRun"]
        inbox.close()

    async def test_connection_before_the_first_run(self, db: Harness) -> None:
        plan, inbox = Plan(db), db.store()
        m = build(plan, inbox, Early)
        await m.send(paid(9))
        assert len(plan.errors) == 1
        assert "not begun yet" in str(plan.errors[0])
        assert db.effects() == [("Early", 9)]
        inbox.close()

    async def test_several_handlers(self, db: Harness) -> None:
        app, inbox = App(db), db.store()
        m = mediator(app, inbox, First, Second, Third, Publisher)
        event = paid(10)
        await m.send(event)
        await m.send(event)
        assert sorted(db.effects()) == [
            ("First", 10),
            ("Publisher", 10),
            ("Second", 10),
            ("Third", 10),
        ]
        assert db.inbox_rows() == 4
        inbox.close()


class SendsFirst(contract.Base):
    """Sends a nested event before its own first run (the join begins it)."""

    async def handle(self, event: Event) -> None:
        self.app.calls.append("SendsFirst")
        assert self.app.mediator is not None
        await self.app.mediator.send(
            anycqrs.NotificationEvent(
                payload=Shipped(event.payload.order_id),
                topic="s",
                event_id=self.tx.derive_id("nested"),
            )
        )
        await self.tx.run(self.app.harness.write, "SendsFirst", event.payload.order_id)
        if "SendsFirst" in self.app.fail:
            raise RuntimeError("SendsFirst fails")


class TestDeferredNested:
    """A nested send before the outer handler's first run."""

    async def test_the_join_begins_the_outer_transaction(self, db: Harness) -> None:
        app, inbox = App(db), db.store()
        m = mediator(app, inbox, SendsFirst, follow=True)
        event = paid(11)
        app.fail = {"SendsFirst"}
        with pytest.raises(RuntimeError):
            await m.send(event)
        assert db.effects() == []  # the nested write rolled back with the outer one
        app.fail = set()
        await m.send(event)
        assert sorted(db.effects()) == [("OnShipped", 11), ("SendsFirst", 11)]
        app.calls.clear()
        await m.send(event)  # a duplicate, found at the join: the nested handler never runs
        assert app.calls == ["SendsFirst"]
        assert db.inbox_rows() == 2
        inbox.close()
