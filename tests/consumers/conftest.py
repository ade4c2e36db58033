"""Fixtures of the consumer-layer tests: an `EventMediator` whose handler records
what it saw, and a sleep that never waits."""

from __future__ import annotations

import lagom
import pytest

import anycqrs
from anycqrs.events import EventMap, EventMediator

from .consumer_helpers import FakeSleep, OrderPaid, RecordPaid, Seen


@pytest.fixture
def seen() -> Seen:
    return Seen()


@pytest.fixture
def mediator(seen: Seen) -> EventMediator:
    container = lagom.Container()
    container[Seen] = seen
    events = EventMap()
    events.bind(anycqrs.NotificationEvent[OrderPaid], RecordPaid)
    return EventMediator(events, container=container)


@pytest.fixture
def sleep() -> FakeSleep:
    return FakeSleep()
