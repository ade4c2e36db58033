"""Helpers of the consumer-layer tests: a handler that records what it saw and can
be told to fail or block, and a sleep that never waits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
import attrs

import anycqrs
from anycqrs.events import EventHandler


@attrs.frozen
class OrderPaid:
    order_id: int


class Seen:
    """What the handler saw; `behaviour(event, call)` may raise or return an awaitable."""

    def __init__(self) -> None:
        self.events: list[anycqrs.NotificationEvent[OrderPaid]] = []
        self.calls = 0
        self.running = 0
        self.most_running = 0
        self.behaviour: Callable[[anycqrs.NotificationEvent[OrderPaid], int], Any] | None = None

    def ids(self) -> list[int]:
        return [event.payload.order_id for event in self.events]


class RecordPaid(EventHandler[anycqrs.NotificationEvent[OrderPaid]]):
    def __init__(self, seen: Seen) -> None:
        self.seen = seen

    async def handle(self, event: anycqrs.NotificationEvent[OrderPaid]) -> None:
        seen = self.seen
        seen.calls += 1
        seen.running += 1
        seen.most_running = max(seen.most_running, seen.running)
        try:
            if seen.behaviour is not None:
                result = seen.behaviour(event, seen.calls)
                if result is not None:
                    await result
            await anyio.lowlevel.checkpoint()
        finally:
            seen.running -= 1
        seen.events.append(event)


class FakeSleep:
    """An injected `sleep`: records the delays, never waits."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await anyio.lowlevel.checkpoint()


def paid(order_id: int, key: str | None = None) -> anycqrs.NotificationEvent[OrderPaid]:
    return anycqrs.NotificationEvent(payload=OrderPaid(order_id), topic="orders", key=key)
