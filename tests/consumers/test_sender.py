"""`EventMediator.sender()`: what the lanes call per event, with `send`'s semantics
(the lone plain handler called directly, everything else through `send`)."""

from __future__ import annotations

from typing import Any

import anyio
import attrs
import lagom
import pytest

import anycqrs
from anycqrs.consumers import InMemoryTransport, consume
from anycqrs.events import EventHandler, EventMap, EventMediator

from .consumer_helpers import FakeSleep, OrderPaid, RecordPaid, Seen, paid

pytestmark = pytest.mark.anyio

Paid = anycqrs.NotificationEvent[OrderPaid]


@attrs.frozen
class Shipped(anycqrs.DomainEvent):
    order_id: int


class AlsoPaid(EventHandler[Paid]):
    def __init__(self, seen: Seen) -> None:
        self.seen = seen

    async def handle(self, event: Paid) -> None:
        self.seen.calls += 100


class ShipPaid(EventHandler[Paid]):
    async def handle(self, event: Paid) -> None:
        self.emit(Shipped(event.payload.order_id))


class RecordShipped(EventHandler[Shipped]):
    def __init__(self, seen: Seen) -> None:
        self.seen = seen

    async def handle(self, event: Shipped) -> None:
        self.seen.events.append(paid(-event.order_id))


def _mediator(seen: Seen, *handlers: type, **kw: Any) -> tuple[EventMap, EventMediator]:
    container = lagom.Container()
    container[Seen] = seen
    events = EventMap()
    for handler in handlers:
        events.bind(Paid, handler)
    events.bind(Shipped, RecordShipped)
    return events, EventMediator(events, container=container, **kw)


class TestSender:
    """Same outcome as `send`, whichever path a message takes."""

    async def test_a_handler_bound_later_runs_too(self, seen: Seen) -> None:
        events, mediator = _mediator(seen, RecordPaid)
        send = mediator.sender()
        await send(paid(1))
        await send(paid(2))  # the direct path, now planned
        assert (seen.ids(), seen.calls) == ([1, 2], 2)
        events.bind(Paid, AlsoPaid)  # the plan is stale: both handlers run
        await send(paid(3))
        assert (seen.ids(), seen.calls) == ([1, 2, 3], 103)

    async def test_another_binding_replans(self, seen: Seen) -> None:
        events, mediator = _mediator(seen, RecordPaid)
        send = mediator.sender()
        await send(paid(1))
        await send(paid(2))  # planned

        class AlsoShipped(EventHandler[Shipped]):
            async def handle(self, event: Shipped) -> None:
                pass

        events.bind(Shipped, AlsoShipped)  # any bind makes the plan stale
        await send(paid(3))  # the general path, planned again
        await send(paid(4))
        assert (seen.ids(), seen.calls) == ([1, 2, 3, 4], 4)

    async def test_follow_ups_are_dispatched(self, seen: Seen) -> None:
        _, mediator = _mediator(seen, ShipPaid)
        send = mediator.sender()
        for order in (1, 2):
            await send(paid(order))
        assert seen.ids() == [-1, -2]

    async def test_a_failing_handler_raises_unchanged(self, seen: Seen) -> None:
        _, mediator = _mediator(seen, RecordPaid)
        send = mediator.sender()

        def fail(event: Paid, call: int) -> None:
            raise LookupError(call)

        await send(paid(1))
        seen.behaviour = fail
        with pytest.raises(LookupError):
            await send(paid(2))
        assert seen.ids() == [1]

    async def test_middlewares_see_every_event(self, seen: Seen) -> None:
        met: list[Any] = []

        class Note:
            async def __call__(self, message: Any, call_next: Any) -> Any:
                met.append(message.payload.order_id)
                return await call_next(message)

        _, mediator = _mediator(seen, RecordPaid, middlewares=[Note()])
        send = mediator.sender()
        for order in (1, 2, 3):
            await send(paid(order))
        assert met == seen.ids() == [1, 2, 3]

    async def test_parallel_mode_takes_send(self, seen: Seen) -> None:
        _, mediator = _mediator(seen, RecordPaid, AlsoPaid, concurrent_event_handle_enable=True)
        send = mediator.sender()
        await send(paid(1))
        await send(paid(2))
        assert (sorted(seen.ids()), seen.calls) == ([1, 2], 202)


class Flaky(EventHandler[Paid]):
    """Emits a `Shipped` per event, failing once (on its second call) after emitting."""

    def __init__(self) -> None:
        self.calls = 0

    async def handle(self, event: Paid) -> None:
        self.calls += 1
        self.emit(Shipped(event.payload.order_id))
        if self.calls == 2:
            raise LookupError("once")


async def _consume(mediator: EventMediator, *events: Paid) -> InMemoryTransport:
    transport = InMemoryTransport()
    for event in events:
        transport.put_event(event)
    transport.close()
    with anyio.fail_after(10):
        await consume(mediator, transport, concurrency=1, sleep=FakeSleep())
    return transport


class TestLanes:
    """The lanes await a planned lone handler themselves (`sender_parts`): same outcome."""

    async def test_follow_ups_are_dispatched(self, seen: Seen) -> None:
        _, mediator = _mediator(seen, ShipPaid)
        await _consume(mediator, *(paid(order) for order in (1, 2, 3)))
        assert seen.ids() == [-1, -2, -3]

    async def test_a_failed_call_drops_its_events_and_is_retried(self, seen: Seen) -> None:
        events, mediator = _mediator(seen)
        container = lagom.Container()
        container[Seen] = seen
        container[Flaky] = Flaky()  # a singleton: its list outlives the failed call
        events.bind(Paid, Flaky)
        mediator = EventMediator(events, container=container)
        transport = await _consume(mediator, *(paid(order) for order in (1, 2, 3)))
        assert seen.ids() == [-1, -2, -3]  # the failed call's Shipped(2) is gone
        assert transport.dead_letters == []

    async def test_a_bind_while_consuming_replans(self, seen: Seen) -> None:
        events, mediator = _mediator(seen, RecordPaid)

        def bind_more(event: Paid, call: int) -> None:
            if call == 2:  # the direct path: the plan goes stale
                events.bind(Paid, AlsoPaid)

        seen.behaviour = bind_more
        await _consume(mediator, *(paid(order) for order in (1, 2, 3)))
        assert (seen.ids(), seen.calls) == ([1, 2, 3], 103)

    async def test_a_handler_that_cannot_be_built_is_retried(self, seen: Seen) -> None:
        built: list[int] = []

        def build() -> Seen:
            built.append(1)
            if len(built) > 1:
                raise RuntimeError("no seen")
            return seen

        container = lagom.Container()
        container[Seen] = build  # type: ignore[assignment]
        events = EventMap()
        events.bind(Paid, RecordPaid)
        mediator = EventMediator(events, container=container)
        transport = await _consume(mediator, paid(1), paid(2))
        assert seen.ids() == [1]
        [letter] = transport.dead_letters  # the factory's own error, unchanged
        assert (repr(letter.error), letter.attempts) == ("RuntimeError('no seen')", 3)
