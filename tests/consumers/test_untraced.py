"""A transport without tracing (only the `Transport` protocol, no
`message_headers` / `span_attributes`): the lanes run their plain loop, with
the same guarantees — per-key order, retries, dead letters, poison skipped,
settled only when handled — and an inbox chunk too."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import attrs
import lagom
import pytest

import anycqrs
from anycqrs import RetryPolicy
from anycqrs.consumers import EventDecoder, Inbound, InMemoryTransport, Transport, consume
from anycqrs.events.bootstrap import bootstrap
from anycqrs.inbox import InboxTransaction, SqliteInbox
from anycqrs.observability._messaging import TracedTransport

pytestmark = pytest.mark.anyio


@attrs.frozen
class Shipped:
    order_id: int


class Untraced:
    """The five `Transport` methods of an `InMemoryTransport`, nothing more."""

    def __init__(self, inner: InMemoryTransport) -> None:
        self.inner = inner

    async def fetch(self, decode: EventDecoder, /) -> Sequence[Inbound]:
        return await self.inner.fetch(decode)

    def settle(self, items: Sequence[Inbound], /) -> None:
        self.inner.settle(items)

    def stale(self, item: Inbound, /) -> bool:
        return self.inner.stale(item)

    def location(self, item: Inbound, /) -> str:
        return self.inner.location(item)

    async def dead_letter(self, item: Inbound, error: BaseException, attempts: int, /) -> bool:
        return await self.inner.dead_letter(item, error, attempts)


class Seen:
    def __init__(self) -> None:
        self.calls: list[int] = []
        self.fail: set[int] = set()


class Ship(anycqrs.EventHandler[anycqrs.NotificationEvent[Shipped]]):
    def __init__(self, seen: Seen) -> None:
        self.seen = seen

    async def handle(self, event: anycqrs.NotificationEvent[Shipped]) -> None:
        order_id = event.payload.order_id
        self.seen.calls.append(order_id)
        if order_id in self.seen.fail:
            raise RuntimeError(f"order {order_id} fails")


def shipped(order_id: int, key: str) -> anycqrs.NotificationEvent[Shipped]:
    return anycqrs.NotificationEvent(payload=Shipped(order_id), topic="orders", key=key)


def filled(*events: anycqrs.NotificationEvent[Shipped]) -> InMemoryTransport:
    inner = InMemoryTransport(batch_size=4)
    for event in events:
        inner.put_event(event)
    inner.put(b"{not json", event_name="Shipped", key="a")  # poison
    inner.close()
    return inner


def test_the_wrapper_is_untraced() -> None:
    untraced = Untraced(InMemoryTransport())
    assert isinstance(untraced, Transport)
    assert not isinstance(untraced, TracedTransport)


async def test_plain_loop_keeps_order_retries_and_dead_letters() -> None:
    seen = Seen()
    seen.fail = {3}
    container = lagom.Container()
    container[Seen] = seen
    mediator = bootstrap(
        di_container=container,
        events_mapper=lambda events: events.bind(anycqrs.NotificationEvent[Shipped], Ship),
    )
    inner = filled(*(shipped(i, "ab"[i % 2]) for i in range(1, 9)))
    with anyio.fail_after(30):
        await consume(
            mediator, Untraced(inner), concurrency=2, retry=RetryPolicy(attempts=2, delay=0)
        )
    # per key, in order; order 3 ran twice (one retry), then went aside
    assert [i for i in seen.calls if i % 2] == [1, 3, 3, 5, 7]
    assert [i for i in seen.calls if not i % 2] == [2, 4, 6, 8]
    # order 3 and the poison (two lanes: in either order)
    assert sorted(d.record.offset for d in inner.dead_letters) == [2, 8]
    assert sorted(record.offset for record in inner.settled) == list(range(9))


class Effect(anycqrs.EventHandler[anycqrs.NotificationEvent[Shipped]]):
    def __init__(self, tx: InboxTransaction, seen: Seen) -> None:
        self.tx = tx
        self.seen = seen

    async def handle(self, event: anycqrs.NotificationEvent[Shipped]) -> None:
        self.seen.calls.append(event.payload.order_id)
        await self.tx.run(
            lambda connection, n: connection.execute("INSERT INTO effects VALUES (?)", (n,)),
            event.payload.order_id,
        )


async def test_plain_loop_in_an_inbox_chunk(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "app.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE effects (order_id INTEGER NOT NULL)")
    seen = Seen()
    container = lagom.Container()
    container[Seen] = seen
    inbox = SqliteInbox(path, batch=True)
    mediator = bootstrap(
        di_container=container,
        events_mapper=lambda events: events.bind(anycqrs.NotificationEvent[Shipped], Effect),
        inbox=inbox,
    )
    events = [shipped(i, "a") for i in range(1, 5)]
    try:
        for _ in range(2):  # the second delivery: every row a duplicate, nothing runs
            inner = filled(*events)
            with anyio.fail_after(30):
                await consume(mediator, Untraced(inner), concurrency=1)
            assert sorted(record.offset for record in inner.settled) == list(range(5))
    finally:
        inbox.close()
    assert seen.calls == [1, 2, 3, 4]
    with sqlite3.connect(path) as connection:
        rows: Any = connection.execute("SELECT order_id FROM effects ORDER BY rowid").fetchall()
    assert rows == [(1,), (2,), (3,), (4,)]
