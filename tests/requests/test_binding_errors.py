"""Bindings rejected clearly; chains as fallback primaries; resolution errors named."""

from __future__ import annotations

import attrs
import lagom
import pytest

import anycqrs
from anycqrs.errors import AnyCQRSError, BindingError
from anycqrs.events.bootstrap import bootstrap as bootstrap_events
from anycqrs.requests.bootstrap import bootstrap


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
        with pytest.raises(BindingError, match="QuoteHandler"):
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
