"""Per-dispatch scopes: one unit of work per handler run, in every container."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import attrs
import pytest

import anycqrs
from anycqrs.events import bootstrap as events_bootstrap
from anycqrs.requests import bootstrap as requests_bootstrap

from .conftest import OUTCOME_AWARE, Journal, Repo, Session, build

pytestmark = pytest.mark.anyio


@attrs.frozen
class Place(anycqrs.Request):
    fail: bool = False


@attrs.frozen
class Placed(anycqrs.DomainEvent):
    number: int


@attrs.frozen
class Hang(anycqrs.Request):
    pass


class PlaceHandler(anycqrs.RequestHandler[Place, int]):
    def __init__(self, repo: Repo, session: Session) -> None:
        super().__init__()
        self.repo = repo
        self.session = session

    async def handle(self, request: Place) -> int:
        assert self.repo.session is self.session  # shared within the scope
        if request.fail:
            raise ValueError("no stock")
        self.emit(Placed(self.session.number))
        return self.session.number


class PlacedHandler(anycqrs.EventHandler[Placed]):
    seen: list[tuple[int, int]]

    def __init__(self, repo: Repo, session: Session) -> None:
        super().__init__()
        self.repo = repo
        self.session = session

    async def handle(self, event: Placed) -> None:
        assert self.repo.session is self.session
        SEEN.append((event.number, self.session.number))


SEEN: list[tuple[int, int]] = []


class HangHandler(anycqrs.RequestHandler[Hang, None]):
    def __init__(self, repo: Repo, session: Session) -> None:
        super().__init__()
        self.session = session

    async def handle(self, request: Hang) -> None:
        STARTED[-1].set()
        await anyio.sleep_forever()


STARTED: list[anyio.Event] = []


def mediator(kind: str, journal: Journal) -> anycqrs.RequestMediator:
    def commands(requests: anycqrs.RequestMap) -> None:
        requests.bind(Place, PlaceHandler)
        requests.bind(Hang, HangHandler)

    def events(events: anycqrs.EventMap) -> None:
        events.bind(Placed, PlacedHandler)

    return requests_bootstrap.bootstrap(
        di_container=build(kind, [PlaceHandler, PlacedHandler, HangHandler], journal),
        commands_mapper=commands,
        domain_events_mapper=events,
    )


def ended(kind: str, number: int, error: str | None = None) -> tuple[Any, ...]:
    if kind not in OUTCOME_AWARE:
        return ("close", number)
    return ("commit", number) if error is None else ("rollback", number, error)


class TestRequests:
    """A scope per `send`; follow-up events in scopes of their own, after it."""

    async def test_shared_within_fresh_across_and_committed(
        self, kind: str, journal: Journal
    ) -> None:
        SEEN.clear()
        sender = mediator(kind, journal)
        with anyio.fail_after(10):
            first = await sender.send(Place())
            second = await sender.send(Place())
        assert first != second
        # the request's scope is closed (committed) before its event is handled,
        # and the event handler gets a scope (a session) of its own
        assert journal.finals() == [
            ended(kind, first),
            ended(kind, first + 1),
            ended(kind, second),
            ended(kind, second + 1),
        ]
        assert SEEN == [(first, first + 1), (second, second + 1)]

    async def test_failure_rolls_back(self, kind: str, journal: Journal) -> None:
        sender = mediator(kind, journal)
        with anyio.fail_after(10), pytest.raises(ValueError, match="no stock"):
            await sender.send(Place(fail=True))
        assert journal.finals() == [ended(kind, 1, "ValueError")]

    async def test_cancelled_dispatch_still_finalizes(self, kind: str, journal: Journal) -> None:
        sender = mediator(kind, journal)
        STARTED.append(anyio.Event())
        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:
                group.start_soon(sender.send, Hang())
                await STARTED[-1].wait()
                group.cancel_scope.cancel()
        cancelled = anyio.get_cancelled_exc_class().__name__
        assert journal.finals() == [ended(kind, 1, cancelled)]


class TestEvents:
    """A scope per event handler run, for `EventMediator.send`."""

    async def test_each_handler_run_is_a_unit_of_work(self, kind: str, journal: Journal) -> None:
        SEEN.clear()

        def events(events: anycqrs.EventMap) -> None:
            events.bind(Placed, PlacedHandler)

        sender = events_bootstrap.bootstrap(
            di_container=build(kind, [PlacedHandler], journal), events_mapper=events
        )
        with anyio.fail_after(10):
            await sender.send(Placed(7))
            await sender.send(Placed(8))
        assert SEEN == [(7, 1), (8, 2)]
        assert journal.finals() == [ended(kind, 1), ended(kind, 2)]


@attrs.frozen
class Count(anycqrs.Request):
    upto: int
    fail: bool = False


class CountHandler(anycqrs.StreamingRequestHandler[Count, int]):
    def __init__(self, repo: Repo, session: Session) -> None:
        super().__init__()
        self.repo = repo
        self.session = session

    async def handle(self, request: Count) -> AsyncIterator[int]:
        for number in range(request.upto):
            assert self.repo.session is self.session
            yield self.session.number * 100 + number
        if request.fail:
            raise ValueError("stream broke")


class TestStreams:
    """One scope spans a whole stream."""

    def streamer(self, kind: str, journal: Journal) -> anycqrs.StreamingRequestMediator:
        return requests_bootstrap.bootstrap_streaming(
            di_container=build(kind, [CountHandler], journal),
            queries_mapper=lambda requests: requests.bind(Count, CountHandler),
        )

    async def test_the_stream_is_one_unit_of_work(self, kind: str, journal: Journal) -> None:
        streamer = self.streamer(kind, journal)
        with anyio.fail_after(10):
            async with streamer.stream(Count(3)) as items:
                assert [item async for item in items] == [100, 101, 102]
            assert journal.finals() == [ended(kind, 1)]
            with pytest.raises(ValueError, match="stream broke"):
                async with streamer.stream(Count(1, fail=True)) as items:
                    async for _ in items:
                        pass
        assert journal.finals() == [ended(kind, 1), ended(kind, 2, "ValueError")]

    async def test_leaving_early_closes_the_scope(self, kind: str, journal: Journal) -> None:
        streamer = self.streamer(kind, journal)
        with anyio.fail_after(10):
            async with streamer.stream(Count(5)) as items:
                async for _ in items:
                    break
        assert journal.finals() == [ended(kind, 1)]


@attrs.frozen
class Quote(anycqrs.Request):
    pass


class FlakyQuote(anycqrs.RequestHandler[Quote, int]):
    def __init__(self, repo: Repo, session: Session) -> None:
        super().__init__()
        self.session = session

    async def handle(self, request: Quote) -> int:
        raise ConnectionError("pricing is down")


class CachedQuote(anycqrs.RequestHandler[Quote, int]):
    def __init__(self, repo: Repo, session: Session) -> None:
        super().__init__()
        self.session = session

    async def handle(self, request: Quote) -> int:
        return self.session.number


class FirstLink(anycqrs.CORRequestHandler[Place, int]):
    def __init__(self, repo: Repo, session: Session) -> None:
        super().__init__()
        self.session = session

    async def handle(self, request: Place) -> int | None:
        LINKS.append(self.session.number)
        return await self.next(request)


class LastLink(anycqrs.CORRequestHandler[Place, int]):
    def __init__(self, repo: Repo, session: Session) -> None:
        super().__init__()
        self.session = session

    async def handle(self, request: Place) -> int | None:
        LINKS.append(self.session.number)
        return self.session.number


LINKS: list[int] = []


class TestRoutes:
    """Fallbacks split the unit of work; a chain is one."""

    async def test_the_fallback_runs_after_the_primary_rolled_back(
        self, kind: str, journal: Journal
    ) -> None:
        fallback = anycqrs.RequestHandlerFallback(
            FlakyQuote, CachedQuote, failure_exceptions=(ConnectionError,)
        )
        sender = requests_bootstrap.bootstrap(
            di_container=build(kind, [FlakyQuote, CachedQuote], journal),
            queries_mapper=lambda requests: requests.bind(Quote, fallback),
        )
        with anyio.fail_after(10):
            assert await sender.send(Quote()) == 2
        assert journal.finals() == [ended(kind, 1, "ConnectionError"), ended(kind, 2)]

    async def test_a_chain_is_one_unit_of_work(self, kind: str, journal: Journal) -> None:
        LINKS.clear()
        sender = requests_bootstrap.bootstrap(
            di_container=build(kind, [FirstLink, LastLink], journal),
            commands_mapper=lambda requests: requests.bind(Place, [FirstLink, LastLink]),
        )
        with anyio.fail_after(10):
            assert await sender.send(Place()) == 1
        assert LINKS == [1, 1]
        assert journal.finals() == [ended(kind, 1)]


class SecondPlacedHandler(PlacedHandler):
    pass


class TestParallelEvents:
    """Parallel handlers never share a scope."""

    async def test_each_parallel_handler_has_its_own_scope(
        self, kind: str, journal: Journal
    ) -> None:
        SEEN.clear()

        def events(events: anycqrs.EventMap) -> None:
            events.bind(Placed, PlacedHandler)
            events.bind(Placed, SecondPlacedHandler)

        sender = events_bootstrap.bootstrap(
            di_container=build(kind, [PlacedHandler, SecondPlacedHandler], journal),
            events_mapper=events,
            concurrent_event_handle_enable=True,
        )
        with anyio.fail_after(10):
            await sender.send_many([Placed(1), Placed(2)])
        assert sorted(number for _, number in SEEN) == [1, 2, 3, 4]
        assert len(journal.finals()) == 4


class FlakyCount(anycqrs.StreamingRequestHandler[Count, int]):
    def __init__(self, repo: Repo, session: Session) -> None:
        super().__init__()
        self.session = session

    async def handle(self, request: Count) -> AsyncIterator[int]:
        raise ConnectionError("source is down")
        yield 0  # pragma: no cover - an async generator


class TestStreamingFallback:
    """A streaming fallback's handlers each stream in a scope of their own."""

    async def test_primary_rolled_back_fallback_committed(
        self, kind: str, journal: Journal
    ) -> None:
        fallback = anycqrs.StreamingRequestHandlerFallback(
            FlakyCount, CountHandler, failure_exceptions=(ConnectionError,)
        )
        streamer = requests_bootstrap.bootstrap_streaming(
            di_container=build(kind, [FlakyCount, CountHandler], journal),
            queries_mapper=lambda requests: requests.bind(Count, fallback),
        )
        with anyio.fail_after(10):
            async with streamer.stream(Count(2)) as items:
                assert [item async for item in items] == [200, 201]
        assert journal.finals() == [ended(kind, 1, "ConnectionError"), ended(kind, 2)]

    async def test_leaving_a_fallback_stream_early_commits(
        self, kind: str, journal: Journal
    ) -> None:
        fallback = anycqrs.StreamingRequestHandlerFallback(
            CountHandler, CountHandler, failure_exceptions=(ConnectionError,)
        )
        streamer = requests_bootstrap.bootstrap_streaming(
            di_container=build(kind, [CountHandler], journal),
            queries_mapper=lambda requests: requests.bind(Count, fallback),
        )
        with anyio.fail_after(10):
            async with streamer.stream(Count(5)) as items:
                async for _ in items:
                    break
        assert journal.finals() == [ended(kind, 1)]
