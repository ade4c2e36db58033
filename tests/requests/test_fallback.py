from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import attrs
import lagom
import pytest

import anycqrs
from anycqrs._breaker import BreakerState, CircuitBreaker, MemoryBreakerStore
from anycqrs.errors import BindingError
from anycqrs.requests import (
    CORRequestHandler,
    RequestHandlerFallback,
    StreamingRequestHandler,
    StreamingRequestHandlerFallback,
)
from anycqrs.requests.bootstrap import bootstrap, bootstrap_streaming

pytestmark = pytest.mark.anyio


@attrs.frozen
class Rates(anycqrs.Response):
    source: str


@attrs.frozen
class CachedRates(Rates):
    pass


@attrs.frozen
class GetRates(anycqrs.Request[Rates]):
    currency: str = "EUR"


@attrs.frozen
class RatesServed(anycqrs.DomainEvent):
    source: str


class Journal:
    def __init__(self) -> None:
        self.entries: list[str] = []
        self.error: Exception | None = ConnectionError("live rates down")


class LiveRates(anycqrs.RequestHandler[GetRates, Rates]):
    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    async def handle(self, request: GetRates) -> Rates:
        self.journal.entries.append("live")
        self.emit(RatesServed("live"))
        if self.journal.error is not None:
            raise self.journal.error
        return Rates("live")


class CacheRates(anycqrs.RequestHandler[GetRates, CachedRates]):
    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    async def handle(self, request: GetRates) -> CachedRates:
        self.journal.entries.append("cache")
        self.emit(RatesServed("cache"))
        return CachedRates("cache")


class OnServed(anycqrs.EventHandler[RatesServed]):
    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    async def handle(self, event: RatesServed) -> None:
        self.journal.entries.append(f"served by {event.source}")


def make(journal: Journal, binding: Any) -> anycqrs.RequestMediator:
    container = lagom.Container()
    container[Journal] = journal
    requests = anycqrs.RequestMap()
    requests.bind(GetRates, binding)
    events = anycqrs.EventMap()
    events.bind(RatesServed, OnServed)
    return bootstrap(di_container=container, queries_mapper=requests, domain_events_mapper=events)


async def test_fallback_runs_when_primary_fails() -> None:
    journal = Journal()
    mediator = make(journal, RequestHandlerFallback(LiveRates, CacheRates))
    assert await mediator.send(GetRates()) == CachedRates("cache")
    # the failed primary's events are dropped, the fallback's are dispatched
    assert journal.entries == ["live", "cache", "served by cache"]


async def test_primary_success_skips_fallback() -> None:
    journal = Journal()
    journal.error = None
    mediator = make(journal, RequestHandlerFallback(LiveRates, CacheRates))
    assert await mediator.send(GetRates()) == Rates("live")
    assert journal.entries == ["live", "served by live"]


async def test_only_failure_exceptions_trigger_the_fallback() -> None:
    journal = Journal()
    fallback = RequestHandlerFallback(LiveRates, CacheRates, failure_exceptions=(TimeoutError,))
    mediator = make(journal, fallback)
    with pytest.raises(ConnectionError):
        await mediator.send(GetRates())
    journal.error = TimeoutError("slow")
    assert await mediator.send(GetRates()) == CachedRates("cache")
    single = RequestHandlerFallback(LiveRates, CacheRates, failure_exceptions=TimeoutError)
    assert single.failure_exceptions == (TimeoutError,)


async def test_breaker_opens_and_fallback_serves_without_trying_primary() -> None:
    journal = Journal()
    clock = [0.0]
    breaker = CircuitBreaker(
        fail_max=2, reset_timeout=10, store=MemoryBreakerStore(lambda: clock[0])
    )
    mediator = make(journal, RequestHandlerFallback(LiveRates, CacheRates, circuit_breaker=breaker))
    name = f"{LiveRates.__module__}.{LiveRates.__qualname__}"
    for _ in range(2):
        assert await mediator.send(GetRates()) == CachedRates("cache")
    assert await breaker.state(name) is BreakerState.OPEN
    journal.entries.clear()
    assert await mediator.send(GetRates()) == CachedRates("cache")
    assert journal.entries == ["cache", "served by cache"]  # primary not tried
    clock[0] += 10  # half-open: the primary gets a trial call
    journal.error = None
    journal.entries.clear()
    assert await mediator.send(GetRates()) == Rates("live")
    assert journal.entries == ["live", "served by live"]
    assert await breaker.state(name) is BreakerState.CLOSED


