"""The whole consumer contract over `InMemoryTransport`: lanes, per-key order,
retries, dead letters, poison messages, graceful stop and revocation."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import pytest

import anycqrs
from anycqrs import RetryPolicy
from anycqrs.consumers import EventDecoder, Inbound, InMemoryTransport, Lanes, consume
from anycqrs.errors import MessageHandlingError
from anycqrs.events import EventMediator

from .consumer_helpers import FakeSleep, OrderPaid, Seen, paid

Paid = anycqrs.NotificationEvent[OrderPaid]

pytestmark = pytest.mark.anyio


def _transport(*events: Paid, **kw: object) -> InMemoryTransport:
    transport = InMemoryTransport(**kw)  # type: ignore[arg-type]
    for event in events:
        transport.put_event(event)
    return transport


async def _drain(mediator: EventMediator, transport: InMemoryTransport, **kw: object) -> None:
    transport.close()
    with anyio.fail_after(10):
        await consume(mediator, transport, **kw)  # type: ignore[arg-type]


def _one_key_per_lane(lanes: int) -> list[str]:
    """Keys that land in different lanes (string hashes change per process)."""
    by_lane: dict[int, str] = {}
    for i in range(1000):
        by_lane.setdefault(hash(f"key{i}") % lanes, f"key{i}")
    return [by_lane[lane] for lane in range(lanes)]


class TestDelivery:
    """Handled, settled, in per-key order, within the concurrency bound."""

    async def test_every_event_is_handled_and_settled(
        self, mediator: EventMediator, seen: Seen
    ) -> None:
        transport = _transport(*(paid(i) for i in range(5)), batch_size=2)
        await _drain(mediator, transport)
        assert sorted(seen.ids()) == list(range(5))
        assert sorted(r.offset for r in transport.settled) == list(range(5))
        assert transport.fetches == 3
        assert (transport.pending, transport.in_flight, transport.dead_letters) == (0, 0, [])

    async def test_per_key_order_with_concurrency(
        self, mediator: EventMediator, seen: Seen
    ) -> None:
        keys = _one_key_per_lane(4)
        transport = _transport(*(paid(i, key=keys[i % 4]) for i in range(40)))

        async def yield_a_few(event: Paid, call: int) -> None:
            for _ in range(call % 3):
                await anyio.lowlevel.checkpoint()

        seen.behaviour = yield_a_few
        await _drain(mediator, transport, concurrency=4)
        for key in keys:
            ids = [e.payload.order_id for e in seen.events if e.key == key]
            assert ids == sorted(ids) and len(ids) == 10
        assert 1 < seen.most_running <= 4

    async def test_one_lane_is_strictly_sequential(
        self, mediator: EventMediator, seen: Seen
    ) -> None:
        transport = _transport(*(paid(i, key=str(i)) for i in range(10)))
        await _drain(mediator, transport, concurrency=1)
        assert seen.ids() == list(range(10))
        assert seen.most_running == 1

    async def test_runs_again_on_a_new_transport(self, mediator: EventMediator, seen: Seen) -> None:
        await _drain(mediator, _transport(paid(1)))
        await _drain(mediator, _transport(paid(2)))
        assert seen.ids() == [1, 2]

    async def test_lanes_check_their_arguments(self, mediator: EventMediator) -> None:
        with pytest.raises(ValueError, match="concurrency"):
            Lanes(mediator, InMemoryTransport(), concurrency=0)
        with pytest.raises(ValueError, match="batch_size"):
            InMemoryTransport(batch_size=0)
        transport = InMemoryTransport()
        transport.close()
        with pytest.raises(RuntimeError, match="closed"):
            transport.put(b"{}")


class TestRetries:
    """Failing handlers: retried by the policy on the injected sleep, then dead-lettered."""

    async def test_failing_twice_then_succeeding(
        self, mediator: EventMediator, seen: Seen, sleep: FakeSleep
    ) -> None:
        def flaky(event: Paid, call: int) -> None:
            if call < 3:
                raise ConnectionError(f"try {call}")

        seen.behaviour = flaky
        transport = _transport(paid(1))
        retry = RetryPolicy(attempts=3, delay=0.5, multiplier=3.0)
        await _drain(mediator, transport, retry=retry, sleep=sleep)
        assert seen.ids() == [1] and seen.calls == 3
        assert sleep.delays == [0.5, 1.5]
        assert [r.offset for r in transport.settled] == [0]
        assert transport.dead_letters == []

    async def test_exhausted_goes_to_the_dead_letters_and_the_run_goes_on(
        self, mediator: EventMediator, seen: Seen, sleep: FakeSleep
    ) -> None:
        def fail_first(event: Paid, call: int) -> None:
            if event.payload.order_id == 1:
                raise ValueError("bad order")

        seen.behaviour = fail_first
        transport = _transport(paid(1, key="k"), paid(2, key="k"))
        await _drain(mediator, transport, retry=RetryPolicy(attempts=4, delay=1.0), sleep=sleep)
        assert seen.ids() == [2]
        [dead] = transport.dead_letters
        assert (dead.record.offset, dead.attempts) == (0, 4)
        assert isinstance(dead.error, ValueError)
        assert sleep.delays == [1.0, 2.0, 4.0]
        assert [r.offset for r in transport.settled] == [0, 1]

    async def test_errors_outside_retry_on_are_not_retried(
        self, mediator: EventMediator, seen: Seen, sleep: FakeSleep
    ) -> None:
        def fail(event: Paid, call: int) -> None:
            raise KeyError("not retryable")

        seen.behaviour = fail
        transport = _transport(paid(1))
        retry = RetryPolicy(attempts=5, retry_on=(ConnectionError,))
        await _drain(mediator, transport, retry=retry, sleep=sleep)
        assert seen.calls == 1 and sleep.delays == []
        assert transport.dead_letters[0].attempts == 1

    async def test_without_a_dead_letter_destination_the_run_stops_unsettled(
        self, mediator: EventMediator, seen: Seen, sleep: FakeSleep
    ) -> None:
        def fail_second(event: Paid, call: int) -> None:
            if event.payload.order_id == 2:
                raise ValueError("always")

        seen.behaviour = fail_second
        transport = _transport(
            paid(1, key="k"), paid(2, key="k"), paid(3, key="k"), dead_letter_destination=False
        )
        with pytest.raises(MessageHandlingError) as caught:
            await _drain(mediator, transport, retry=RetryPolicy(attempts=2), sleep=sleep)
        assert caught.value.attempts == 2
        assert caught.value.location == "orders@1"
        assert "ValueError: always" in str(caught.value)
        assert [r.offset for r in transport.settled] == [0]
        assert seen.ids() == [1]


class TestPoison:
    """Messages that cannot be decoded: never handled, never retried, settled."""

    async def test_poison_is_dead_lettered_with_zero_attempts(
        self, mediator: EventMediator, seen: Seen, sleep: FakeSleep
    ) -> None:
        transport = InMemoryTransport()
        transport.put(b"{broken", event_name="OrderPaid", topic="orders")
        transport.put(b'{"payload": {"order_id": 1}}', event_name="Unbound")
        transport.put_event(paid(3))
        await _drain(mediator, transport, sleep=sleep)
        assert seen.ids() == [3] and sleep.delays == []
        assert sorted((d.record.offset, d.attempts) for d in transport.dead_letters) == [
            (0, 0),
            (1, 0),
        ]
        assert sorted(r.offset for r in transport.settled) == [0, 1, 2]

    async def test_poison_without_a_destination_is_skipped(
        self, mediator: EventMediator, seen: Seen
    ) -> None:
        transport = InMemoryTransport(dead_letter_destination=False)
        transport.put(None, event_name="OrderPaid")
        transport.put_event(paid(2))
        await _drain(mediator, transport)
        assert seen.ids() == [2]
        assert sorted(r.offset for r in transport.settled) == [0, 1]


class LateTransport(InMemoryTransport):
    """Leaves decoding to the lanes (their `DecodingTransport` seam), as the
    Kafka transport does: `fetch` hands over undecoded items."""

    def __init__(self, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.decoder: EventDecoder | None = None
        self.decoded: list[int] = []
        """The offsets decoded so far, in order."""

    async def fetch(self, decode: EventDecoder, /) -> Sequence[Inbound]:
        self.decoder = decode
        items = await super().fetch(decode)
        for item in items:
            item.event = item.error = None
        return items

    def decode(self, items: Sequence[Inbound], /) -> None:
        assert self.decoder is not None
        fill = self.decoder.batch()
        for item in items:
            record = item.raw
            fill(item, record.value, record.event_name, record.topic, record.key)
            self.decoded.append(record.offset)


class TestLateDecoding:
    """A transport that leaves decoding to the lanes: each chunk is decoded
    just before it is handled, its poison messages handled as fetched ones."""

    async def test_chunks_are_decoded_in_their_lane_before_handling(
        self, mediator: EventMediator, seen: Seen, sleep: FakeSleep
    ) -> None:
        transport = LateTransport(batch_size=3)
        for i in range(6):
            transport.put_event(paid(i, key="k"))
        transport.put(b"{broken", event_name="OrderPaid", topic="orders", key="k")
        transport.put_event(paid(7, key="k"))
        handled_after: list[tuple[int, int]] = []

        def record(event: Paid, call: int) -> None:
            handled_after.append((event.payload.order_id, len(transport.decoded)))

        seen.behaviour = record
        await _drain(mediator, transport, sleep=sleep, concurrency=2)
        assert seen.ids() == [0, 1, 2, 3, 4, 5, 7]
        # a chunk (one fetch of one key) is decoded as a whole, then handled
        assert handled_after == [(0, 3), (1, 3), (2, 3), (3, 6), (4, 6), (5, 6), (7, 8)]
        [dead] = transport.dead_letters
        assert (dead.record.offset, dead.attempts) == (6, 0)
        assert sleep.delays == []
        assert [r.offset for r in transport.settled] == list(range(8))


class CountingTransport(InMemoryTransport):
    """Counts its revocations (the lanes' `CountsRevocations` seam, as the
    Kafka transport does) and records which items `stale` was asked about."""

    def __init__(self) -> None:
        super().__init__()
        self.revocations = 0
        self.asked: list[int] = []

    def revoke(self, *keys: str | None) -> int:
        self.revocations += 1
        return super().revoke(*keys)

    def stale(self, item: Inbound, /) -> bool:
        self.asked.append(item.raw.offset)
        return super().stale(item)


def _block_first_call(seen: Seen) -> tuple[anyio.Event, anyio.Event]:
    """Make the handler's first call set `started` and wait for `release`."""
    started, release = anyio.Event(), anyio.Event()

    async def block_first(event: Paid, call: int) -> None:
        if call == 1:
            started.set()
            await release.wait()

    seen.behaviour = block_first
    return started, release


