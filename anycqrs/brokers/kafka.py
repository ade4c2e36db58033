"""Kafka: a producer (:class:`KafkaMessageBroker`) and a consumer runner
(:class:`KafkaEventConsumer`), both on confluent-kafka (librdkafka).

Install the ``kafka`` extra: ``pip install anycqrs[kafka]``.

Every blocking librdkafka call runs in a worker thread, one thread hop per
batch. Wire format: value = JSON of ``to_dict(event)`` (:attr:`Message.payload`),
key = the event's ``key`` (UTF-8), headers ``event_name`` and ``message_id``
plus the event's own ``headers``.

Example::

    async with KafkaMessageBroker({"bootstrap.servers": "localhost:9092"}) as broker:
        mediator = anycqrs.requests.bootstrap.bootstrap(message_broker=broker, ...)
        await mediator.send(PayOrder(order_id=1))
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread
from anyio.streams.memory import MemoryObjectSendStream
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from .._exc import BaseExceptionGroup, real_errors
from ..errors import BrokerError, DeserializationError
from ..events import EventMediator
from ..serialization import dumps
from ._consumer import ConsumerRetryPolicy, EventDecoder, Inbound, Lanes
from ._kafka_producer import Headers, KafkaProducerCore, Record
from ._message import Message

__all__ = ["ConsumerRetryPolicy", "KafkaEventConsumer", "KafkaMessageBroker", "encode_message"]

logger = logging.getLogger("anycqrs.brokers.kafka")

_RESERVED_HEADERS = frozenset({"event_name", "message_id"})


def encode_message(message: Message) -> Record:
    """The ``(topic, value, key, headers)`` a :class:`Message` is produced as.

    Key and header values stay ``str``: librdkafka stores them UTF-8 encoded.

    Example::

        topic, value, key, headers = encode_message(Message.from_event(event))
    """
    headers: Headers = [
        ("event_name", message.message_name),
        ("message_id", str(message.message_id)),
    ]
    if message.headers:
        headers = [
            (name, value if type(value) is str else str(value))
            for name, value in message.headers.items()
            if name not in _RESERVED_HEADERS
        ] + headers
    return message.topic, dumps(message.payload), message.key, headers


class KafkaMessageBroker:
    """Publishes messages to Kafka; ``send_message`` returns once the broker
    confirmed delivery.

    Use it inside ``async with``: entering creates the librdkafka producer and
    its delivery-report thread; leaving flushes what is still queued
    (shielded from cancellation, for at most ``flush_timeout`` seconds).

    Args:
        config: librdkafka configuration, passed through unchanged
            (``bootstrap.servers``, security, ``compression.type``,
            ``enable.idempotence``, ``linger.ms``, ``message.timeout.ms``...).
        flush_timeout: seconds the flush on exit may take.
        poll_interval: seconds each delivery-thread poll may block.

    A publish fails with :class:`~anycqrs.errors.BrokerDeliveryError` when the
    broker rejects a message or cannot be reached within librdkafka's
    ``message.timeout.ms`` (librdkafka retries until then). A full local queue
    is backpressure: the publish waits for room, nothing is dropped.

    Example::

        async with KafkaMessageBroker({"bootstrap.servers": "localhost:9092"}) as broker:
            await broker.send_message(Message.from_event(event))
            await broker.send_many([Message.from_event(e) for e in events])
    """

    def __init__(
        self,
        config: Mapping[str, Any],
        *,
        flush_timeout: float = 30.0,
        poll_interval: float = 0.05,
    ) -> None:
        self._core: KafkaProducerCore[Message] = KafkaProducerCore(
            config,
            encode_message,
            flush_timeout=flush_timeout,
            poll_interval=poll_interval,
            name="KafkaMessageBroker",
        )

    async def __aenter__(self) -> KafkaMessageBroker:
        await self._core.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._core.stop()

    async def send_message(self, message: Message, /) -> None:
        """Publish ``message`` and wait for the broker's confirmation.

        Raises:
            BrokerDeliveryError: the broker did not confirm it.
            BrokerError: the broker is not started (use ``async with``).
        """
        await self._core.produce((message,))

    async def send_many(self, messages: Iterable[Message], /) -> None:
        """Publish ``messages`` in order (one thread hop, one wait) and return
        once all were confirmed. Messages with one key stay in order.

        Raises:
            BrokerDeliveryError: some were not confirmed (``.failures`` lists
                them; the rest were delivered).
        """
        batch = messages if isinstance(messages, Sequence) else list(messages)
        await self._core.produce(batch)


def _identity(record: Record) -> Record:
    return record


_CONSUMER_ONLY = (
    "group.",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "max.poll.interval.ms",
    "partition.assignment.strategy",
    "auto.offset.reset",
    "enable.auto.commit",
    "auto.commit.",
    "enable.auto.offset.store",
    "enable.partition.eof",
    "isolation.level",
    "fetch.",
    "queued.",
    "check.crcs",
    "on_commit",
    "coordinator.",
    "consume.",
)


def _producer_config(config: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if not k.startswith(_CONSUMER_ONLY)}


class _Partition:
    """Offset bookkeeping of one assigned partition."""

    __slots__ = ("committable", "committed", "lane", "partition", "pending", "revoked", "topic")

    def __init__(self, topic: str, partition: int) -> None:
        self.topic = topic
        self.partition = partition
        self.pending: deque[Inbound] = deque()
        """Fetched messages not yet committable, in offset order."""
        self.lane = hash((topic, partition))
        """Ordering hash of the partition's keyless messages."""
        self.committable = -1
        self.committed = -1
        self.revoked = False


