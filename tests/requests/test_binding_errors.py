"""Bindings rejected clearly; chains as fallback primaries; resolution errors named."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import attrs
import lagom
import lagom.exceptions
import pytest

import anycqrs
from anycqrs.errors import AnyCQRSError, BindingError, HandlerResolutionError
from anycqrs.events.bootstrap import bootstrap as bootstrap_events
from anycqrs.requests.bootstrap import bootstrap, bootstrap_streaming


@attrs.frozen
class Priced(anycqrs.DomainEvent):
    amount: int


@attrs.frozen
class Quote(anycqrs.Request):
    amount: int


class QuoteHandler(anycqrs.RequestHandler[Quote, int]):
    async def handle(self, request: Quote) -> int:
        return request.amount


class PricedHandler(anycqrs.EventHandler[Priced]):
    async def handle(self, event: Priced) -> None:
        return None


class TestEventFallbackTypes:
    """`EventHandlerFallback` takes event handlers only, and says which is wrong."""

    def test_request_handler_as_primary_is_rejected_at_construction(self) -> None:
        with pytest.raises(BindingError, match="QuoteHandler") as caught:
            anycqrs.EventHandlerFallback(QuoteHandler, PricedHandler)
        assert "PricedHandler" in str(caught.value) or "EventHandler" in str(caught.value)

    def test_request_handler_as_fallback_is_rejected(self) -> None:
        with pytest.raises(BindingError, match="QuoteHandler"):
            anycqrs.EventHandlerFallback(PricedHandler, QuoteHandler)

    def test_event_map_rejects_a_request_handler(self) -> None:
        with pytest.raises(BindingError, match="Priced: QuoteHandler is a RequestHandler"):
            anycqrs.EventMap().bind(Priced, QuoteHandler)  # type: ignore[arg-type]


class TestReadableBindingErrors:
    """Binding errors name classes by qualified name, never `<class '...'>`."""

    def test_event_bound_in_a_request_map(self) -> None:
        with pytest.raises(BindingError) as caught:
            anycqrs.RequestMap().bind(Priced, QuoteHandler)  # type: ignore[arg-type]
        assert "<class" not in str(caught.value)
        assert "Priced" in str(caught.value)

    def test_request_bound_in_an_event_map(self) -> None:
        with pytest.raises(BindingError) as caught:
            anycqrs.EventMap().bind(Quote, PricedHandler)  # type: ignore[arg-type]
        assert "<class" not in str(caught.value)
        assert "Quote" in str(caught.value)

    def test_a_handler_that_is_not_a_class(self) -> None:
        with pytest.raises(BindingError) as caught:
            anycqrs.RequestMap().bind(Quote, QuoteHandler())  # type: ignore[arg-type]
        assert "<" not in str(caught.value)


class Cheap(anycqrs.CORRequestHandler[Quote, int]):
    async def handle(self, request: Quote) -> int | None:
        if request.amount < 10:
            return 1
        return await self.next(request)


class Dear(anycqrs.CORRequestHandler[Quote, int]):
    async def handle(self, request: Quote) -> int | None:
        if request.amount > 1000:
            raise ConnectionError("pricing service down")
        return 2


class Fixed(anycqrs.RequestHandler[Quote, int]):
    async def handle(self, request: Quote) -> int:
        return 3


@pytest.mark.anyio
async def test_a_chain_can_be_a_fallback_primary() -> None:
    fallback = anycqrs.RequestHandlerFallback(
        [Cheap, Dear], Fixed, failure_exceptions=ConnectionError
    )
    mediator = bootstrap(queries_mapper=lambda requests: requests.bind(Quote, fallback))
    assert await mediator.send(Quote(5)) == 1
    assert await mediator.send(Quote(50)) == 2
    assert await mediator.send(Quote(5000)) == 3


class Database:
    def __init__(self, dsn: str) -> None:  # a str the container can't invent
        self.dsn = dsn


class NeedsDatabase(anycqrs.RequestHandler[Quote, int]):
    def __init__(self, database: Database) -> None:
        self.database = database

    async def handle(self, request: Quote) -> int:
        return 0


class EventNeedsDatabase(anycqrs.EventHandler[Priced]):
    def __init__(self, database: Database) -> None:
        self.database = database

    async def handle(self, event: Priced) -> None:
        return None


@pytest.mark.anyio
class TestUnresolvableDependency:
    """A dependency the container can't build is an anycqrs error naming all three."""

    async def test_request_handler(self) -> None:
        mediator = bootstrap(
            di_container=lagom.Container(),
            commands_mapper=lambda requests: requests.bind(Quote, NeedsDatabase),
        )
        with pytest.raises(AnyCQRSError) as caught:
            await mediator.send(Quote(1))
        message = str(caught.value)
        assert "NeedsDatabase" in message and "Quote" in message and "Database" in message
        assert "lagom" not in type(caught.value).__module__

    async def test_event_handler(self) -> None:
        mediator = bootstrap_events(
            di_container=lagom.Container(),
            events_mapper=lambda events: events.bind(Priced, EventNeedsDatabase),
        )
        with pytest.raises(AnyCQRSError) as caught:
            await mediator.send(Priced(1))
        message = str(caught.value)
        assert "EventNeedsDatabase" in message and "Priced" in message and "Database" in message