async def test_breaker_counts_errors_that_do_not_trigger_fallback() -> None:
    journal = Journal()
    breaker = CircuitBreaker(fail_max=1, exclude=(KeyError,))
    fallback = RequestHandlerFallback(
        LiveRates, CacheRates, failure_exceptions=(TimeoutError,), circuit_breaker=breaker
    )
    mediator = make(journal, fallback)
    journal.error = KeyError("business error")
    with pytest.raises(KeyError):
        await mediator.send(GetRates())
    assert not await breaker.is_open(f"{LiveRates.__module__}.{LiveRates.__qualname__}")
    journal.error = ConnectionError("down")
    with pytest.raises(ConnectionError):
        await mediator.send(GetRates())
    # now open: the fallback serves
    assert await mediator.send(GetRates()) == CachedRates("cache")


async def test_cancellation_is_not_a_failure() -> None:
    journal = Journal()
    started = anyio.Event()

    class Hangs(anycqrs.RequestHandler[GetRates, Rates]):
        async def handle(self, request: GetRates) -> Rates:
            started.set()
            await anyio.sleep_forever()
            raise AssertionError("unreachable")

    breaker = CircuitBreaker(fail_max=1)
    mediator = make(journal, RequestHandlerFallback(Hangs, CacheRates, circuit_breaker=breaker))
    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(mediator.send, GetRates())
            await started.wait()
            group.cancel_scope.cancel()
    assert journal.entries == []
    assert await breaker.state(f"{Hangs.__module__}.{Hangs.__qualname__}") is BreakerState.CLOSED


class ChainA(CORRequestHandler[GetRates, Rates]):
    async def handle(self, request: GetRates) -> Rates | None:
        return await self.next(request)


class ChainB(CORRequestHandler[GetRates, Rates]):
    async def handle(self, request: GetRates) -> Rates | None:
        raise ConnectionError("chain down")


async def test_a_chain_as_primary() -> None:
    from anycqrs.requests._chain import chain_route

    journal = Journal()
    fallback = RequestHandlerFallback(chain_route([ChainA, ChainB]), CacheRates)
    assert list(fallback.handler_types()) == [ChainA, ChainB, CacheRates]
    mediator = make(journal, fallback)
    assert await mediator.send(GetRates()) == CachedRates("cache")


@attrs.frozen
class OtherRequest(anycqrs.Request[Rates]):
    pass


class OtherHandler(anycqrs.RequestHandler[OtherRequest, Rates]):
    async def handle(self, request: OtherRequest) -> Rates:
        return Rates("other")


class Unrelated(anycqrs.Response):
    pass


class WrongResponse(anycqrs.RequestHandler[GetRates, Unrelated]):
    async def handle(self, request: GetRates) -> Unrelated:
        return Unrelated()


class StreamRates(StreamingRequestHandler[GetRates, Rates]):
    async def handle(self, request: GetRates) -> AsyncIterator[Rates]:
        yield Rates("stream")


@pytest.mark.parametrize(
    ("make_fallback", "match"),
    [
        (lambda: RequestHandlerFallback(LiveRates, OtherHandler), "handles GetRates but"),
        (lambda: RequestHandlerFallback(LiveRates, WrongResponse), "returns Unrelated"),
        (lambda: RequestHandlerFallback(LiveRates, StreamRates), "streams"),
        (lambda: RequestHandlerFallback(LiveRates, object()), "not a request handler"),
        (lambda: RequestHandlerFallback(LiveRates, CacheRates, ("x",)), "Exception subclasses"),
        (
            lambda: RequestHandlerFallback(LiveRates, CacheRates, circuit_breaker="x"),
            "CircuitBreaker",
        ),
        (lambda: StreamingRequestHandlerFallback(StreamRates, LiveRates), "not a Streaming"),
    ],
)
def test_type_mismatches_rejected(make_fallback: Any, match: str) -> None:
    with pytest.raises(BindingError, match=match):
        make_fallback()


