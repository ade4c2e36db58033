"""One run of a `KafkaEventConsumer`: the open librdkafka consumer, its partitions'
offsets and commit tickets, the rebalance callbacks and the dead-letter producer — the
`anycqrs.consumers.Transport` the consumer's `consume` call reads from."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import anyio
import anyio.to_thread
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from ...consumers import EventDecoder, Inbound
from ...errors import BrokerError
from ...observability._health import ConsumerProbe
from ...observability._metrics import ConsumerMetrics
from ._dead_letters import DeadLetters
from ._offsets import Offsets
from ._stats import Observer
from ._status import Assignment
from ._wire import record_key

__all__ = ["KafkaTransport", "on_commit"]

logger = logging.getLogger("anycqrs.brokers.kafka")


class KafkaTransport:
    """One run of a `KafkaEventConsumer`: the open librdkafka consumer, its
    partitions' offsets and the dead-letter producer (the `Transport` of
    `anycqrs.consumers.consume`)."""

    __slots__ = (
        "_batch_size",
        "_consumer",
        "_dead_letters",
        "_decoder",
        "_group",
        "_loop_thread",
        "_observer",
        "_offsets",
        "_probe",
        "_timeout",
        "_topic",
        "assignment",
        "revocations",
    )

    def __init__(
        self,
        *,
        batch_size: int,
        poll_timeout: float,
        dead_letters: DeadLetters | None,
        assignment: Assignment,
        probe: ConsumerProbe,
        metrics: ConsumerMetrics | None,
        group: str | None = None,
    ) -> None:
        self._group = group
        self._batch_size = batch_size
        self._probe = probe
        self._observer = Observer(probe, metrics)
        self._timeout = poll_timeout
        self._dead_letters = dead_letters
        self.assignment = assignment
        self._offsets = Offsets()
        self.revocations = 0
        """Rebalances that took partitions (raised before their items turn
        stale: the lanes ask `stale` only once it is not 0)."""
        self._consumer: Consumer | None = None
        self._decoder: EventDecoder | None = None
        """The decoder of the run (given to `fetch`), for `decode`."""
        self._loop_thread: int | None = None
        self._topic: str | None = None
        """The subscribed topic when it is the only one (not a pattern)."""
        """The event loop's thread (rebalance callbacks there must not block)."""

    # -- worker-thread side ------------------------------------------------------

    def open(self, config: Mapping[str, Any], topics: list[str]) -> None:
        try:
            consumer = Consumer(self._observer.install(dict(config)))
            consumer.subscribe(
                topics,
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_lost,
            )
        except (KafkaException, ValueError, TypeError) as exc:
            raise BrokerError(f"Cannot start the Kafka consumer: {exc}") from exc
        self._consumer = consumer
        self._topic = topics[0] if len(topics) == 1 and not topics[0].startswith("^") else None

    def _wait(self) -> list[Any]:
        """Wait up to `poll_timeout` for the first message (worker thread)."""
        consumer = self._consumer
        assert consumer is not None
        messages: list[Any] = consumer.consume(1, self._timeout)
        return messages

    def close(self) -> None:
        consumer = self._consumer
        if consumer is None:  # pragma: no cover - open() failed
            return
        commits = self._offsets.final_commits()
        try:
            if commits:
                consumer.commit(offsets=commits, asynchronous=False)
        except KafkaException as exc:
            logger.warning("Kafka final commit failed: %s", exc)
        finally:
            consumer.close()

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.assignment.assign(partitions)
        logger.info("Kafka partitions assigned: %s", _describe(partitions))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.assignment.revoke(partitions)
        self.revocations += 1  # before any item is stale (the lanes read it)
        commits = self._offsets.forget(partitions)
        logger.info("Kafka partitions revoked: %s", _describe(partitions))
        if commits:
            try:
                if threading.get_ident() == self._loop_thread:  # during a drain
                    consumer.commit(offsets=commits, asynchronous=True)
                else:
                    consumer.commit(offsets=commits, asynchronous=False)
            except KafkaException as exc:
                logger.warning("Kafka commit on revoke failed: %s", exc)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.assignment.revoke(partitions)
        self.revocations += 1  # before any item is stale (the lanes read it)
        self._offsets.forget(partitions)
        logger.warning("Kafka partitions lost: %s", _describe(partitions))

    # -- event-loop side (the Transport protocol) ---------------------------------

    async def fetch(self, decode: EventDecoder, /) -> list[Inbound]:
        consumer = self._consumer
        assert consumer is not None
        self._loop_thread = threading.get_ident()
        commits = self._offsets.take_commits()
        if commits:
            try:
                consumer.commit(offsets=commits, asynchronous=True)
            except KafkaException as exc:
                logger.warning("Kafka commit failed: %s", exc)
        size = self._batch_size
        self._decoder = decode
        messages = consumer.consume(size, 0)
        self._probe.polled()
        if messages:
            return self._items(messages)
        first = await anyio.to_thread.run_sync(self._wait)
        self._probe.polled()
        if not first:
            self.assignment.check()
            return []
        # the first message's partition is looked up before the drain, whose
        # rebalance callbacks may revoke it (its item is then stale)
        items = self._items(first)
        if size > 1:
            items += self._items(consumer.consume(size - 1, 0))
        return items

    def _items(self, messages: list[Any]) -> list[Inbound]:
        """A fetched batch as undecoded items (the lanes have them decoded,
        `decode`); one commit ticket per run of one partition (its items and
        end offset filled in once the run is complete)."""
        partition = self._offsets.partition
        single = self._topic  # one literal topic subscribed: no topic() call per message
        items: list[Inbound] = []
        append = items.append
        new = object.__new__
        batch: Any = None
        last: Any = None
        topic: str | None = None
        number = lane = first = -1
        for msg in messages:
            error = msg.error()
            if error is not None:
                _fetch_error(error)
                continue
            if msg.partition() != number or (single is None and msg.topic() != topic):
                if batch is not None:
                    _close_run(batch, items, first, last)
                topic, number = single or msg.topic(), msg.partition()
                assert topic is not None and number is not None
                part = partition(topic, number)
                if part.revoked:  # revoked during the drain: the new owner reads it
                    batch = None
                    continue
                batch = part.batch([], -1)
                lane = part.lane
                first = len(items)
            elif batch is None:
                continue
            key = msg.key()
            item: Inbound = new(Inbound)  # `Inbound(None, None, ...)` without its frame
            item.event = item.error = None
            item.lane = hash(key) if key is not None else lane
            item.raw = msg
            item.ticket = batch
            item.handled = False
            append(item)
            last = msg
        if batch is not None:
            _close_run(batch, items, first, last)
        return items

    def decode(self, items: Sequence[Inbound], /) -> None:
        """Decode a lane's chunk (`DecodingTransport`), just before it is handled."""
        decoder = self._decoder
        assert decoder is not None  # (set by the fetch that brought the items)
        fill = decoder.batch(record_key)  # a key decoded only when the JSON has none
        single = self._topic
        for item in items:
            msg = item.raw
            name = None  # the `event_name` header, `_wire.event_name` inlined
            headers = msg.headers()
            if headers:
                for header, value in headers:
                    if header == "event_name" and value is not None:
                        name = value
            fill(item, msg.value(), name, single or msg.topic(), msg.key())

    def settle(self, items: Sequence[Inbound], /) -> None:
        self._offsets.settle(items)
        self._probe.polled()

    def stale(self, item: Inbound, /) -> bool:
        revoked: bool = item.ticket.partition.revoked
        return revoked

    def location(self, item: Inbound, /) -> str:
        msg = item.raw
        return f"{msg.topic()}[{msg.partition()}]@{msg.offset()}"

    def message_headers(self, item: Inbound, /) -> dict[str, Any]:
        return dict(item.raw.headers() or ())

    def span_attributes(self, item: Inbound, /) -> dict[str, Any]:
        msg = item.raw
        attributes: dict[str, Any] = {
            "messaging.system": "kafka",
            "messaging.destination.name": msg.topic(),
            "messaging.destination.partition.id": str(msg.partition()),
            "messaging.kafka.offset": msg.offset(),
        }
        if self._group is not None:
            attributes["messaging.consumer.group.name"] = self._group
        key = msg.key()
        if key is not None:
            attributes["messaging.kafka.message.key"] = record_key(key)
        return attributes

    async def dead_letter(self, item: Inbound, error: BaseException, attempts: int, /) -> bool:
        dead_letters = self._dead_letters
        if dead_letters is None:
            return False
        await dead_letters.write(item.raw, error, attempts, self.location(item))
        return True


def _close_run(batch: Any, items: list[Inbound], first: int, last: Any) -> None:
    """Fill the ticket of the run `items[first:]`, whose last message is `last`."""
    run = batch.items = items[first:]
    batch.left = len(run)
    batch.end = last.offset() + 1


def _fetch_error(error: KafkaError) -> None:
    if error.fatal():
        raise BrokerError(f"Kafka consumer failed: {error.str()}")
    if error.code() != KafkaError._PARTITION_EOF:
        logger.warning("Kafka consumer: %s", error.str())


def on_commit(error: KafkaError | None, partitions: list[TopicPartition]) -> None:
    if error is not None and error.code() != KafkaError._NO_OFFSET:
        logger.warning("Kafka commit failed: %s", error.str())


def _describe(partitions: list[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions) or "none"
