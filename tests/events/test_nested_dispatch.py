"""Nested dispatch on one EventMediator and a mediator reused across event loops."""

from __future__ import annotations

import anyio
import attrs
import lagom
import pytest

import anycqrs
from anycqrs.errors import EventDispatchError
from anycqrs.events.bootstrap import bootstrap


@attrs.frozen
class Outer(anycqrs.DomainEvent):
    depth: int


@attrs.frozen
class Leaf(anycqrs.DomainEvent):
    name: str


class Seen:
    def __init__(self) -> None:
        self.names: list[str] = []


class Holder:
    """Gives handlers the mediator they run in (set after bootstrap)."""

    mediator: anycqrs.EventMediator


class SendsNested(anycqrs.EventHandler[Outer]):
    def __init__(self, holder: Holder, seen: Seen) -> None:
        self.holder, self.seen = holder, seen

    async def handle(self, event: Outer) -> None:
        self.seen.names.append(f"outer {event.depth}")
        if event.depth:
            await self.holder.mediator.send(Outer(event.depth - 1))
        await self.holder.mediator.send(Leaf(f"from {event.depth}"))


class RecordsLeaf(anycqrs.EventHandler[Leaf]):
    def __init__(self, seen: Seen) -> None:
        self.seen = seen

    async def handle(self, event: Leaf) -> None:
        await anyio.sleep(0)
        self.seen.names.append(event.name)


class AlsoRecordsLeaf(RecordsLeaf):
    pass


def parallel(bound: int) -> tuple[anycqrs.EventMediator, Seen]:
    container = lagom.Container()
    holder, seen = Holder(), Seen()
    container[Holder] = holder
    container[Seen] = seen

    def bind(events: anycqrs.EventMap) -> None:
        events.bind(Outer, SendsNested)
        events.bind(Leaf, RecordsLeaf)
        events.bind(Leaf, AlsoRecordsLeaf)

    mediator = bootstrap(
        di_container=container,
        events_mapper=bind,
        concurrent_event_handle_enable=True,
        max_concurrent_event_handlers=bound,
    )
    holder.mediator = mediator
    return mediator, seen


@pytest.mark.anyio
class TestNestedDispatch:
    """A handler may `send` on the mediator that runs it, in parallel mode too."""

    @pytest.mark.parametrize("bound", [1, 2, 10])
    async def test_nested_send_completes_at_any_bound(self, bound: int) -> None:
        mediator, seen = parallel(bound)
        with anyio.fail_after(5):  # a deadlock at the bound would hang here
            await mediator.send(Outer(3))
        assert [n for n in seen.names if n.startswith("outer")] == [
            "outer 3",
            "outer 2",
            "outer 1",
            "outer 0",
        ]
        for depth in range(4):
            assert seen.names.count(f"from {depth}") == 2  # both leaf handlers, once each


class TestLoopAgnostic:
    """One mediator serves several event loops, one after another."""

    def test_parallel_mediator_in_two_loops_and_both_backends(self) -> None:
        mediator, seen = parallel(2)

        async def main() -> None:
            await mediator.send(Outer(1))

        anyio.run(main)
        anyio.run(main, backend="trio")
        anyio.run(main)
        assert seen.names.count("outer 1") == 3
        assert seen.names.count("from 0") == 6


class Fails(anycqrs.EventHandler[Leaf]):
    async def handle(self, event: Leaf) -> None:
        raise KeyError(event.name)


class AlsoFails(anycqrs.EventHandler[Leaf]):
    async def handle(self, event: Leaf) -> None:
        raise ValueError(event.name)


@pytest.mark.anyio
async def test_event_mediator_dispatch_error_does_not_claim_a_handler_succeeded() -> None:
    def bind(events: anycqrs.EventMap) -> None:
        events.bind(Leaf, Fails)
        events.bind(Leaf, AlsoFails)

    mediator = bootstrap(events_mapper=bind, concurrent_event_handle_enable=True)
    with pytest.raises(EventDispatchError) as caught:
        await mediator.send(Leaf("x"))
    assert "succeeded" not in str(caught.value)
    assert {type(e) for e in caught.value.exceptions} == {KeyError, ValueError}


class Gauge:
    """How many handlers run at once, and the most seen."""

    def __init__(self) -> None:
        self.now = 0
        self.most = 0


class Measured(anycqrs.EventHandler[Leaf]):
    def __init__(self, gauge: Gauge) -> None:
        self.gauge = gauge

    async def handle(self, event: Leaf) -> None:
        self.gauge.now += 1
        self.gauge.most = max(self.gauge.most, self.gauge.now)
        for _ in range(3):
            await anyio.sleep(0)  # let siblings run if they could
        self.gauge.now -= 1


class AlsoMeasured(Measured):
    pass


class Fans(anycqrs.EventHandler[Outer]):
    def __init__(self, holder: Holder, gauge: Gauge) -> None:
        self.holder, self.gauge = holder, gauge

    async def handle(self, event: Outer) -> None:
        self.gauge.now += 1
        self.gauge.most = max(self.gauge.most, self.gauge.now)
        self.gauge.now -= 1  # waiting in a nested send: its slot is lent
        await self.holder.mediator.send(Leaf(str(event.depth)))


@pytest.mark.anyio
@pytest.mark.parametrize("bound", [1, 2])
async def test_nested_dispatch_stays_within_the_bound(bound: int) -> None:
    container = lagom.Container()
    holder, gauge = Holder(), Gauge()
    container[Holder] = holder
    container[Gauge] = gauge

    def bind(events: anycqrs.EventMap) -> None:
        events.bind(Outer, Fans)
        events.bind(Leaf, Measured)
        events.bind(Leaf, AlsoMeasured)

    holder.mediator = bootstrap(
        di_container=container,
        events_mapper=bind,
        concurrent_event_handle_enable=True,
        max_concurrent_event_handlers=bound,
    )
    with anyio.fail_after(5):
        await holder.mediator.send_many([Outer(n) for n in range(4)])
    assert 1 <= gauge.most <= bound
    assert gauge.now == 0
