"""Helpers shared by the broker tests: payloads, a recording handler, and
plain confluent-kafka clients (run in worker threads) for interop checks."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import anyio.to_thread
import attrs
import lagom
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

import anycqrs
from anycqrs.events import EventHandler, EventMap, EventMediator

# Tansu waits about half the session timeout for members to join: ~23 s with
# librdkafka's defaults, ~3.5 s at 6 s, ~1.7 s at 2 s (heartbeats every 100 ms
# from librdkafka's own thread keep a 2 s session alive on a loaded machine).
GROUP_SETTINGS = {"session.timeout.ms": 2000, "heartbeat.interval.ms": 100}


@attrs.frozen
class OrderPaid:
    order_id: int
    amount: float = 1.0


@attrs.frozen
class OrderShipped:
    __event_name__ = "orders.shipped"
    order_id: int


class Recorder:
    """What the handlers saw, and a hook to make them fail or block."""

    def __init__(self) -> None:
        self.events: list[anycqrs.NotificationEvent[Any]] = []
        self.calls = 0
        self.behaviour: Callable[[anycqrs.NotificationEvent[Any], int], Any] | None = None
        self._waiters: list[tuple[Callable[[], bool], anyio.Event]] = []

    def notify(self) -> None:
        for predicate, event in list(self._waiters):
            if predicate():
                event.set()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 30.0) -> None:
        if predicate():
            return
        event = anyio.Event()
        self._waiters.append((predicate, event))
        with anyio.fail_after(timeout):
            await event.wait()

    async def wait_count(self, count: int, timeout: float = 30.0) -> None:
        await self.wait_for(lambda: len(self.events) >= count, timeout)

    def ids(self) -> list[int]:
        return [e.payload.order_id for e in self.events]


class RecordPaid(EventHandler[anycqrs.NotificationEvent[OrderPaid]]):
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    async def handle(self, event: anycqrs.NotificationEvent[OrderPaid]) -> None:
        recorder = self.recorder
        recorder.calls += 1
        if recorder.behaviour is not None:
            result = recorder.behaviour(event, recorder.calls)
            if result is not None:
                await result
        recorder.events.append(event)
        recorder.notify()


class RecordShipped(EventHandler[anycqrs.NotificationEvent[OrderShipped]]):
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    async def handle(self, event: anycqrs.NotificationEvent[OrderShipped]) -> None:
        self.recorder.events.append(event)
        self.recorder.notify()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def mediator(recorder: Recorder) -> EventMediator:
    container = lagom.Container()
    container[Recorder] = recorder
    events = EventMap()
    events.bind(anycqrs.NotificationEvent[OrderPaid], RecordPaid)
    events.bind(anycqrs.NotificationEvent[OrderShipped], RecordShipped)
    return EventMediator(events, container=container)


def consumer_config(bootstrap: str, group: str, **extra: Any) -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        **GROUP_SETTINGS,
        **extra,
    }


def paid(
    order_id: int, topic: str, key: str | None = None, **kw: Any
) -> anycqrs.NotificationEvent[OrderPaid]:
    return anycqrs.NotificationEvent(payload=OrderPaid(order_id), topic=topic, key=key, **kw)


def _plain_produce(bootstrap: str, records: list[tuple[str, Any, Any, Any]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    errors: list[Any] = []

    def report(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(err)

    for topic, value, key, headers in records:
        producer.produce(topic, value, key, headers=headers, on_delivery=report)
    assert producer.flush(30) == 0
    assert not errors, errors


async def plain_produce(bootstrap: str, records: list[tuple[str, Any, Any, Any]]) -> None:
    """Produce raw ``(topic, value, key, headers)`` records with a plain Producer."""
    await anyio.to_thread.run_sync(_plain_produce, bootstrap, records)


def _plain_consume(bootstrap: str, topic: str, count: int, timeout: float) -> list[Any]:
    # assign() instead of subscribe(): no group to join, reading starts at once
    consumer = Consumer(consumer_config(bootstrap, f"plain-{topic}"))
    got: list[Any] = []
    deadline = anyio_deadline(timeout)
    try:
        while not deadline():
            partitions = consumer.list_topics(topic, timeout=5).topics[topic].partitions
            if partitions:
                break
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(partitions)])
        while len(got) < count and not deadline():
            for msg in consumer.consume(100, 0.2):
                if msg.error() is None:
                    got.append(msg)
    finally:
        consumer.close()
    return got


def anyio_deadline(timeout: float) -> Callable[[], bool]:
    import time

    end = time.monotonic() + timeout
    return lambda: time.monotonic() > end


async def plain_consume(bootstrap: str, topic: str, count: int, timeout: float = 30.0) -> list[Any]:
    """Read ``count`` messages of ``topic`` from the start with a plain Consumer."""
    return await anyio.to_thread.run_sync(_plain_consume, bootstrap, topic, count, timeout)


def _committed(bootstrap: str, group: str, topic: str, partitions: int) -> list[int]:
    consumer = Consumer(consumer_config(bootstrap, group))
    try:
        tps = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return [tp.offset for tp in tps]
    finally:
        consumer.close()


async def committed(bootstrap: str, group: str, topic: str, partitions: int = 1) -> list[int]:
    """The group's committed offsets of ``topic`` (negative: none)."""
    return await anyio.to_thread.run_sync(_committed, bootstrap, group, topic, partitions)


def _create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, num_partitions=partitions)]).values():
        future.result(15)


async def create_topic(bootstrap: str, topic: str, partitions: int = 1) -> None:
    await anyio.to_thread.run_sync(_create_topic, bootstrap, topic, partitions)


@contextlib.asynccontextmanager
async def running(service: Any) -> AsyncIterator[None]:
    """Run ``service.run`` in a task group; cancel it (gracefully) on exit."""
    async with anyio.create_task_group() as group:
        with anyio.fail_after(30):
            await group.start(service.run)
        yield
        group.cancel_scope.cancel()