def test_bind_checks_the_request_type() -> None:
    requests = anycqrs.RequestMap()
    with pytest.raises(BindingError, match="handles GetRates, not OtherRequest"):
        requests.bind(OtherRequest, RequestHandlerFallback(LiveRates, CacheRates))


def test_streaming_fallback_rejected_by_request_fallback() -> None:
    inner = StreamingRequestHandlerFallback(StreamRates, StreamRates)
    with pytest.raises(BindingError, match="streams"):
        RequestHandlerFallback(inner, CacheRates)
    with pytest.raises(BindingError, match="does not stream"):
        StreamingRequestHandlerFallback(RequestHandlerFallback(LiveRates, CacheRates), StreamRates)


# -- streaming -----------------------------------------------------------------


@attrs.frozen
class Tail(anycqrs.Request[Rates]):
    fail_after: int | None = 0


@attrs.frozen
class Tailed(anycqrs.DomainEvent):
    source: str


class LiveTail(StreamingRequestHandler[Tail, Rates]):
    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    async def handle(self, request: Tail) -> AsyncIterator[Rates]:
        try:
            for n in range(3):
                if n == request.fail_after:
                    raise ConnectionError(f"live tail died at {n}")
                self.emit(Tailed(f"live {n}"))
                yield Rates(f"live {n}")
        finally:
            self.journal.entries.append("live closed")


class ReplayTail(StreamingRequestHandler[Tail, Rates]):
    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    async def handle(self, request: Tail) -> AsyncIterator[Rates]:
        try:
            for n in range(2):
                self.emit(Tailed(f"replay {n}"))
                yield Rates(f"replay {n}")
            self.emit(Tailed("replay done"))
        finally:
            self.journal.entries.append("replay closed")


class OnTailed(anycqrs.EventHandler[Tailed]):
    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    async def handle(self, event: Tailed) -> None:
        self.journal.entries.append(f"event {event.source}")


def make_streaming(journal: Journal, binding: Any) -> anycqrs.requests.StreamingRequestMediator:
    container = lagom.Container()
    container[Journal] = journal
    requests = anycqrs.RequestMap()
    requests.bind(Tail, binding)
    events = anycqrs.EventMap()
    events.bind(Tailed, OnTailed)
    return bootstrap_streaming(
        di_container=container, queries_mapper=requests, domain_events_mapper=events
    )


async def test_stream_fallback_before_first_item_is_transparent() -> None:
    journal = Journal()
    breaker = CircuitBreaker(fail_max=5)
    mediator = make_streaming(
        journal, StreamingRequestHandlerFallback(LiveTail, ReplayTail, circuit_breaker=breaker)
    )
    items = [r.source async for r in mediator.stream(Tail(fail_after=0))]
    assert items == ["replay 0", "replay 1"]
    assert journal.entries == [
        "live closed",
        "event replay 0",
        "event replay 1",
        "replay closed",
        "event replay done",
    ]


async def test_stream_failure_mid_stream_reaches_consumer() -> None:
    journal = Journal()
    breaker = CircuitBreaker(fail_max=1, store=MemoryBreakerStore(lambda: 0.0))
    mediator = make_streaming(
        journal, StreamingRequestHandlerFallback(LiveTail, ReplayTail, circuit_breaker=breaker)
    )
    items = []
    with pytest.raises(ConnectionError, match="died at 2"):
        async for r in mediator.stream(Tail(fail_after=2)):
            items.append(r.source)
    assert items == ["live 0", "live 1"]
    assert "live closed" in journal.entries
    # the mid-stream failure was counted: the circuit is open, the fallback streams
    journal.entries.clear()
    items = [r.source async for r in mediator.stream(Tail(fail_after=None))]
    assert items == ["replay 0", "replay 1"]
    assert "live closed" not in journal.entries


