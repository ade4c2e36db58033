"""What a running `KafkaEventConsumer` holds: `KafkaConsumerStatus`, and the
assignment tracker that fills it and warns when a subscribed consumer gets no
partitions for too long."""

from __future__ import annotations

import logging
import threading
import time

import attrs
from confluent_kafka import TopicPartition

__all__ = ["Assignment", "KafkaConsumerStatus"]

logger = logging.getLogger("anycqrs.brokers.kafka")


@attrs.frozen
class KafkaConsumerStatus:
    """A snapshot of a `KafkaEventConsumer` (its `status` property), for
    health checks.

    Attributes:
        running: whether `run` is consuming (subscribed).
        assigned: the `(topic, partition)` pairs the group gave this member.
        unassigned_since: `time.monotonic()` when the member last had no
            partition (since it subscribed, or since its last partition was
            revoked), `None` while it has some or is not running.
        unassigned_for: seconds without a partition at the snapshot (`None`
            while it has some or is not running).
    """

    running: bool
    assigned: frozenset[tuple[str, int]]
    unassigned_since: float | None
    unassigned_for: float | None


STOPPED = KafkaConsumerStatus(False, frozenset(), None, None)


class Assignment:
    """The partitions of one run, kept by the rebalance callbacks (worker
    thread) and read by `status` (event loop).

    Args:
        warn_after: seconds without partitions before one WARNING (per
            unassigned stretch); `None` never warns.
        topics: the subscription, named in the warning.
    """

    __slots__ = ("_lock", "_partitions", "_since", "_topics", "_warn_after", "_warned")

    def __init__(self, warn_after: float | None, topics: list[str]) -> None:
        self._lock = threading.Lock()
        self._partitions: set[tuple[str, int]] = set()
        self._since: float | None = time.monotonic()
        self._warn_after = warn_after
        self._topics = topics
        self._warned = False

    def assign(self, partitions: list[TopicPartition]) -> None:
        with self._lock:
            self._partitions.update((tp.topic, tp.partition) for tp in partitions)
            if self._partitions and self._since is not None:
                if self._warned:
                    logger.info(
                        "Kafka consumer got partitions after %.1fs without any",
                        time.monotonic() - self._since,
                    )
                self._since = None
                self._warned = False

    def revoke(self, partitions: list[TopicPartition]) -> None:
        with self._lock:
            self._partitions.difference_update((tp.topic, tp.partition) for tp in partitions)
            if not self._partitions and self._since is None:
                self._since = time.monotonic()

    def check(self) -> None:
        """Warn once when unassigned for longer than `warn_after` (called
        after every fetch)."""
        since, warn_after = self._since, self._warn_after
        if since is None or warn_after is None or self._warned:
            return
        waited = time.monotonic() - since
        if waited >= warn_after:
            self._warned = True
            logger.warning(
                "Kafka consumer subscribed to %s has had no partition for %.1fs "
                "(more members than partitions, or the group is not rebalancing?)",
                ", ".join(self._topics),
                waited,
            )

    def status(self) -> KafkaConsumerStatus:
        with self._lock:
            since = self._since
            return KafkaConsumerStatus(
                True,
                frozenset(self._partitions),
                since,
                None if since is None else time.monotonic() - since,
            )
