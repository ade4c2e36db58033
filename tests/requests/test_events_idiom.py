"""Each emitted event is dispatched once, whatever idiom the handler uses."""

from __future__ import annotations

from collections.abc import AsyncIterator

import attrs
import lagom
import pytest

import anycqrs
from anycqrs.requests.bootstrap import bootstrap, bootstrap_streaming

pytestmark = pytest.mark.anyio


@attrs.frozen
class Tick(anycqrs.DomainEvent):
    n: int


@attrs.frozen
class Count(anycqrs.Request):
    items: int


class Ticks:
    def __init__(self) -> None:
        self.seen: list[int] = []


class RecordTick(anycqrs.EventHandler[Tick]):
    def __init__(self, ticks: Ticks) -> None:
        self.ticks = ticks

    async def handle(self, event: Tick) -> None:
        # re-dispatched events can loop forever: stop the test instead
        assert len(self.ticks.seen) < 50, f"events dispatched again and again: {self.ticks.seen}"
        self.ticks.seen.append(event.n)


class PyCqrsEvents:
    """python-cqrs's idiom: `events` returns a copy, `clear_events()` empties."""

    def __init__(self) -> None:
        self._events: list[anycqrs.Event] = []

    @property
    def events(self) -> list[anycqrs.Event]:
        return self._events.copy()

    def clear_events(self) -> None:
        self._events.clear()


class StreamTicks(PyCqrsEvents, anycqrs.StreamingRequestHandler[Count, int]):
    async def handle(self, request: Count) -> AsyncIterator[int]:
        for n in range(request.items):
            self._events.append(Tick(n))
            yield n


class SendTick(PyCqrsEvents, anycqrs.RequestHandler[Count, int]):
    async def handle(self, request: Count) -> int:
        self._events.append(Tick(request.items))
        return request.items


class EmitTick(anycqrs.RequestHandler[Count, int]):
    async def handle(self, request: Count) -> int:
        self.emit(Tick(request.items))
        return request.items


def container_with(ticks: Ticks, *singletons: type) -> lagom.Container:
    container = lagom.Container()
    container[Ticks] = ticks
    for singleton in singletons:
        container[singleton] = singleton()
    return container


def bind_ticks(events: anycqrs.EventMap) -> None:
    events.bind(Tick, RecordTick)


async def test_stream_with_copying_events_dispatches_each_once() -> None:
    ticks = Ticks()
    mediator = bootstrap_streaming(
        di_container=container_with(ticks),
        queries_mapper=lambda requests: requests.bind(Count, StreamTicks),
        domain_events_mapper=bind_ticks,
    )
    got = [item async for item in mediator.stream(Count(3))]
    assert got == [0, 1, 2]
    assert ticks.seen == [0, 1, 2]


@pytest.mark.parametrize("handler", [SendTick, EmitTick])
async def test_singleton_handler_never_redispatches_earlier_events(handler: type) -> None:
    ticks = Ticks()
    mediator = bootstrap(
        di_container=container_with(ticks, handler),
        commands_mapper=lambda requests: requests.bind(Count, handler),
        domain_events_mapper=bind_ticks,
    )
    assert await mediator.send(Count(1)) == 1
    assert await mediator.send(Count(2)) == 2
    assert ticks.seen == [1, 2]


async def test_singleton_stream_handler_starts_clean() -> None:
    ticks = Ticks()
    mediator = bootstrap_streaming(
        di_container=container_with(ticks, StreamTicks),
        queries_mapper=lambda requests: requests.bind(Count, StreamTicks),
        domain_events_mapper=bind_ticks,
    )
    assert [i async for i in mediator.stream(Count(2))] == [0, 1]
    assert [i async for i in mediator.stream(Count(1))] == [0]
    assert ticks.seen == [0, 1, 0]


class FollowUp(PyCqrsEvents, anycqrs.EventHandler[Tick]):
    """An event handler with the copying idiom: its follow-up is dispatched once."""

    async def handle(self, event: Tick) -> None:
        if event.n < 10:
            self._events.append(Tick(event.n + 10))


async def test_event_handler_follow_ups_with_copying_events_once() -> None:
    ticks = Ticks()

    def bind(events: anycqrs.EventMap) -> None:
        events.bind(Tick, RecordTick)
        events.bind(Tick, FollowUp)

    mediator = bootstrap(
        di_container=container_with(ticks, FollowUp),
        commands_mapper=lambda requests: requests.bind(Count, EmitTick),
        domain_events_mapper=bind,
    )
    await mediator.send(Count(1))
    await mediator.send(Count(2))
    assert ticks.seen == [1, 11, 2, 12]


class FirstLink(PyCqrsEvents, anycqrs.CORRequestHandler[Count, int]):
    async def handle(self, request: Count) -> int | None:
        self._events.append(Tick(100 + request.items))
        return await self.next(request)


class LastLink(PyCqrsEvents, anycqrs.CORRequestHandler[Count, int]):
    async def handle(self, request: Count) -> int | None:
        self._events.append(Tick(200 + request.items))
        return request.items


async def test_chain_links_with_copying_events_once() -> None:
    ticks = Ticks()
    mediator = bootstrap(
        di_container=container_with(ticks, FirstLink, LastLink),
        commands_mapper=lambda requests: requests.bind(Count, [FirstLink, LastLink]),
        domain_events_mapper=bind_ticks,
    )
    assert await mediator.send(Count(1)) == 1
    assert await mediator.send(Count(2)) == 2
    assert ticks.seen == [101, 201, 102, 202]


class SelfAssigned(anycqrs.RequestHandler[Count, int]):
    """The other python-cqrs idiom: a fresh list assigned in `handle`."""

    async def handle(self, request: Count) -> int:
        self.events = [Tick(request.items)]
        return request.items


async def test_assigned_events_list_once() -> None:
    ticks = Ticks()
    mediator = bootstrap(
        di_container=container_with(ticks, SelfAssigned),
        commands_mapper=lambda requests: requests.bind(Count, SelfAssigned),
        domain_events_mapper=bind_ticks,
    )
    await mediator.send(Count(1))
    await mediator.send(Count(2))
    assert ticks.seen == [1, 2]
