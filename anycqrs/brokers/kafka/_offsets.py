"""Offset bookkeeping of one consumer run: which partitions are assigned, how
far each may be committed, and which were revoked.

An offset only moves past messages that all finished. The messages one fetch
brought of one partition share a commit ticket (`Batch`): a count of the
messages still running and the offset after the last one. Each partition
keeps its tickets in offset order and commits up to the first one still
running, so the bookkeeping costs one object per partition and fetch, not
one per message. While running, a partition's position moves by whole
batches; on close and on revoke it moves up to the first unfinished message
(each `Inbound` is marked `handled`), so what finished is committed. The
event loop advances offsets (`settle`); the rebalance callbacks revoke
partitions (`forget`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from confluent_kafka import TopicPartition

from ...consumers import Inbound

__all__ = ["Batch", "Offsets", "Partition"]


class Batch:
    """The commit ticket of consecutive fetched messages of one partition
    (every `Inbound` of them carries it as its `ticket`)."""

    __slots__ = ("end", "items", "left", "partition")

    def __init__(self, partition: Partition, items: list[Inbound], end: int) -> None:
        self.partition = partition
        self.items = items
        """The batch's messages, in offset order (filled by the transport)."""
        self.left = 0
        """Messages of the batch not yet settled (set once `items` is filled)."""
        self.end = end
        """The offset after the batch's last message (what to commit once done)."""

    def first_unfinished(self) -> int:
        """The offset of the batch's first message not yet handled, `-1`
        when that is the batch's first one (nothing of it finished)."""
        for index, item in enumerate(self.items):
            if not item.handled:
                offset: int = item.raw.offset()
                return offset if index else -1
        return self.end


class Partition:
    """Offset bookkeeping of one assigned partition."""

    __slots__ = ("committable", "committed", "lane", "partition", "pending", "revoked", "topic")

    def __init__(self, topic: str, partition: int) -> None:
        self.topic = topic
        self.partition = partition
        self.pending: deque[Batch] = deque()
        """Fetched batches not yet committable, in offset order."""
        self.lane = hash((topic, partition))
        """Ordering hash of the partition's keyless messages."""
        self.committable = -1
        """The offset to commit (the next one to read), `-1` before any."""
        self.committed = -1
        """The offset last handed to `commit`."""
        self.revoked = False
        """Set once the partition is revoked or lost: its items are stale."""

    def batch(self, items: list[Inbound], end: int) -> Batch:
        """The ticket of fetched messages ending before offset `end` (the
        transport appends them to `items`, then sets `left`)."""
        batch = Batch(self, items, end)
        self.pending.append(batch)
        return batch

    def position(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition, self.committable)

    def exact(self) -> TopicPartition:
        """The position past every finished message, inside a batch too."""
        if self.pending:
            self.committable = max(self.committable, self.pending[0].first_unfinished())
        return self.position()


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
        """Mark `items` handled (releasing their `event` and `raw`); advance
        their partitions' commit positions."""
        done: list[Partition] = []
        for item in items:
            item.handled = True
            # the ticket keeps a settled item until its batch is committable:
            # drop the event and the message it no longer needs (no survivors
            # of young collections while the rest of the batch is in flight)
            item.event = item.raw = None
            batch: Batch = item.ticket
            batch.left -= 1
            if not batch.left:
                done.append(batch.partition)
        if not done:
            return
        dirty = self._dirty
        for part in done:
            if part.revoked:
                continue
            pending = part.pending
            head: Batch | None = None
            while pending and not pending[0].left:
                head = pending.popleft()
                head.items = []  # items -> ticket -> items: no cycle left for the GC
            if head is not None:
                part.committable = head.end
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
        commits = []
        for part in self._partitions.values():
            if not part.revoked:
                position = part.exact()
                if position.offset >= 0:
                    commits.append(position)
        return commits

    def forget(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        """Revoke `partitions`; returns their positions to commit now (again:
        an asynchronous commit may be in flight)."""
        commits = []
        for tp in partitions:
            part = self._partitions.pop((tp.topic, tp.partition), None)
            if part is None:
                continue
            part.revoked = True
            position = part.exact()
            for batch in part.pending:
                batch.items = []
            part.pending.clear()
            if position.offset >= 0:
                commits.append(position)
        return commits