class TestStopAndRevoke:
    """Graceful stop settles what finished; revocation drops and redelivers."""

    async def test_cancel_settles_what_finished(self, mediator: EventMediator, seen: Seen) -> None:
        started, release = anyio.Event(), anyio.Event()

        async def block_third(event: Paid, call: int) -> None:
            if event.payload.order_id == 2:
                started.set()
                await release.wait()

        seen.behaviour = block_third
        transport = _transport(*(paid(i, key="k") for i in range(5)))
        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:
                await group.start(consume, mediator, transport)
                await started.wait()
                assert transport.settled == []  # a lane settles once per chunk...
                group.cancel_scope.cancel()
        # ...and on the way out, what finished
        assert [r.offset for r in transport.settled] == [0, 1]
        assert seen.ids() == [0, 1]
        assert transport.in_flight == 3  # the blocked one and the two behind it

    async def test_revoked_items_are_dropped_and_delivered_again(
        self, mediator: EventMediator, seen: Seen
    ) -> None:
        started, release = _block_first_call(seen)
        transport = _transport(*(paid(i, key="k") for i in range(3)))
        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:
                await group.start(consume, mediator, transport)
                await started.wait()
                assert transport.revoke("other") == 0
                assert transport.revoke("k") == 3
                release.set()
                transport.close()
        # the first one was running when revoked: it finished but was not
        # settled, so it ran again; the two queued behind it ran once
        assert seen.ids() == [0, 0, 1, 2]
        assert [r.offset for r in transport.settled] == [0, 1, 2]
        assert transport.fetches == 2

    async def test_a_transport_counting_revocations_is_asked_only_after_one(
        self, mediator: EventMediator, seen: Seen
    ) -> None:
        started, release = _block_first_call(seen)
        transport = CountingTransport()
        for i in range(3):
            transport.put_event(paid(i, key="k"))
        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:
                await group.start(consume, mediator, transport)
                await started.wait()
                assert transport.revoke("k") == 3
                release.set()
                transport.close()
        assert seen.ids() == [0, 0, 1, 2]  # the revoked ones still dropped
        assert [r.offset for r in transport.settled] == [0, 1, 2]
        assert transport.asked == [1, 2, 0, 1, 2]  # not the first: no revocation yet

    async def test_records_put_while_running_are_fetched(
        self, mediator: EventMediator, seen: Seen
    ) -> None:
        transport = InMemoryTransport()
        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:
                await group.start(consume, mediator, transport)
                await transport.wait_settled(0)
                transport.put_event(paid(1))
                await transport.wait_settled(1)
                transport.put_event(paid(2))
                transport.put_event(paid(3))
                await transport.wait_settled(3)
                group.cancel_scope.cancel()
        assert sorted(seen.ids()) == [1, 2, 3]
        assert transport.fetches >= 2
