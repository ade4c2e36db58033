"""Kafka throughput measurements for anycqrs (producer and consumer runner).

Run against any broker: ``python benchmarks/kafka_bench.py HOST:PORT``. Each
function returns a list of result dicts (``name``, ``messages``, ``seconds``,
``rate``) so the benchmark suite can call them directly.

* ``plain_produce``: a plain confluent-kafka ``Producer`` loop (the baseline).
* ``anycqrs_produce``: the same events through ``KafkaMessageBroker.send_many``.
* ``plain_consume``: a plain ``Consumer.consume`` loop (the baseline).
* ``anycqrs_consume``: ``KafkaEventConsumer`` into a trivial handler.
* ``faststream_consume``: FastStream's confluent ``KafkaBroker`` batch
  subscriber (``batch=True``) into a trivial handler, the peer library.
"""

from __future__ import annotations

import sys
import time
import uuid
from typing import Any

import anyio
import attrs
from confluent_kafka import Consumer, Producer

from anycqrs.brokers import Message
from anycqrs.brokers.kafka import KafkaEventConsumer, KafkaMessageBroker
from anycqrs.events import EventHandler, EventMap, EventMediator
from anycqrs.messages import NotificationEvent

GROUP_SETTINGS = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}


@attrs.frozen
class BenchPaid:
    order_id: int
    customer: str
    amount: float
    note: str


def _notifications(count: int, topic: str) -> list[NotificationEvent[BenchPaid]]:
    return [
        NotificationEvent(
            payload=BenchPaid(order_id=i, customer=f"c{i % 97}", amount=12.5, note="x" * 20),
            topic=topic,
            key=f"k{i % 100}",
            headers={"tenant": "bench"},
        )
        for i in range(count)
    ]


def _events(count: int, topic: str) -> list[Message]:
    return [Message.from_event(event) for event in _notifications(count, topic)]


def _result(name: str, count: int, seconds: float, **extra: Any) -> dict[str, Any]:
    return {"name": name, "messages": count, "seconds": seconds, "rate": count / seconds, **extra}


def plain_produce(bootstrap: str, count: int = 100_000, topic: str | None = None) -> dict[str, Any]:
    """A plain confluent-kafka Producer loop with per-message delivery callbacks."""
    topic = topic or f"bench-plain-{uuid.uuid4().hex[:8]}"
    from anycqrs.brokers.kafka import encode_message

    records = [encode_message(m) for m in _events(count, topic)]
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    delivered = [0]

    def report(err: Any, msg: Any) -> None:
        if err is None:
            delivered[0] += 1

    start = time.perf_counter()
    for t, value, key, headers in records:
        while True:
            try:
                producer.produce(t, value, key, headers=headers, on_delivery=report)
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    producer.flush(60)
    seconds = time.perf_counter() - start
    assert delivered[0] == count, delivered
    return _result(
        "plain confluent-kafka produce",
        count,
        seconds,
        topic=topic,
        bytes_per_value=len(records[0][1] or b""),
    )


async def _anycqrs_produce(
    bootstrap: str, count: int, topic: str, batch: int, from_events: bool
) -> float:
    from_event = Message.from_event
    async with KafkaMessageBroker({"bootstrap.servers": bootstrap, "linger.ms": 5}) as broker:
        if from_events:
            events = _notifications(count, topic)
            start = time.perf_counter()
            for i in range(0, count, batch):
                await broker.send_many([from_event(event) for event in events[i : i + batch]])
            return time.perf_counter() - start
        messages = _events(count, topic)
        start = time.perf_counter()
        for i in range(0, count, batch):
            await broker.send_many(messages[i : i + batch])
        return time.perf_counter() - start


def anycqrs_produce(
    bootstrap: str,
    count: int = 100_000,
    topic: str | None = None,
    batch: int = 100_000,
    backend: str = "asyncio",
    from_events: bool = False,
) -> dict[str, Any]:
    """The same events through ``KafkaMessageBroker.send_many`` (``batch`` per
    call); with ``from_events``, ``Message.from_event`` of each event is timed too."""
    topic = topic or f"bench-any-{uuid.uuid4().hex[:8]}"
    seconds = anyio.run(
        _anycqrs_produce, bootstrap, count, topic, batch, from_events, backend=backend
    )
    what = "Message.from_event + send_many" if from_events else "send_many"
    return _result(f"anycqrs {what} (batch {batch}, {backend})", count, seconds, topic=topic)


