"""Event handler fallbacks: `EventHandlerFallback` on the one fallback mechanism."""

from __future__ import annotations

from typing import Any

import attrs
import lagom
import pytest

import anycqrs
from anycqrs._breaker import CircuitBreaker, MemoryBreakerStore
from anycqrs.errors import BindingError
from anycqrs.events import EventHandlerFallback
from anycqrs.events.bootstrap import bootstrap as bootstrap_events

pytestmark = pytest.mark.anyio


class Journal:
    def __init__(self) -> None:
        self.entries: list[str] = []
        self.error: Exception | None = ConnectionError("sms gateway down")


@attrs.frozen
class OrderPaid(anycqrs.DomainEvent):
    order_id: int


@attrs.frozen
class Notified(anycqrs.DomainEvent):
    by: str


class SendSms(anycqrs.EventHandler[OrderPaid]):
    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    async def handle(self, event: OrderPaid) -> None:
        self.journal.entries.append("sms")
        self.emit(Notified("sms"))
        if self.journal.error is not None:
            raise self.journal.error


class SendEmail(anycqrs.EventHandler[OrderPaid]):
    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    async def handle(self, event: OrderPaid) -> None:
        self.journal.entries.append("email")
        self.emit(Notified("email"))


class OnNotified(anycqrs.EventHandler[Notified]):
    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    async def handle(self, event: Notified) -> None:
        self.journal.entries.append(f"notified by {event.by}")


def make_events(journal: Journal, binding: Any) -> anycqrs.EventMediator:
    container = lagom.Container()
    container[Journal] = journal

    def bind(events: anycqrs.EventMap) -> None:
        events.bind(OrderPaid, binding)
        events.bind(Notified, OnNotified)

    return bootstrap_events(di_container=container, events_mapper=bind)


async def test_event_fallback() -> None:
    journal = Journal()
    mediator = make_events(journal, EventHandlerFallback(SendSms, SendEmail))
    await mediator.send(OrderPaid(1))
    assert journal.entries == ["sms", "email", "notified by email"]
    journal.error = None
    journal.entries.clear()
    await mediator.send(OrderPaid(2))
    assert journal.entries == ["sms", "notified by sms"]


async def test_event_fallback_with_breaker() -> None:
    journal = Journal()
    breaker = CircuitBreaker(fail_max=1, store=MemoryBreakerStore(lambda: 0.0))
    mediator = make_events(
        journal, EventHandlerFallback(SendSms, SendEmail, circuit_breaker=breaker)
    )
    await mediator.send(OrderPaid(1))
    journal.entries.clear()
    await mediator.send(OrderPaid(2))
    assert journal.entries == ["email", "notified by email"]


async def test_event_fallback_other_errors_propagate() -> None:
    journal = Journal()
    mediator = make_events(
        journal, EventHandlerFallback(SendSms, SendEmail, failure_exceptions=[TimeoutError])
    )
    with pytest.raises(ConnectionError):
        await mediator.send(OrderPaid(1))


class OnOther(anycqrs.EventHandler[Notified]):
    async def handle(self, event: Notified) -> None:
        pass


def test_event_fallback_type_checks() -> None:
    with pytest.raises(BindingError, match="handles OrderPaid but the fallback"):
        EventHandlerFallback(SendSms, OnOther)
    with pytest.raises(BindingError, match="not an event handler"):
        EventHandlerFallback(SendSms, 42)
    events = anycqrs.EventMap()
    with pytest.raises(BindingError, match="handles OrderPaid, not Notified"):
        events.bind(Notified, EventHandlerFallback(SendSms, SendEmail))
    nested = EventHandlerFallback(EventHandlerFallback(SendSms, SendEmail), SendEmail)
    assert list(nested.handler_types()) == [SendSms, SendEmail, SendEmail]
    events.bind(OrderPaid, nested)


async def test_nested_event_fallbacks() -> None:
    journal = Journal()

    class Broken(anycqrs.EventHandler[OrderPaid]):
        async def handle(self, event: OrderPaid) -> None:
            raise RuntimeError("broken")

    binding = EventHandlerFallback(EventHandlerFallback(SendSms, Broken), SendEmail)
    mediator = make_events(journal, binding)
    await mediator.send(OrderPaid(1))
    assert journal.entries == ["sms", "email", "notified by email"]


async def test_event_fallback_handlers_each_run_through_the_middlewares() -> None:
    journal = Journal()
    seen: list[Any] = []

    class Record:
        async def __call__(self, message: Any, call_next: Any) -> Any:
            result = await call_next(message)
            seen.append((type(message).__name__, result))
            return result

    container = lagom.Container()
    container[Journal] = journal
    events = anycqrs.EventMap()
    events.bind(OrderPaid, EventHandlerFallback(SendSms, SendEmail))
    events.bind(Notified, OnNotified)
    mediator = bootstrap_events(
        di_container=container, events_mapper=events, middlewares=[Record()]
    )
    await mediator.send(OrderPaid(1))
    assert journal.entries == ["sms", "email", "notified by email"]
    # the failed primary's call raised through the chain; the fallback's and the
    # follow-up's calls returned what `handle` returned (follow-ups are taken after)
    assert seen == [("OrderPaid", None), ("Notified", None)]