async def test_stream_primary_success_and_early_break() -> None:
    journal = Journal()
    breaker = CircuitBreaker()
    mediator = make_streaming(
        journal, StreamingRequestHandlerFallback(LiveTail, ReplayTail, circuit_breaker=breaker)
    )
    assert [r.source async for r in mediator.stream(Tail(fail_after=None))] == [
        "live 0",
        "live 1",
        "live 2",
    ]
    journal.entries.clear()
    async with mediator.stream(Tail(fail_after=None)) as rows:
        async for _ in rows:
            break
    assert journal.entries == ["event live 0", "live closed"]


async def test_stream_fallback_without_breaker_and_non_matching_error() -> None:
    journal = Journal()
    mediator = make_streaming(
        journal,
        StreamingRequestHandlerFallback(LiveTail, ReplayTail, failure_exceptions=(TimeoutError,)),
    )
    with pytest.raises(ConnectionError):
        async for _ in mediator.stream(Tail(fail_after=0)):
            pass
    mediator = make_streaming(journal, StreamingRequestHandlerFallback(LiveTail, ReplayTail))
    items = []
    with pytest.raises(ConnectionError, match="died at 1"):
        async for r in mediator.stream(Tail(fail_after=1)):
            items.append(r.source)
    assert items == ["live 0"]


class EmptyTail(StreamingRequestHandler[Tail, Rates]):
    async def handle(self, request: Tail) -> AsyncIterator[Rates]:
        if False:
            yield Rates("never")


async def test_empty_primary_stream_is_a_success() -> None:
    breaker = CircuitBreaker()
    mediator = make_streaming(
        Journal(), StreamingRequestHandlerFallback(EmptyTail, ReplayTail, circuit_breaker=breaker)
    )
    assert [r async for r in mediator.stream(Tail())] == []


def test_streaming_fallback_handler_types_and_validation() -> None:
    fallback = StreamingRequestHandlerFallback(LiveTail, ReplayTail)
    assert list(fallback.handler_types()) == [LiveTail, ReplayTail]
    requests = anycqrs.RequestMap()
    with pytest.raises(BindingError, match="not GetRates"):
        requests.bind(GetRates, fallback)


def test_streaming_mediator_rejects_non_streaming_routes() -> None:
    requests = anycqrs.RequestMap()
    requests.bind(GetRates, RequestHandlerFallback(LiveRates, CacheRates))
    with pytest.raises(BindingError, match="does not stream"):
        bootstrap_streaming(queries_mapper=requests)


class ScriptedBreaker:
    """A `CircuitBreakerLike` that is not an `anycqrs.CircuitBreaker`."""

    def __init__(self) -> None:
        self.open = False
        self.calls: list[str] = []

    async def is_open(self, name: str) -> bool:
        self.calls.append(f"is_open {name.rsplit('.', 1)[-1]}")
        return self.open

    async def record_success(self, name: str) -> None:
        self.calls.append(f"success {name.rsplit('.', 1)[-1]}")

    async def record_failure(self, name: str, error: BaseException) -> None:
        self.calls.append(f"failure {name.rsplit('.', 1)[-1]} {type(error).__name__}")


async def test_any_circuit_breaker_like_drives_a_request_fallback() -> None:
    journal = Journal()
    breaker = ScriptedBreaker()
    mediator = make(journal, RequestHandlerFallback(LiveRates, CacheRates, circuit_breaker=breaker))
    assert await mediator.send(GetRates()) == CachedRates("cache")
    assert breaker.calls == ["is_open LiveRates", "failure LiveRates ConnectionError"]
    breaker.open = True
    breaker.calls.clear()
    journal.entries.clear()
    assert await mediator.send(GetRates()) == CachedRates("cache")
    assert journal.entries == ["cache", "served by cache"]  # primary not tried
    assert breaker.calls == ["is_open LiveRates"]
    breaker.open = False
    journal.error = None
    breaker.calls.clear()
    assert await mediator.send(GetRates()) == Rates("live")
    assert breaker.calls == ["is_open LiveRates", "success LiveRates"]