def plain_consume(bootstrap: str, topic: str, count: int) -> dict[str, Any]:
    """A plain ``consume()`` loop reading ``count`` messages of ``topic``."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            **GROUP_SETTINGS,
        }
    )
    consumer.subscribe([topic])
    seen = 0
    start = None
    while seen < count:
        batch = consumer.consume(500, 1.0)
        if batch and start is None:
            start = time.perf_counter()
        seen += sum(1 for m in batch if m.error() is None)
    assert start is not None
    seconds = time.perf_counter() - start
    consumer.close()
    return _result("plain confluent-kafka consume (after first batch)", count, seconds)


class _Tally:
    """The handler's count: attributes of an instance, not of the handler class
    (writing a class attribute per event invalidates the type's method cache,
    ≈ 1.2k instructions per event that are the benchmark's, not the library's)."""

    __slots__ = ("done", "first", "seen", "target")

    def __init__(self) -> None:
        self.seen = 0
        self.first: float | None = None
        self.done: anyio.Event | None = None
        self.target = 0

    def since_first(self, end: float) -> float:
        """Seconds from the first event handled to ``end``."""
        assert self.first is not None, "no event was handled"
        return end - self.first


_TALLY = _Tally()


class _Count(EventHandler[NotificationEvent[BenchPaid]]):
    async def handle(self, event: NotificationEvent[BenchPaid]) -> None:
        tally = _TALLY
        if tally.first is None:
            tally.first = time.perf_counter()
        tally.seen += 1
        if tally.seen >= tally.target and tally.done is not None:
            tally.done.set()


async def _anycqrs_consume(
    bootstrap: str, topic: str, count: int, concurrency: int, batch_size: int = 500
) -> float:
    events = EventMap()
    events.bind(NotificationEvent[BenchPaid], _Count)
    mediator = EventMediator(events)
    tally = _TALLY
    tally.seen, tally.first, tally.target, tally.done = 0, None, count, anyio.Event()
    consumer = KafkaEventConsumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            **GROUP_SETTINGS,
        },
        [topic],
        mediator,
        max_concurrency=concurrency,
        batch_size=batch_size,
    )
    async with anyio.create_task_group() as group:
        await group.start(consumer.run)
        with anyio.fail_after(120):
            await tally.done.wait()
        end = time.perf_counter()
        group.cancel_scope.cancel()
    return tally.since_first(end)


def anycqrs_consume(
    bootstrap: str, topic: str, count: int, concurrency: int = 16, backend: str = "asyncio"
) -> dict[str, Any]:
    """``KafkaEventConsumer`` into a trivial handler, from the first event to the last."""
    seconds = anyio.run(_anycqrs_consume, bootstrap, topic, count, concurrency, backend=backend)
    return _result(f"anycqrs KafkaEventConsumer ({backend}, {concurrency} lanes)", count, seconds)


def _faststream_models() -> Any:
    """The pydantic models of the bench event (FastStream's typed decoding),
    built on first use: pydantic comes with FastStream."""
    import datetime

    import pydantic

    class PaidModel(pydantic.BaseModel):
        order_id: int
        customer: str
        amount: float
        note: str

    class EventModel(pydantic.BaseModel):
        event_id: uuid.UUID
        event_name: str
        event_timestamp: datetime.datetime
        topic: str
        key: str | None = None
        headers: dict[str, str] = {}
        payload: PaidModel

    return EventModel


async def _faststream_consume(
    bootstrap: str, topic: str, count: int, max_records: int, typed: bool = True
) -> float:
    import logging

    from faststream.confluent import KafkaBroker

    broker = KafkaBroker(bootstrap, log_level=logging.WARNING, logger=None)
    done = anyio.Event()
    state: dict[str, Any] = {"seen": 0, "first": None}

    def seen(batch: list[Any]) -> None:
        if state["first"] is None:
            state["first"] = time.perf_counter()
        state["seen"] += len(batch)
        if state["seen"] >= count:
            done.set()

    subscriber = broker.subscriber(
        topic,
        group_id=f"bench-fs-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        batch=True,
        max_records=max_records,
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
    )
    if typed:
        event_model = _faststream_models()

        @subscriber
        async def handle_typed(batch: list[event_model]) -> None:  # type: ignore[valid-type]
            seen(batch)  # each message validated into the pydantic event model
    else:

        @subscriber
        async def handle(batch: list[dict[str, Any]]) -> None:  # JSON decoded, no model
            seen(batch)

    async with broker:
        await broker.start()
        with anyio.fail_after(120):
            await done.wait()
        end = time.perf_counter()
    first: float = state["first"]
    return end - first


def faststream_consume(
    bootstrap: str, topic: str, count: int, max_records: int = 500, typed: bool = True
) -> dict[str, Any]:
    """FastStream (confluent) batch subscriber into a trivial handler, first
    event to last. ``typed``: each message is validated into a pydantic model
    of the event (UUID, aware datetime, nested payload: the work anycqrs does
    decoding into ``NotificationEvent[BenchPaid]``); else decoded as a JSON
    dict only. Its defaults otherwise: offsets auto-committed by librdkafka
    (``AckPolicy.ACK_FIRST``), one worker-thread ``consume`` per batch."""
    seconds = anyio.run(_faststream_consume, bootstrap, topic, count, max_records, typed)
    kind = "pydantic models" if typed else "JSON dicts"
    return _result(f"FastStream confluent batch subscriber ({max_records}, {kind})", count, seconds)


def run_all(bootstrap: str, count: int = 100_000) -> list[dict[str, Any]]:
    """Every measurement, baselines first, on one broker."""
    results = [plain_produce(bootstrap, count)]
    for backend in ("asyncio", "trio"):
        results.append(anycqrs_produce(bootstrap, count, backend=backend))
    results.append(anycqrs_produce(bootstrap, count, batch=1000))
    topic = results[-1]["topic"]
    results.append(plain_consume(bootstrap, topic, count))
    for backend in ("asyncio", "trio"):
        results.append(anycqrs_consume(bootstrap, topic, count, backend=backend))
    results.append(faststream_consume(bootstrap, topic, count))
    return results


if __name__ == "__main__":  # pragma: no cover
    for row in run_all(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 100_000):
        print(f"{row['name']:<55} {row['rate']:>10,.0f} msg/s  ({row['seconds']:.2f}s)")
