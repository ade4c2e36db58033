"""The contract every inbox store keeps, run over each store and database:
exactly-once effects per (handler, message id), bound to the handler's own
transaction, with the outbox in it."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import anyio
import lagom
import pytest

import anycqrs
from anycqrs.consumers._protocols import ChunkPlan
from anycqrs.errors import InboxError, InboxKeyError
from anycqrs.events.bootstrap import bootstrap
from anycqrs.inbox import InboxStore, InboxTransaction, derive_id, handler_identity

from .inbox_helpers import Harness, Paid, Shipped, paid

pytestmark = pytest.mark.anyio

Event = anycqrs.NotificationEvent[Paid]


class App:
    """What the test handlers share: the harness, a failure plan, probes."""

    def __init__(self, harness: Harness) -> None:
        self.harness = harness
        self.fail: set[str] = set()
        self.calls: list[str] = []
        self.entered = anyio.Event()
        self.release: anyio.Event | None = None
        self.mediator: anycqrs.EventMediator | None = None


class Base(anycqrs.EventHandler[Event]):
    def __init__(self, tx: InboxTransaction, app: App) -> None:
        self.tx = tx
        self.app = app

    async def effect(self, event: Event) -> None:
        name = type(self).__name__
        self.app.calls.append(name)
        await self.tx.run(self.app.harness.write, name, event.payload.order_id)
        if name in self.app.fail:
            raise RuntimeError(f"{name} fails")


class First(Base):
    async def handle(self, event: Event) -> None:
        await self.effect(event)


class Second(Base):
    async def handle(self, event: Event) -> None:
        await self.effect(event)


class Third(Base):
    inbox_name = "third-handler"

    async def handle(self, event: Event) -> None:
        await self.effect(event)


class Publisher(Base):
    """Writes an effect and an outbox row, emits a follow-up."""

    async def handle(self, event: Event) -> None:
        def write(connection: Any) -> None:
            self.app.harness.write(connection, "Publisher", event.payload.order_id)
            self.tx.outbox.add(
                anycqrs.NotificationEvent(
                    payload=Shipped(event.payload.order_id),
                    topic="shipments",
                    event_id=self.tx.derive_id("shipped"),
                )
            )

        self.app.calls.append("Publisher")
        await self.tx.run(write)
        self.emit(anycqrs.NotificationEvent(payload=Shipped(event.payload.order_id), topic="s"))
        if "Publisher" in self.app.fail:
            raise RuntimeError("Publisher fails")


class OnShipped(anycqrs.EventHandler[anycqrs.NotificationEvent[Shipped]]):
    def __init__(self, tx: InboxTransaction, app: App) -> None:
        self.tx = tx
        self.app = app

    async def handle(self, event: anycqrs.NotificationEvent[Shipped]) -> None:
        self.app.calls.append(f"OnShipped:{event.event_id}")
        await self.tx.run(self.app.harness.write, "OnShipped", event.payload.order_id)


class Blocking(Base):
    """Writes, then waits for the test to release it."""

    async def handle(self, event: Event) -> None:
        self.app.calls.append("Blocking")
        await self.tx.run(self.app.harness.write, "Blocking", event.payload.order_id)
        self.app.entered.set()
        assert self.app.release is not None
        await self.app.release.wait()
        if "Blocking" in self.app.fail:
            self.app.fail.discard("Blocking")  # once: the other delivery then succeeds
            raise RuntimeError("Blocking fails")


class Outer(Base):
    """Sends another event from inside its handler (a nested dispatch)."""

    async def handle(self, event: Event) -> None:
        await self.effect(event)
        assert self.app.mediator is not None
        await self.app.mediator.send(
            anycqrs.NotificationEvent(
                payload=Shipped(event.payload.order_id),
                topic="s",
                event_id=self.tx.derive_id("nested"),
            )
        )


class Chunked:
    """A mediator whose every `send` runs as one consumer chunk would: in
    the inbox's chunk context when it batches, a handler's error caught
    inside it (the `Lanes` retry or dead-letter it there) and raised after
    the chunk committed."""

    def __init__(self, mediator: anycqrs.EventMediator) -> None:
        self.mediator = mediator

    async def send(self, event: Any) -> None:
        scope = self.mediator.chunk()
        if scope is None:
            await self.mediator.send(event)
            return
        if isinstance(scope, ChunkPlan):  # an optimistic store claims ahead
            scope.expect([event])
        error: Exception | None = None
        try:
            async with scope:
                try:
                    await self.mediator.send(event)
                except Exception as exc:  # raised once the chunk committed
                    error = exc
        except InboxError as broken:
            # an optimistic chunk whose handler failed: the Lanes handle it
            # again, with savepoints (the redo of a failed optimistic chunk)
            if "optimistic chunk" not in str(broken.__cause__):
                raise
            await self.send(event)
            return
        if error is not None:
            raise error


def mediator(
    app: App, inbox: InboxStore, *handlers: type, follow: bool = False, parallel: bool = False
) -> Any:
    def bind(events: anycqrs.EventMap) -> None:
        for handler in handlers:
            events.bind(Event, handler)
        if follow:
            events.bind(anycqrs.NotificationEvent[Shipped], OnShipped)

    container = lagom.Container()
    container[App] = app
    built = bootstrap(
        di_container=container,
        events_mapper=bind,
        inbox=inbox,
        concurrent_event_handle_enable=parallel,
    )
    app.mediator = built  # nested sends: inside the outer handler, no chunk of their own
    return Chunked(built)


class TestOnce:
    """A handler runs once per message; a redelivery is skipped."""

    async def test_duplicate_is_skipped(self, db: Harness) -> None:
        app, inbox = App(db), db.store()
        m = mediator(app, inbox, First)
        event = paid(1)
        await m.send(event)
        await m.send(event)
        assert db.effects() == [("First", 1)]
        assert await inbox.seen(First, event.event_id)
        assert await inbox.seen("First", event.event_id)
        assert not await inbox.seen(First, uuid4())
        await m.send(paid(2))
        assert db.effects() == [("First", 1), ("First", 2)]
        inbox.close()

    @pytest.mark.parametrize("parallel", [False, True])
    async def test_per_handler_redelivery(self, db: Harness, parallel: bool) -> None:
        app, inbox = App(db), db.store()
        m = mediator(app, inbox, First, Second, Third, parallel=parallel)
        event = paid(7)
        app.fail = {"Third"}
        with pytest.raises(RuntimeError, match="Third fails"):
            await m.send(event)
        committed = {name for name, _ in db.effects()}
        if parallel:  # the failure cancelled siblings still running: rolled back
            assert committed <= {"First", "Second"}
        else:
            assert committed == {"First", "Second"}
        assert not await inbox.seen("third-handler", event.event_id)
        app.fail = set()
        app.calls.clear()
        await m.send(event)  # the redelivery: only what did not commit runs
        assert sorted(app.calls) == sorted({"First", "Second", "Third"} - committed)
        assert sorted(db.effects()) == [("First", 7), ("Second", 7), ("Third", 7)]
        assert db.inbox_rows() == 3
        inbox.close()

    async def test_identity(self) -> None:
        assert handler_identity(First) == "First"
        assert handler_identity(Third) == "third-handler"
        with pytest.raises(TypeError):

            class Bad(anycqrs.EventHandler[Event]):
                inbox_name = ""

                async def handle(self, event: Event) -> None: ...


class TestRollback:
    """A failing or cancelled handler leaves nothing behind and runs again."""

    async def test_raise_after_writing(self, db: Harness) -> None:
        app, inbox = App(db), db.store()
        m = mediator(app, inbox, Publisher)
        event = paid(3)
        app.fail = {"Publisher"}
        with pytest.raises(RuntimeError):
            await m.send(event)
        assert db.effects() == []
        assert db.outbox_ids() == []
        assert db.inbox_rows() == 0
        app.fail = set()
        await m.send(event)
        assert db.effects() == [("Publisher", 3)]
        assert db.outbox_ids() == [str(derive_id("Publisher", event.event_id, "own:shipped"))]
        inbox.close()

    async def test_cancelled_handler_rolls_back(self, db: Harness) -> None:
        app, inbox = App(db), db.store()
        app.release = anyio.Event()  # never set
        m = mediator(app, inbox, Blocking)
        event = paid(4)
        with anyio.fail_after(20):
            async with anyio.create_task_group() as group:
                group.start_soon(m.send, event)
                await app.entered.wait()
                group.cancel_scope.cancel()
        assert db.effects() == []
        assert db.inbox_rows() == 0
        app.release.set()
        await m.send(event)
        assert db.effects() == [("Blocking", 4)]
        inbox.close()


class TestFollowUps:
    """Follow-ups of a guarded handler get derived ids and are guarded too."""

    async def test_derived_ids(self, db: Harness) -> None:
        app, inbox = App(db), db.store()
        m = mediator(app, inbox, Publisher, follow=True)
        event = paid(5)
        await m.send(event)
        expected = derive_id("Publisher", event.event_id, 0)
        assert app.calls == ["Publisher", f"OnShipped:{expected}"]
        assert await inbox.seen(OnShipped, expected)
        await m.send(event)  # duplicate: nothing runs, nothing re-emitted
        assert len(app.calls) == 2
        assert sorted(db.effects()) == [("OnShipped", 5), ("Publisher", 5)]
        inbox.close()

    async def test_nested_send_joins_the_transaction(self, db: Harness) -> None:
        app, inbox = App(db), db.store()
        m = mediator(app, inbox, Outer, follow=True)
        event = paid(6)
        app.fail = {"Outer"}
        with pytest.raises(RuntimeError):
            await m.send(event)
        assert db.effects() == []  # the nested handler's write rolled back with it
        app.fail = set()
        await m.send(event)
        await m.send(event)
        assert sorted(db.effects()) == [("OnShipped", 6), ("Outer", 6)]
        assert db.inbox_rows() == 2
        inbox.close()


class TestConcurrency:
    """Two deliveries of one message at once: exactly one commits."""

    @pytest.mark.parametrize("first_fails", [False, True])
    async def test_concurrent_duplicates(self, db: Harness, first_fails: bool) -> None:
        app, inbox = App(db), db.store()
        app.release = anyio.Event()
        m = mediator(app, inbox, Blocking)
        event = paid(8)
        if first_fails:
            app.fail = {"Blocking"}
        failures: list[BaseException] = []

        async def deliver() -> None:
            try:
                await m.send(event)
            except RuntimeError as exc:
                failures.append(exc)
                await m.send(event)  # retried: a duplicate, or the one that commits

        with anyio.fail_after(30):
            async with anyio.create_task_group() as group:
                group.start_soon(deliver)
                await app.entered.wait()
                app.entered = anyio.Event()
                group.start_soon(m.send, event)  # waits on the first's row / lock
                while not db.blocked(inbox):
                    await anyio.sleep(0.01)
                app.release.set()
        assert db.effects() == [("Blocking", 8)]
        assert db.inbox_rows() == 1
        # optimistic: the failed chunk was handled again inside (with savepoints)
        assert len(failures) == (1 if first_fails and not db.optimistic else 0)
        inbox.close()


class TestMisuse:
    """Clear errors, unguarded in-process events, retention."""

    async def test_transaction_outside_a_handler(self) -> None:
        tx = InboxTransaction()
        assert not tx.active
        with pytest.raises(InboxError, match="inbox-guarded handler"):
            await tx.run(lambda connection: None)

    async def test_event_id_not_a_uuid(self, db: Harness) -> None:
        app, inbox = App(db), db.store()
        m = mediator(app, inbox, First)
        event = paid(9)
        object.__setattr__(event, "event_id", "not-a-uuid")
        with pytest.raises(InboxKeyError, match="not a UUID"):
            await m.send(event)
        assert db.effects() == []
        inbox.close()

    async def test_domain_events_are_not_guarded(self, db: Harness) -> None:
        seen: list[int] = []

        class Bumped(anycqrs.DomainEvent):
            pass

        class OnBumped(anycqrs.EventHandler[Bumped]):
            async def handle(self, event: Bumped) -> None:
                seen.append(1)

        m = bootstrap(events_mapper=lambda e: e.bind(Bumped, OnBumped), inbox=db.store())
        await m.send(Bumped())
        await m.send(Bumped())
        assert seen == [1, 1]

    async def test_prune(self, db: Harness) -> None:
        app, inbox = App(db), db.store()
        m = mediator(app, inbox, First)
        await m.send(paid(10))
        assert await inbox.prune(older_than=3600) == 0
        await anyio.sleep(0.01)
        assert await inbox.prune(older_than=0) == 1
        assert db.inbox_rows() == 0
        with pytest.raises(ValueError, match="negative"):
            await inbox.prune(older_than=-1)
        inbox.close()
