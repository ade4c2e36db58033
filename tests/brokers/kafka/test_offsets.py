"""Offset bookkeeping without a broker: a partition's position only moves past
messages that all finished; revoked partitions commit no more."""

from __future__ import annotations

from confluent_kafka import TopicPartition

from anycqrs.brokers.kafka._offsets import Offsets
from anycqrs.consumers import Inbound


class Fetched:
    def __init__(self, offset: int) -> None:
        self._offset = offset

    def offset(self) -> int:
        return self._offset


def _fetch(offsets: Offsets, topic: str, partition: int, start: int, count: int) -> list[Inbound]:
    """One fetched batch of `count` messages from `start` (one commit ticket)."""
    part = offsets.partition(topic, partition)
    items: list[Inbound] = []
    batch = part.batch(items, start + count)
    offsets_ = range(start, start + count)
    items.extend(Inbound(None, None, part.lane, Fetched(o), batch) for o in offsets_)
    batch.left = count
    return items


def _positions(commits: list[TopicPartition]) -> dict[tuple[str, int], int]:
    return {(tp.topic, tp.partition): tp.offset for tp in commits}


class TestOffsets:
    """Commit positions of one run."""

    def test_position_waits_for_the_oldest_unfinished_batch(self) -> None:
        offsets = Offsets()
        first = _fetch(offsets, "t", 0, 10, 2)
        second = _fetch(offsets, "t", 0, 12, 2)
        offsets.settle(second)  # 12 and 13 finished, 10 and 11 still running
        assert offsets.take_commits() == []
        offsets.settle([first[1]])
        assert offsets.take_commits() == []  # the first batch is not done
        offsets.settle([first[0]])
        assert _positions(offsets.take_commits()) == {("t", 0): 14}
        assert offsets.take_commits() == []  # nothing moved since
        assert _positions(offsets.final_commits()) == {("t", 0): 14}

    def test_close_and_revoke_commit_inside_a_batch(self) -> None:
        offsets = Offsets()
        items = _fetch(offsets, "t", 0, 10, 4)
        offsets.settle([items[0], items[1], items[3]])  # 12 still running
        assert offsets.take_commits() == []  # running: whole batches only
        assert _positions(offsets.final_commits()) == {("t", 0): 12}
        assert _positions(offsets.forget([TopicPartition("t", 0)])) == {("t", 0): 12}

    def test_settled_items_release_their_event_and_message(self) -> None:
        # the ticket keeps settled items until the batch is committable: what
        # they carried must not stay alive (GC-tracked) while the rest runs
        offsets = Offsets()
        items = _fetch(offsets, "t", 0, 10, 3)
        for item in items:
            item.event = object()
        running = items[1]
        offsets.settle([items[0], items[2]])
        assert [item.event for item in (items[0], items[2])] == [None, None]
        assert [item.raw for item in (items[0], items[2])] == [None, None]
        assert running.event is not None and running.raw is not None
        assert _positions(offsets.final_commits()) == {("t", 0): 11}

    def test_partitions_move_independently(self) -> None:
        offsets = Offsets()
        a = _fetch(offsets, "t", 0, 0, 1)
        b = _fetch(offsets, "t", 1, 5, 2)
        assert offsets.partition("t", 0) is a[0].ticket.partition
        offsets.settle([a[0], b[0], b[1]])
        assert _positions(offsets.take_commits()) == {("t", 0): 1, ("t", 1): 7}

    def test_revoked_partitions_commit_once_then_never(self) -> None:
        offsets = Offsets()
        items = _fetch(offsets, "t", 0, 0, 3)
        offsets.settle(items[:1])
        revoked = offsets.forget([TopicPartition("t", 0), TopicPartition("t", 9)])
        assert _positions(revoked) == {("t", 0): 1}
        assert items[1].ticket.partition.revoked
        offsets.settle(items[1:])
        assert offsets.take_commits() == []
        assert offsets.final_commits() == []

    def test_nothing_finished_commits_nothing(self) -> None:
        offsets = Offsets()
        _fetch(offsets, "t", 0, 0, 2)
        assert offsets.final_commits() == []
        assert offsets.forget([TopicPartition("t", 0)]) == []
