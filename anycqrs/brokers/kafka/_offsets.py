"""Offset bookkeeping of one consumer run: which partitions are assigned, how
far each may be committed, and which were revoked.

An offset only moves past messages that all finished: each partition keeps
its fetched messages in offset order and commits up to the first one still
running. The event loop advances offsets (`settle`); the worker thread
fetches, commits and runs the rebalance callbacks (`forget`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from confluent_kafka import TopicPartition

from ...consumers import Inbound

__all__ = ["Offsets", "Partition"]


class Partition:
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
        """The offset to commit (the next one to read), `-1` before any."""
        self.committed = -1
        """The offset last handed to `commit`."""
        self.revoked = False
        """Set once the partition is revoked or lost: its items are stale."""

    def position(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition, self.committable)


class Offsets:
    """The partitions of one run and their commit positions."""

    __slots__ = ("_dirty", "_partitions")

    def __init__(self) -> None:
        self._partitions: dict[tuple[str, int], Partition] = {}
        self._dirty: set[Partition] = set()

    def partition(self, topic: str, partition: int) -> Partition:
        """The bookkeeping of `topic[partition]` (created on its first message)."""
        part = self._partitions.get((topic, partition))
        if part is None:
            part = self._partitions[topic, partition] = Partition(topic, partition)
        return part

    def settle(self, items: Sequence[Inbound]) -> None:
        """Mark `items` handled; advance their partitions' commit positions."""
        last: Partition | None = None
        touched: list[Partition] = []
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

    def take_commits(self) -> list[TopicPartition]:
        """The positions that moved since the last call (committed asynchronously)."""
        dirty = self._dirty
        if not dirty:
            return []
        commits = []
        for part in dirty:
            if not part.revoked and part.committable > part.committed:
                commits.append(part.position())
                part.committed = part.committable
        dirty.clear()
        return commits

    def final_commits(self) -> list[TopicPartition]:
        """Every position, for the synchronous commit on close (asynchronous
        commits may still be in flight, or be dropped by `close()`)."""
        self._dirty.clear()
        return [
            part.position()
            for part in self._partitions.values()
            if not part.revoked and part.committable >= 0
        ]

    def forget(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        """Revoke `partitions`; returns their positions to commit now (again:
        an asynchronous commit may be in flight)."""
        commits = []
        for tp in partitions:
            part = self._partitions.pop((tp.topic, tp.partition), None)
            if part is None:
                continue
            part.revoked = True
            if part.committable >= 0:
                commits.append(part.position())
        return commits
