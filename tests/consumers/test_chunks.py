"""The `ChunkSink` seam of the lanes: a sink's chunk context is entered
around each lane chunk; the chunk's items are settled only after it exited
cleanly; an exit that raises has the whole chunk handled again by the retry
policy, then stops the consumer with nothing settled; an item's own failure
is retried and dead-lettered inside the chunk as without the seam."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import anyio
import pytest

import anycqrs
from anycqrs import RetryPolicy
from anycqrs.consumers import ChunkSink, InMemoryTransport, consume
from anycqrs.errors import MessageHandlingError
from anycqrs.events import EventMediator

from .consumer_helpers import FakeSleep, OrderPaid, Seen, paid

pytestmark = pytest.mark.anyio


class Chunked:
    """The mediator as a `ChunkSink` whose chunk exit can be told to fail."""

    def __init__(self, mediator: EventMediator, transport: InMemoryTransport) -> None:
        self.mediator = mediator
        self.transport = transport
        self.event_map = mediator.event_map
        self.failing_exits = 0
        self.log: list[str] = []

    async def send(self, event: Any) -> None:
        await self.mediator.send(event)

    def chunk(self) -> AbstractAsyncContextManager[None] | None:
        return self._chunk()

    @asynccontextmanager
    async def _chunk(self) -> AsyncIterator[None]:
        self.log.append(f"enter settled={len(self.transport.settled)}")
        yield
        if self.failing_exits:
            self.failing_exits -= 1
            self.log.append("exit fails")
            raise ConnectionError("commit failed")
        self.log.append("exit")


def _transport(count: int) -> InMemoryTransport:
    transport = InMemoryTransport()
    for i in range(count):
        transport.put_event(paid(i))  # no key: one lane, one chunk
    transport.close()
    return transport


async def test_settled_after_the_exit_and_retried_as_a_whole(
    mediator: EventMediator, seen: Seen
) -> None:
    transport = _transport(3)
    sink = Chunked(mediator, transport)
    assert isinstance(sink, ChunkSink)
    sink.failing_exits = 1
    sleep = FakeSleep()
    with anyio.fail_after(10):
        await consume(sink, transport, concurrency=1, retry=RetryPolicy(attempts=3), sleep=sleep)
    assert seen.ids() == [0, 1, 2, 0, 1, 2]  # the chunk handled again
    assert sink.log == ["enter settled=0", "exit fails", "enter settled=0", "exit"]
    assert [record.offset for record in transport.settled] == [0, 1, 2]  # once
    assert len(sleep.delays) == 1


async def test_exit_keeps_failing_stops_with_nothing_settled(
    mediator: EventMediator, seen: Seen
) -> None:
    transport = _transport(2)
    sink = Chunked(mediator, transport)
    sink.failing_exits = 10
    with anyio.fail_after(10), pytest.raises(MessageHandlingError) as caught:
        await consume(
            sink, transport, concurrency=1, retry=RetryPolicy(attempts=2), sleep=FakeSleep()
        )
    assert isinstance(caught.value.__cause__, ConnectionError)
    assert caught.value.attempts == 2
    assert seen.ids() == [0, 1, 0, 1]
    assert transport.settled == []


async def test_item_failure_is_handled_inside_the_chunk(
    mediator: EventMediator, seen: Seen
) -> None:
    def fail_one(event: anycqrs.NotificationEvent[OrderPaid], call: int) -> None:
        if event.payload.order_id == 1:
            raise RuntimeError("1 fails")

    seen.behaviour = fail_one
    transport = _transport(3)
    sink = Chunked(mediator, transport)
    with anyio.fail_after(10):
        await consume(
            sink, transport, concurrency=1, retry=RetryPolicy(attempts=2), sleep=FakeSleep()
        )
    assert seen.ids() == [0, 2]
    assert sink.log == ["enter settled=0", "exit"]  # one chunk, not handled again
    assert [d.record.offset for d in transport.dead_letters] == [1]
    assert [record.offset for record in transport.settled] == [0, 1, 2]


async def test_no_chunk_context_without_a_batching_inbox(mediator: EventMediator) -> None:
    assert mediator.chunk() is None
