"""The event every scenario sends, the handler that records it in a ledger,
and a producer that sends it at a steady rate."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import anyio
import attrs
import lagom

import anycqrs
from anycqrs.brokers import Message
from anycqrs.events import EventHandler, EventMap, EventMediator

from .harness import read_topic
from .ledger import LedgerFile, read_lines

KEYS = 16
"""Events are spread over this many ordering keys: event ``n`` has key
``n % KEYS`` and is the ``n // KEYS``-th event of its key."""


@attrs.frozen
class Tick:
    """Event number ``n`` of a scenario."""

    n: int


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


def ticks_on(bootstrap: str, topic: str, partitions: int) -> list[int]:
    """The ``n`` of every event on a Kafka topic, in offset order per partition."""
    return [
        json.loads(msg.value())["payload"]["n"] for msg in read_topic(bootstrap, topic, partitions)
    ]


def odd(ledger: str) -> list[str]:
    """Handled events whose ``n`` was not an ``int`` (a wrong type let through)."""
    return [" ".join(fields)[4:] for fields in read_lines(ledger) if fields[0].startswith("odd:")]


class Producer:
    """Produces events ``0, 1, 2 ...`` at ``rate`` per second in a thread
    (``send_many``, batches of 20, a failed batch published again) until
    stopped; ``sent`` holds the confirmed ones.

    Args:
        broker: makes the broker (an async context manager) in the thread.
    """

    def __init__(self, broker: Callable[[], Any], topic: str, rate: float) -> None:
        self.broker, self.topic, self.rate = broker, topic, rate
        self.sent: list[int] = []
        self.errors: list[str] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=anyio.run, args=(self._run,), daemon=True)

    async def _run(self) -> None:
        n = 0
        async with self.broker() as broker:
            started = time.monotonic()
            while not self.stopping.is_set():
                batch = list(range(n, n + 20))
                events = [Message.from_event(tick(i, self.topic)) for i in batch]
                try:
                    await broker.send_many(events)
                except Exception as error:  # counted; the batch is published again
                    self.errors.append(repr(error))
                    await anyio.sleep(0.1)
                    continue
                self.sent.extend(batch)
                n += 20
                ahead = started + n / self.rate - time.monotonic()
                if ahead > 0:
                    await anyio.sleep(ahead)

    def __enter__(self) -> Producer:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stopping.set()
        self.thread.join(120)
