"""Each emitted event is dispatched once, whatever idiom the handler uses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import attrs
import lagom
import pytest

import anycqrs
from anycqrs.events.bootstrap import bootstrap as bootstrap_events
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


@attrs.frozen
class Maybe(anycqrs.Request):
    n: int
    fail: bool = False


class FlakySingleton(anycqrs.RequestHandler[Maybe, int]):
    async def handle(self, request: Maybe) -> int:
        self.emit(Tick(request.n))
        if request.fail:
            raise ValueError(request.n)
        return request.n


class FlakyLink(anycqrs.CORRequestHandler[Maybe, int]):
    async def handle(self, request: Maybe) -> int | None:
        self.emit(Tick(request.n))
        if request.fail:
            raise ValueError(request.n)
        return request.n


class FlakyStream(anycqrs.StreamingRequestHandler[Maybe, int]):
    async def handle(self, request: Maybe) -> AsyncIterator[int]:
        self.emit(Tick(request.n))
        if request.fail:
            raise ValueError(request.n)
        yield request.n


class FlakyEvent(anycqrs.EventHandler[Tick]):
    def __init__(self, ticks: Ticks) -> None:
        self.ticks = ticks

    async def handle(self, event: Tick) -> None:
        self.ticks.seen.append(event.n)
        self.emit(Tock(event.n))
        if event.n < 0:
            raise ValueError(event.n)


@attrs.frozen
class Tock(anycqrs.DomainEvent):
    n: int


class RecordTock(anycqrs.EventHandler[Tock]):
    def __init__(self, ticks: Ticks) -> None:
        self.ticks = ticks

    async def handle(self, event: Tock) -> None:
        self.ticks.seen.append(1000 + event.n)


class TestFailedCallsDropTheirEvents:
    """A singleton's failed call never leaks its events into the next call."""

    @pytest.mark.parametrize("handler", [FlakySingleton, [FlakyLink]], ids=["handler", "chain"])
    async def test_request(self, handler: Any) -> None:
        ticks = Ticks()
        singletons = handler if isinstance(handler, list) else [handler]
        mediator = bootstrap(
            di_container=container_with(ticks, *singletons),
            commands_mapper=lambda requests: requests.bind(Maybe, handler),
            domain_events_mapper=bind_ticks,
        )
        with pytest.raises(ValueError):
            await mediator.send(Maybe(1, fail=True))
        assert await mediator.send(Maybe(2)) == 2
        assert ticks.seen == [2]

    async def test_stream(self) -> None:
        ticks = Ticks()
        mediator = bootstrap_streaming(
            di_container=container_with(ticks, FlakyStream),
            queries_mapper=lambda requests: requests.bind(Maybe, FlakyStream),
            domain_events_mapper=bind_ticks,
        )
        with pytest.raises(ValueError):
            [i async for i in mediator.stream(Maybe(1, fail=True))]
        assert [i async for i in mediator.stream(Maybe(2))] == [2]
        assert ticks.seen == [2]

    @pytest.mark.parametrize("parallel", [False, True])
    async def test_event_handler(self, parallel: bool) -> None:
        ticks = Ticks()
        container = lagom.Container()
        container[Ticks] = ticks
        container[FlakyEvent] = FlakyEvent(ticks)

        def bind(events: anycqrs.EventMap) -> None:
            events.bind(Tick, FlakyEvent)
            events.bind(Tock, RecordTock)

        mediator = bootstrap_events(
            di_container=container, events_mapper=bind, concurrent_event_handle_enable=parallel
        )
        with pytest.raises(ValueError):
            await mediator.send(Tick(-1))
        await mediator.send(Tick(2))
        assert ticks.seen == [-1, 2, 1002]