class TestRequestSideRejectsEventHandlers:
    """The mirror image: request maps and fallbacks take no event handler."""

    def test_request_map_rejects_an_event_handler(self) -> None:
        with pytest.raises(BindingError, match="PricedHandler is an EventHandler"):
            anycqrs.RequestMap().bind(Quote, PricedHandler)

    def test_request_fallback_rejects_an_event_handler(self) -> None:
        with pytest.raises(BindingError, match="PricedHandler is an EventHandler"):
            anycqrs.RequestHandlerFallback(QuoteHandler, PricedHandler)

    def test_fallback_repr_names_classes(self) -> None:
        fallback = anycqrs.RequestHandlerFallback([Cheap, Dear], Fixed)
        assert repr(fallback) == "RequestHandlerFallback([Cheap, Dear], Fixed)"


@pytest.mark.anyio
async def test_a_chain_fallback_primary_has_one_circuit() -> None:
    breaker = anycqrs.CircuitBreaker(fail_max=1, reset_timeout=60)
    fallback = anycqrs.RequestHandlerFallback(
        [Cheap, Dear], Fixed, failure_exceptions=ConnectionError, circuit_breaker=breaker
    )
    mediator = bootstrap(queries_mapper=lambda requests: requests.bind(Quote, fallback))
    assert await mediator.send(Quote(5000)) == 3  # the chain fails: the circuit opens
    assert await breaker.is_open(f"{__name__}.Cheap+{__name__}.Dear")
    assert await mediator.send(Quote(5)) == 3  # open: the chain is not tried


class DeepNeed(anycqrs.CORRequestHandler[Quote, int]):
    def __init__(self, database: Database) -> None:
        self.database = database

    async def handle(self, request: Quote) -> int | None:
        return 4


class StreamNeedsDatabase(anycqrs.StreamingRequestHandler[Quote, int]):
    def __init__(self, database: Database) -> None:
        self.database = database

    async def handle(self, request: Quote) -> AsyncIterator[int]:
        yield 1


def assert_names_all_three(error: BaseException, handler: type, message: type) -> None:
    assert isinstance(error, HandlerResolutionError)
    assert isinstance(error, LookupError)
    assert error.handler_type is handler
    assert error.message_type is message
    assert error.missing is Database
    text = str(error)
    assert handler.__qualname__ in text and message.__qualname__ in text
    assert "<class" not in text
    assert isinstance(error.__cause__, lagom.exceptions.UnresolvableType)


@pytest.mark.anyio
class TestResolutionErrorEverywhere:
    """Every path that builds a handler names the handler, the message and the dependency."""

    async def test_with_middlewares(self) -> None:
        class Passes:
            async def __call__(self, message: object, call_next: Any) -> Any:
                return await call_next(message)

        mediator = bootstrap(
            middlewares=[Passes()],
            commands_mapper=lambda requests: requests.bind(Quote, NeedsDatabase),
        )
        with pytest.raises(HandlerResolutionError) as caught:
            await mediator.send(Quote(1))
        assert_names_all_three(caught.value, NeedsDatabase, Quote)

    async def test_a_chain_link_reached_later(self) -> None:
        mediator = bootstrap(
            queries_mapper=lambda requests: requests.bind(Quote, [Cheap, DeepNeed])
        )
        assert await mediator.send(Quote(1)) == 1  # DeepNeed is never built
        with pytest.raises(HandlerResolutionError) as caught:
            await mediator.send(Quote(50))
        assert_names_all_three(caught.value, DeepNeed, Quote)

    async def test_a_stream(self) -> None:
        mediator = bootstrap_streaming(
            queries_mapper=lambda requests: requests.bind(Quote, StreamNeedsDatabase)
        )
        with pytest.raises(HandlerResolutionError) as caught:
            async with mediator.stream(Quote(1)) as items:
                async for _ in items:
                    pass
        assert_names_all_three(caught.value, StreamNeedsDatabase, Quote)

    @pytest.mark.parametrize("concurrent", [False, True])
    async def test_an_event_handler_among_others(self, concurrent: bool) -> None:
        def bind(events: anycqrs.EventMap) -> None:
            events.bind(Priced, PricedHandler)
            events.bind(Priced, EventNeedsDatabase)

        mediator = bootstrap_events(events_mapper=bind, concurrent_event_handle_enable=concurrent)
        with pytest.raises(HandlerResolutionError) as caught:
            await mediator.send(Priced(1))
        assert_names_all_three(caught.value, EventNeedsDatabase, Priced)

    async def test_a_handler_constructor_error_is_not_wrapped(self) -> None:
        class Broken(anycqrs.RequestHandler[Quote, int]):
            def __init__(self) -> None:
                raise RuntimeError("no")

            async def handle(self, request: Quote) -> int:
                return 0

        mediator = bootstrap(commands_mapper=lambda requests: requests.bind(Quote, Broken))
        with pytest.raises(RuntimeError, match="no"):
            await mediator.send(Quote(1))
