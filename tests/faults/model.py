"""The event every scenario sends, and the handler that records it in a ledger."""

from __future__ import annotations

from typing import Any

import anyio
import attrs
import lagom

import anycqrs
from anycqrs.events import EventHandler, EventMap, EventMediator

from .ledger import LedgerFile, read_lines

KEYS = 16
"""Events are spread over this many ordering keys: event ``n`` has key
``n % KEYS`` and is the ``n // KEYS``-th event of its key."""


@attrs.frozen
class Tick:
    """Event number ``n`` of a scenario."""

    n: int
    pad: str = ""


def order_of(n: int) -> tuple[object, int]:
    return n % KEYS, n // KEYS


def tick(n: int, topic: str, **kw: Any) -> anycqrs.NotificationEvent[Tick]:
    return anycqrs.NotificationEvent(payload=Tick(n), topic=topic, key=str(n % KEYS), **kw)


@attrs.frozen
class HandlerSettings:
    ledger: LedgerFile
    delay: float = 0.0


class RecordTick(EventHandler[anycqrs.NotificationEvent[Tick]]):
    """Appends ``n`` to the ledger once the event is handled."""

    def __init__(self, settings: HandlerSettings) -> None:
        self.settings = settings

    async def handle(self, event: anycqrs.NotificationEvent[Tick]) -> None:
        if self.settings.delay:
            await anyio.sleep(self.settings.delay)
        n = event.payload.n
        # a payload that decoded to another type is recorded as such
        self.settings.ledger.write(n if type(n) is int else f"odd:{n!r}")


def recording_mediator(ledger: str, delay: float = 0.0) -> EventMediator:
    container = lagom.Container()
    container[HandlerSettings] = HandlerSettings(LedgerFile(ledger), delay)
    events = EventMap()
    events.bind(anycqrs.NotificationEvent[Tick], RecordTick)
    return EventMediator(events, container=container)


def handled(ledger: str) -> list[int]:
    """The ``n`` of every handled event, in handling order."""
    return [int(fields[0]) for fields in read_lines(ledger) if not fields[0].startswith("odd:")]


def odd(ledger: str) -> list[str]:
    """Handled events whose ``n`` was not an ``int`` (a wrong type let through)."""
    return [" ".join(fields)[4:] for fields in read_lines(ledger) if fields[0].startswith("odd:")]