_Run = tuple[_Partition, list[Any]]
"""Consecutive fetched messages of one partition."""


class KafkaEventConsumer:
    """Consumes notification events from Kafka topics and feeds them to an
    :class:`~anycqrs.EventMediator`, at least once.

    Messages are routed by their ``event_name`` header (else the JSON's
    ``event_name`` field) to the ``NotificationEvent[P]`` bound in the
    mediator's ``EventMap``. Offsets are committed only after the mediator
    handled a message (manual commits, batched; a partition's offset only
    moves past messages that all finished). Up to ``max_concurrency``
    messages are handled at once; messages with one key (or, without a key,
    from one partition) are handled in order.

    A failing handler is retried by ``retry``; when it still fails the
    message goes to ``dead_letter_topic`` (original value, key and headers
    plus ``anycqrs.error.*`` / ``anycqrs.original.*`` headers) and the
    consumer moves on. Without a dead-letter topic it stops with
    :class:`~anycqrs.errors.MessageHandlingError`, leaving the message
    uncommitted. Undecodable messages (malformed JSON, unknown event name,
    wrong payload shape) are logged, dead-lettered when a topic is set, and
    committed.

    Cancelling the task that runs :meth:`run` stops the consumer: in-flight
    handlers are cancelled, finished messages are committed, and the consumer
    leaves its group (shielded, within ``close_timeout``). On a rebalance the
    finished work of revoked partitions is committed and their queued
    messages are dropped unhandled for the new owner.

    Args:
        config: librdkafka consumer configuration (``bootstrap.servers``,
            ``group.id``, ``auto.offset.reset``...). ``enable.auto.commit`` is
            forced off.
        topics: the topics to subscribe to.
        mediator: the :class:`~anycqrs.EventMediator` that handles events.
        max_concurrency: how many messages may be handled at once (lanes).
        retry: the :class:`ConsumerRetryPolicy` (default: 3 attempts).
        dead_letter_topic: where failed and undecodable messages go.
        dead_letter_config: producer configuration for the dead-letter topic
            (default: ``config`` without its consumer-only settings).
        batch_size: most messages fetched by one ``consume()`` call.
        poll_timeout: seconds one ``consume()`` call may wait.
        close_timeout: seconds the final commit and group leave may take.

    Example::

        consumer = KafkaEventConsumer(
            {"bootstrap.servers": "localhost:9092", "group.id": "shipping",
             "auto.offset.reset": "earliest"},
            ["orders"],
            mediator,
            dead_letter_topic="orders.dlt",
        )
        async with anyio.create_task_group() as tg:
            await tg.start(consumer.run)
            ...
            tg.cancel_scope.cancel()   # graceful stop
    """

    def __init__(
        self,
        config: Mapping[str, Any],
        topics: Sequence[str],
        mediator: EventMediator,
        *,
        max_concurrency: int = 16,
        retry: ConsumerRetryPolicy | None = None,
        dead_letter_topic: str | None = None,
        dead_letter_config: Mapping[str, Any] | None = None,
        batch_size: int = 500,
        poll_timeout: float = 0.2,
        close_timeout: float = 30.0,
    ) -> None:
        if isinstance(topics, str):
            raise TypeError("topics must be a sequence of topic names, not a string")
        if not topics:
            raise ValueError("subscribe to at least one topic")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self._config = {**config, "enable.auto.commit": False}
        self._config.setdefault("on_commit", self._on_commit)
        self._topics = list(topics)
        self._mediator = mediator
        self._decode = EventDecoder(mediator.event_map)
        self._max_concurrency = max_concurrency
        self._retry = retry if retry is not None else ConsumerRetryPolicy()
        self._dead_letter_topic = dead_letter_topic
        self._dead_letter_config = (
            dict(dead_letter_config) if dead_letter_config is not None else _producer_config(config)
        )
        self._batch_size = batch_size
        self._poll_timeout = poll_timeout
        self._close_timeout = close_timeout
        self._partitions: dict[tuple[str, int], _Partition] = {}
        self._dirty: set[_Partition] = set()
        self._dead_letters: KafkaProducerCore[Record] | None = None

    @property
    def topics(self) -> list[str]:
        """The subscribed topics."""
        return list(self._topics)

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Consume until cancelled (or a message fails for good).

        Start it with ``await task_group.start(consumer.run)``: it reports
        started once it subscribed. Cancel the scope to stop it gracefully.

        Raises:
            MessageHandlingError: a handler kept failing and no dead-letter
                topic is configured (the message stays uncommitted).
            BrokerError: the consumer cannot be created or failed fatally.
        """
        consumer = await anyio.to_thread.run_sync(self._open)
        dead_letters: KafkaProducerCore[Record] | None = None
        self._partitions.clear()
        self._dirty.clear()
        try:
            if self._dead_letter_topic is not None:
                dead_letters = KafkaProducerCore(
                    self._dead_letter_config, _identity, name="dead-letter producer"
                )
                await dead_letters.start()
                self._dead_letters = dead_letters
            lanes = Lanes(
                self._mediator,
                self,
                concurrency=self._max_concurrency,
                retry=self._retry,
                logger=logger,
            )
            async with anyio.create_task_group() as group:
                await group.start(lanes.run)
                task_status.started()
                # One batch is fetched ahead while the previous one is decoded
                # and handed to the lanes.
                send, receive = anyio.create_memory_object_stream[list[_Run]](1)
                group.start_soon(self._fetcher, consumer, send)
                inbound = self._inbound
                async with receive:
                    async for runs in receive:
                        items = inbound(runs)
                        if items:
                            await lanes.submit(items)
        except BaseExceptionGroup as failure:
            errors = real_errors(failure)
            if len(errors) == 1:
                raise errors[0] from None
            raise
        finally:
            with anyio.CancelScope(shield=True):
                with anyio.move_on_after(self._close_timeout) as scope:
                    await anyio.to_thread.run_sync(self._close, consumer, self._final_commits())
                if scope.cancelled_caught:  # pragma: no cover - needs a hung broker
                    logger.warning("Kafka consumer did not close within %.1fs", self._close_timeout)
                self._dead_letters = None
                if dead_letters is not None:
                    await dead_letters.stop()

    async def _fetcher(self, consumer: Consumer, send: MemoryObjectSendStream[list[_Run]]) -> None:
        fetch, take_commits = self._fetch, self._take_commits
        async with send:
            while True:
                runs = await anyio.to_thread.run_sync(fetch, consumer, take_commits())
                if runs:
                    await send.send(runs)

    # -- worker-thread side ------------------------------------------------------

    def _open(self) -> Consumer:
        try:
            consumer = Consumer(self._config)
            consumer.subscribe(
                self._topics,
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_lost,
            )
        except (KafkaException, ValueError, TypeError) as exc:
            raise BrokerError(f"Cannot start the Kafka consumer: {exc}") from exc
        return consumer

    def _fetch(self, consumer: Consumer, commits: list[TopicPartition]) -> list[_Run]:
        """Commit, fetch a batch and split it into runs of one partition
        (worker thread: the partition objects are looked up here, next to the
        rebalance callbacks that revoke them)."""
        if commits:
            try:
                consumer.commit(offsets=commits, asynchronous=True)
            except KafkaException as exc:
                logger.warning("Kafka commit failed: %s", exc)
        messages = consumer.consume(self._batch_size, self._poll_timeout)
        if not messages:
            return []
        partitions = self._partitions
        runs: list[_Run] = []
        part: _Partition | None = None
        run: list[Any] = []
        for msg in messages:
            error = msg.error()
            if error is not None:
                self._fetch_error(error)
                continue
            topic, partition = msg.topic(), msg.partition()
            if part is None or part.partition != partition or part.topic != topic:
                assert topic is not None and partition is not None
                part = partitions.get((topic, partition))
                if part is None:
                    part = partitions[topic, partition] = _Partition(topic, partition)
                run = []
                runs.append((part, run))
            run.append(msg)
        return runs

    def _inbound(self, runs: list[_Run]) -> list[Inbound]:
        """Decode fetched messages (event loop: decoding holds the GIL either
        way, and objects built here stay on the loop's core)."""
        decode = self._decode
        items: list[Inbound] = []
        append = items.append
        for part, messages in runs:
            if part.revoked:  # revoked since the fetch: the new owner reads them
                continue
            topic, lane, pend = part.topic, part.lane, part.pending.append
            for msg in messages:
                key = msg.key()
                name: str | None = None
                item_error: Exception | None = None
                event: Any = None
                try:
                    headers: Any = msg.headers()  # consumed: [(name, bytes | None)]
                    if headers:
                        for header, value in headers:
                            if header == "event_name" and value is not None:
                                name = value.decode()
                    event = decode(
                        msg.value(), name, topic, key.decode() if key is not None else None
                    )
                except DeserializationError as exc:
                    item_error = exc
                except UnicodeDecodeError as exc:
                    item_error = DeserializationError("NotificationEvent", [f"{exc} @ headers"])
                item = Inbound(event, item_error, hash(key) if key is not None else lane, msg, part)
                pend(item)
                append(item)
        return items

    @staticmethod
    def _fetch_error(error: KafkaError) -> None:
        if error.fatal():
            raise BrokerError(f"Kafka consumer failed: {error.str()}")
        if error.code() != KafkaError._PARTITION_EOF:
            logger.warning("Kafka consumer: %s", error.str())

    def _close(self, consumer: Consumer, commits: list[TopicPartition]) -> None:
        try:
            if commits:
                consumer.commit(offsets=commits, asynchronous=False)
        except KafkaException as exc:
            logger.warning("Kafka final commit failed: %s", exc)
        finally:
            consumer.close()

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        logger.info("Kafka partitions assigned: %s", _describe(partitions))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        commits = self._forget(partitions)
        logger.info("Kafka partitions revoked: %s", _describe(partitions))
        if commits:
            try:
                consumer.commit(offsets=commits, asynchronous=False)
            except KafkaException as exc:
                logger.warning("Kafka commit on revoke failed: %s", exc)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._forget(partitions)
        logger.warning("Kafka partitions lost: %s", _describe(partitions))

    def _forget(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        commits = []
        for tp in partitions:
            part = self._partitions.pop((tp.topic, tp.partition), None)
            if part is None:
                continue
            part.revoked = True
            if part.committable >= 0:  # again: an async commit may be in flight
                commits.append(TopicPartition(part.topic, part.partition, part.committable))
        return commits

    @staticmethod
    def _on_commit(error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        if error is not None and error.code() != KafkaError._NO_OFFSET:
            logger.warning("Kafka commit failed: %s", error.str())

    # -- event-loop side (the lanes' transport) -----------------------------------

    def _take_commits(self) -> list[TopicPartition]:
        dirty = self._dirty
        if not dirty:
            return []
        commits = []
        for part in dirty:
            if not part.revoked and part.committable > part.committed:
                commits.append(TopicPartition(part.topic, part.partition, part.committable))
                part.committed = part.committable
        dirty.clear()
        return commits

    def _final_commits(self) -> list[TopicPartition]:
        # Asynchronous commits may still be in flight (or be dropped by
        # close()): commit every position again, synchronously.
        self._dirty.clear()
        return [
            TopicPartition(part.topic, part.partition, part.committable)
            for part in self._partitions.values()
            if not part.revoked and part.committable >= 0
        ]

    def stale(self, item: Inbound) -> bool:
        """Whether the message's partition was revoked (internal)."""
        revoked: bool = item.ticket.revoked
        return revoked

    def done(self, items: Sequence[Inbound]) -> None:
        """Mark messages handled; advance their partitions' offsets (internal)."""
        last: _Partition | None = None
        touched: list[_Partition] = []
        for item in items:
            item.handled = True
            part = item.ticket
            if part is not last:
                touched.append(part)
                last = part
        dirty = self._dirty
        for part in touched:
            if part.revoked:
                continue
            pending = part.pending
            head: Inbound | None = None
            while pending and pending[0].handled:
                head = pending.popleft()
            if head is not None:
                part.committable = head.raw.offset() + 1
                dirty.add(part)

    def location(self, item: Inbound) -> str:
        """``topic[partition]@offset`` of a message (internal)."""
        msg = item.raw
        return f"{msg.topic()}[{msg.partition()}]@{msg.offset()}"

    async def dead_letter(self, item: Inbound, error: BaseException, attempts: int) -> bool:
        """Produce the message to the dead-letter topic (internal)."""
        producer, topic = self._dead_letters, self._dead_letter_topic
        if producer is None or topic is None:
            return False
        msg = item.raw
        headers: Headers = [
            (name, value if value is not None else b"") for name, value in _header_pairs(msg)
        ]
        headers += [
            ("anycqrs.error.type", type(error).__qualname__.encode()),
            ("anycqrs.error.message", str(error)[:4000].encode(errors="replace")),
            ("anycqrs.original.topic", str(msg.topic()).encode()),
            ("anycqrs.original.partition", str(msg.partition()).encode()),
            ("anycqrs.original.offset", str(msg.offset()).encode()),
            ("anycqrs.attempts", str(attempts).encode()),
        ]
        await producer.produce([(topic, msg.value(), msg.key(), headers)])
        return True


def _header_pairs(msg: Any) -> list[tuple[str, Any]]:
    """A consumed message's headers (librdkafka hands them out as pairs)."""
    return msg.headers() or []


def _describe(partitions: list[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions) or "none"
