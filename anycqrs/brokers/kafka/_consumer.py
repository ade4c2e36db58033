"""`KafkaEventConsumer`: a Kafka transport for the consumer layer
(`anycqrs.consumers`), with manual, batched offset commits.

librdkafka queues fetched messages in memory, so taking them is not
blocking: each fetch commits the positions that moved (asynchronously) and
drains up to a batch with a zero timeout on the event loop. Only when nothing
is queued does it go to a worker thread, to wait for the first message (up to
`poll_timeout`), and then drains the rest on the loop again: one thread hop
per idle period instead of one per batch, and no waiting for a full batch
(latency). The batch is split into runs of one partition, each with one
commit ticket, decoded and handed to the lanes; `settle` advances the
partitions' positions.

A rebalance callback runs on whichever thread consumes: on a worker thread
it commits the revoked partitions synchronously; on the event loop (during a
drain) asynchronously, so the loop never blocks on the broker.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread

from ..._exc import BaseExceptionGroup, real_errors
from ..._retry import RetryPolicy
from ...codecs import MessageCodec
from ...consumers import DEFAULT_RETRY, EventSink, consume
from ...observability._health import ConsumerProbe, HealthCheck
from ...observability._metrics import ConsumerMetrics
from ._dead_letters import DEAD_LETTER_RETRY, DeadLetters
from ._logs import with_logger
from ._status import STOPPED, Assignment, KafkaConsumerStatus
from ._transport import KafkaTransport, on_commit

__all__ = ["KafkaEventConsumer"]

logger = logging.getLogger("anycqrs.brokers.kafka")

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


class KafkaEventConsumer:
    """Consumes notification events from Kafka topics and feeds them to an
    `anycqrs.EventMediator` (any `anycqrs.consumers.EventSink`), at least once.

    Messages are routed by their `event_name` header (else the JSON's
    `event_name` field) to the `NotificationEvent[P]` bound in the mediator's
    `EventMap`. Offsets are committed only after the mediator handled a
    message (manual commits, batched; a partition's offset only moves past
    messages that all finished). Up to `max_concurrency` messages are handled
    at once; messages with one key (or, without a key, from one partition)
    are handled in order.

    A failing handler is retried by `retry`; when it still fails the message
    goes to `dead_letter_topic` (original value, key and headers plus
    `anycqrs.error.*` / `anycqrs.original.*` headers) and the consumer moves
    on. Without a dead-letter topic it stops with
    `anycqrs.errors.MessageHandlingError`, leaving the message uncommitted.
    Undecodable messages (malformed JSON, unknown event name, wrong payload
    shape) are logged, dead-lettered when a topic is set, and committed.
    A record key that is not UTF-8 is no reason to dead-letter: the event's
    `key` keeps its undecodable bytes as `\\xNN` escapes (ordering follows
    the raw bytes).

    Bad input never stops the consumer. Writing a dead letter is retried by
    `dead_letter_retry`; when the topic refuses the record itself (too large:
    the original value plus the `anycqrs.*` headers), a truncated dead letter
    is written instead (the value cut to 4 KiB, marked by the
    `anycqrs.truncated` header; see docs/consumers.md), logged, and the
    message committed. Only a dead-letter topic that stays unreachable stops
    `run` with `anycqrs.errors.DeadLetterError` (never an exception group),
    the message uncommitted.

    librdkafka's own log lines go to the Python loggers
    `anycqrs.brokers.kafka.librdkafka.consumer` and `.dlq` (unless the
    configuration holds a `logger`). `status` tells which partitions the
    member holds; a member left without any for `unassigned_warning`
    seconds logs a WARNING.

    Observability: `health()` gives an `anycqrs.observability.HealthCheck`
    (not ready while not running, disconnected from every broker, or without
    partitions for `unassigned_warning` seconds; not live when its loop made
    no progress for `stalled_after` seconds). With OpenTelemetry metrics on,
    the consumer records `messaging.client.consumed.messages`,
    `messaging.process.duration`, retries, failures, dead letters, in-flight
    messages per lane and the lag of each partition (from librdkafka's
    statistics, every `statistics_interval` seconds; see docs/metrics.md).

    Cancelling the task that runs `run` stops the consumer: in-flight
    handlers are cancelled, finished messages are committed, and the
    consumer leaves its group (shielded, within `close_timeout`). On a
    rebalance the finished work of revoked partitions is committed and their
    queued messages are dropped unhandled for the new owner. Each `run` has
    its own state: a stopped consumer can run again.

    Args:
        config: librdkafka consumer configuration (`bootstrap.servers`,
            `group.id`, `auto.offset.reset`...). `enable.auto.commit` is
            forced off.
        topics: the topics to subscribe to.
        mediator: the event sink (an `anycqrs.EventMediator`).
        max_concurrency: how many messages may be handled at once (lanes).
        retry: the `anycqrs.RetryPolicy` of failing handlers (default:
            `anycqrs.consumers.DEFAULT_RETRY`, 3 attempts).
        dead_letter_topic: where failed and undecodable messages go.
        dead_letter_config: producer configuration for the dead-letter topic
            (default: `config` without its consumer-only settings).
        dead_letter_retry: how writing a dead letter is retried (default
            `DEAD_LETTER_RETRY`: 6 attempts, 0.5 s doubling to 10 s).
        unassigned_warning: seconds a subscribed member may hold no
            partition before it logs a WARNING (`None`: never).
        batch_size: most messages taken by one fetch (drained from what
            librdkafka holds, never waited for).
        poll_timeout: seconds a fetch that finds nothing queued waits (in a
            worker thread) for the first message.
        close_timeout: seconds the final commit and group leave may take.
        codec: the format of the record values (an
            `anycqrs.codecs.MessageCodec`; default JSON).
            `anycqrs.codecs.PythonCqrsCodec()` reads what python-cqrs
            producers write.
        stalled_after: seconds without progress before `health()` says not
            live (`None`: never).
        statistics_interval: seconds between librdkafka statistics (broker
            states for `health()`, partition lag for metrics); `0` turns them
            off. A `statistics.interval.ms` or `stats_cb` in `config` is kept.
        meter_provider: the OpenTelemetry meter provider (default: the
            global one, read when `run` starts).
        tracer_provider: an OpenTelemetry `TracerProvider` for the
            `process` spans (default: the global one, read when `run`
            starts; none set: no spans). Each message's correlation context
            is set either way (`anycqrs.observability.current_message`).

    Example:
        ```python
        consumer = KafkaEventConsumer(
            {"bootstrap.servers": "localhost:9092", "group.id": "shipping",
             "auto.offset.reset": "earliest"},
            ["orders"],
            mediator,
            retry=anycqrs.RetryPolicy(attempts=5, delay=0.2),
            dead_letter_topic="orders.dlt",
        )
        async with anyio.create_task_group() as tg:
            await tg.start(consumer.run)
            ...
            tg.cancel_scope.cancel()   # graceful stop
        ```
    """

    def __init__(
        self,
        config: Mapping[str, Any],
        topics: Sequence[str],
        mediator: EventSink,
        *,
        max_concurrency: int = 16,
        retry: RetryPolicy | None = None,
        dead_letter_topic: str | None = None,
        dead_letter_config: Mapping[str, Any] | None = None,
        dead_letter_retry: RetryPolicy = DEAD_LETTER_RETRY,
        unassigned_warning: float | None = 30.0,
        batch_size: int = 500,
        poll_timeout: float = 0.2,
        close_timeout: float = 30.0,
        codec: MessageCodec | None = None,
        stalled_after: float | None = 60.0,
        statistics_interval: float = 5.0,
        meter_provider: Any = None,
        tracer_provider: Any = None,
    ) -> None:
        self._tracer_provider = tracer_provider
        if isinstance(topics, str):
            raise TypeError("topics must be a sequence of topic names, not a string")
        if not topics:
            raise ValueError("subscribe to at least one topic")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self._config = with_logger({**config, "enable.auto.commit": False}, "consumer")
        self._config.setdefault("on_commit", on_commit)
        self._topics = list(topics)
        self._sink = mediator
        self._max_concurrency = max_concurrency
        self._retry = retry if retry is not None else DEFAULT_RETRY
        self._dead_letter_topic = dead_letter_topic
        self._dead_letter_config = with_logger(
            dead_letter_config if dead_letter_config is not None else _producer_config(config),
            "dlq",
        )
        self._dead_letter_retry = dead_letter_retry
        if unassigned_warning is not None and unassigned_warning <= 0:
            raise ValueError(f"unassigned_warning must be positive, got {unassigned_warning}")
        self._unassigned_warning = unassigned_warning
        self._transport: KafkaTransport | None = None
        self._batch_size = batch_size
        self._poll_timeout = poll_timeout
        self._close_timeout = close_timeout
        self._codec = codec
        if statistics_interval < 0:
            raise ValueError(f"statistics_interval must be >= 0, got {statistics_interval}")
        if statistics_interval and "statistics.interval.ms" not in self._config:
            self._config["statistics.interval.ms"] = max(1, int(statistics_interval * 1000))
        self._meter_provider = meter_provider
        self._probe = ConsumerProbe(
            f"KafkaEventConsumer({', '.join(self._topics)})",
            stalled_after=stalled_after,
            unassigned_after=unassigned_warning,
        )

    @property
    def topics(self) -> list[str]:
        """The subscribed topics."""
        return list(self._topics)

    @property
    def status(self) -> KafkaConsumerStatus:
        """What the consumer holds now: running or not, its partitions, and
        how long it has had none (a fresh snapshot per read)."""
        transport = self._transport
        return STOPPED if transport is None else transport.assignment.status()

    def health(self) -> HealthCheck:
        """The consumer's health now (see the class docs): a cheap read."""
        return self._probe.check(self.status.unassigned_for)

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Consume until cancelled (or a message fails for good).

        Start it with `await task_group.start(consumer.run)`: it reports
        started once it subscribed. Cancel the scope to stop it gracefully.

        Raises:
            MessageHandlingError: a handler kept failing and no dead-letter
                topic is configured (the message stays uncommitted).
            DeadLetterError: the dead-letter topic stayed unreachable (the
                message stays uncommitted).
            BrokerError: the consumer cannot be created or failed fatally.
        """
        dead_letters: DeadLetters | None = None
        if self._dead_letter_topic is not None:
            dead_letters = DeadLetters(
                self._dead_letter_topic, self._dead_letter_config, self._dead_letter_retry
            )
        metrics = ConsumerMetrics.create(
            self._meter_provider, "kafka", self._config.get("group.id")
        )
        transport = KafkaTransport(
            batch_size=self._batch_size,
            poll_timeout=self._poll_timeout,
            dead_letters=dead_letters,
            assignment=Assignment(self._unassigned_warning, self._topics),
            probe=self._probe,
            metrics=metrics,
            group=self._config.get("group.id"),
        )
        await anyio.to_thread.run_sync(transport.open, self._config, self._topics)
        self._transport = transport
        self._probe.started()
        try:
            if dead_letters is not None:
                await dead_letters.start()
            await consume(
                self._sink,
                transport,
                concurrency=self._max_concurrency,
                retry=self._retry,
                logger=logger,
                codec=self._codec,
                metrics=metrics,
                tracer_provider=self._tracer_provider,
                task_status=task_status,
            )
        except BaseExceptionGroup as group:
            _raise_first(group)
            raise
        finally:
            self._transport = None
            self._probe.stopped()
            with anyio.CancelScope(shield=True):
                with anyio.move_on_after(self._close_timeout) as scope:
                    await anyio.to_thread.run_sync(transport.close)
                if scope.cancelled_caught:  # pragma: no cover - needs a hung broker
                    logger.warning("Kafka consumer did not close within %.1fs", self._close_timeout)
                if dead_letters is not None:
                    await dead_letters.stop()


def _raise_first(group: BaseExceptionGroup[BaseException]) -> None:
    """Several lanes failed for good at once (a dead-letter topic gone fails
    every lane that tries it): raise the first failure itself, log the rest."""
    errors = real_errors(group)
    if not errors:
        return
    for other in errors[1:]:
        logger.error("The Kafka consumer also failed with %s: %s", type(other).__name__, other)
    first = errors[0]
    raise first from first.__cause__
