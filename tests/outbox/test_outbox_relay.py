"""OutboxRelay against real SQLite files and the real PostgreSQL, under asyncio
and trio: order, retries with backoff, dead letters, bad rows, cancellation."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import anyio
import pytest

from anycqrs import RetryPolicy
from anycqrs.brokers import InMemoryMessageBroker, Message
from anycqrs.outbox import (
    OutboxRelay,
    OutboxSettlement,
    OutboxStatus,
    OutboxStore,
)

from .outbox_helpers import BatchRecordingBroker, Clock, Harness, RecordingBroker, event, order_ids

pytestmark = pytest.mark.anyio

NO_DELAY = RetryPolicy(attempts=10, delay=0.0)


async def test_publishes_in_order_in_batches(db: Harness) -> None:
    db.add(*(event(i) for i in range(25)))
    broker = InMemoryMessageBroker()
    with db.store() as store:
        assert isinstance(store, OutboxStore)
        relay = OutboxRelay(store, broker, batch_size=4)
        assert relay.store is store and relay.broker is broker
        assert await relay.publish_pending(limit=6) == 6
        assert await relay.publish_pending() == 19
        assert await relay.publish_pending() == 0
        counts = store.counts()
        records = store.fetch(limit=100)
    assert order_ids(broker.messages) == list(range(25))
    assert counts == {OutboxStatus.PENDING: 0, OutboxStatus.SENT: 25, OutboxStatus.DEAD: 0}
    assert all(r.attempts == 1 and r.sent_at is not None for r in records)
    first = broker.messages[0]
    assert first.topic == "orders" and first.message_name == "OrderPlaced"


async def test_uses_send_many_once_per_batch(db: Harness) -> None:
    db.add(*(event(i) for i in range(6)))
    broker = BatchRecordingBroker()
    with db.store() as store:
        assert await OutboxRelay(store, broker, batch_size=3).publish_pending() == 6
    assert broker.batches == 2 and broker.calls == 0
    assert order_ids(broker.messages) == list(range(6))


async def test_failure_is_retried_with_backoff_then_sent(db: Harness) -> None:
    db.add(event(1))
    failures = 2

    def fail(_message: Message) -> bool:
        nonlocal failures
        failures -= 1
        return failures >= 0

    broker = RecordingBroker(fail=fail)
    clock = Clock()
    policy = RetryPolicy(attempts=5, delay=10.0, multiplier=3.0)
    with db.store() as store:
        relay = OutboxRelay(store, broker, retry=policy, clock=clock)
        assert await relay.publish_pending() == 0
        [record] = store.fetch()
        assert record.status is OutboxStatus.PENDING and record.attempts == 1
        assert record.next_attempt_at == clock.now + timedelta(seconds=10)
        assert record.last_error == "ConnectionError: broker refused OrderPlaced"

        clock.advance(9)
        assert await relay.publish_pending() == 0  # not due yet: no attempt
        assert broker.calls == 1

        clock.advance(1)
        assert await relay.publish_pending() == 0
        [record] = store.fetch()
        assert record.attempts == 2
        assert record.next_attempt_at == clock.now + timedelta(seconds=30)

        clock.advance(30)
        assert await relay.publish_pending() == 1
        [record] = store.fetch()
    assert record.status is OutboxStatus.SENT and record.attempts == 3
    assert order_ids(broker.messages) == [1]


async def test_backoff_is_capped_and_jittered(db: Harness) -> None:
    db.add(event(1))
    broker = RecordingBroker(fail=lambda _message: True)
    clock = Clock()
    policy = RetryPolicy(attempts=None, delay=10.0, multiplier=10.0, max_delay=50.0, jitter=0.5)
    with db.store() as store:
        relay = OutboxRelay(store, broker, retry=policy, clock=clock)
        assert relay.retry is policy
        for attempt in range(1, 4):
            assert await relay.publish_pending() == 0
            [record] = store.fetch()
            wait = (record.next_attempt_at - clock.now).total_seconds()
            base = min(10.0 * 10.0 ** (attempt - 1), 50.0)
            assert base <= wait <= base * 1.5 + 1e-3  # jitter stretches, never shrinks
            assert record.status is OutboxStatus.PENDING and record.attempts == attempt
            clock.advance(wait)
    assert broker.calls == 3  # attempts=None: never dead-lettered


async def test_error_outside_retry_on_is_dead_lettered_at_once(db: Harness) -> None:
    db.add(event(1))
    broker = RecordingBroker(fail=lambda _message: True)  # raises ConnectionError
    with db.store() as store:
        relay = OutboxRelay(store, broker, retry=RetryPolicy(attempts=5, retry_on=TimeoutError))
        assert await relay.publish_pending() == 0
        [record] = store.fetch()
    assert record.status is OutboxStatus.DEAD and record.attempts == 1


def test_max_attempts_replaces_the_policy_attempts(db: Harness) -> None:
    with db.store() as store:
        broker = InMemoryMessageBroker()
        assert OutboxRelay(store, broker).retry.attempts == 10
        relay = OutboxRelay(store, broker, retry=RetryPolicy(attempts=None), max_attempts=4)
        assert relay.retry == RetryPolicy(attempts=4)
        with pytest.raises(TypeError, match="max_attempts"):
            OutboxRelay(store, broker, max_attempts=True)


async def test_dead_letter_after_max_attempts_keeps_row(db: Harness) -> None:
    db.add(event(1), event(2))
    broker = RecordingBroker(fail=lambda m: m.payload["payload"]["order_id"] == 1)
    with db.store() as store:
        relay = OutboxRelay(store, broker, retry=NO_DELAY, max_attempts=3)
        sent = 0
        for _ in range(3):
            sent += await relay.publish_pending()
        assert sent == 1
        assert await relay.publish_pending() == 0
        [dead] = store.fetch(status=OutboxStatus.DEAD)
        assert dead.attempts == 3
        assert dead.last_error == "ConnectionError: broker refused OrderPlaced"
        assert store.counts()[OutboxStatus.DEAD] == 1
        calls = broker.calls
        assert await relay.publish_pending() == 0
        assert broker.calls == calls  # dead rows are left alone

        # An operator fixes the cause and revives the row.
        assert store.retry_dead([dead.id + 1000]) == 0
        assert store.retry_dead([dead.id]) == 1
        good = OutboxRelay(store, InMemoryMessageBroker(), retry=NO_DELAY)
        assert await good.publish_pending() == 1
        assert store.retry_dead() == 0
        assert store.counts()[OutboxStatus.SENT] == 2


async def test_undecodable_row_is_dead_lettered_without_blocking(db: Harness) -> None:
    db.add(event(1), event(2), event(3), event(4))
    with db.store() as store:
        ids = [r.id for r in store.fetch()]
    db.corrupt(ids[1], payload="{not json")
    db.corrupt(ids[2], headers='{"n": 1}')
    broker = InMemoryMessageBroker()
    with db.store() as store:
        assert await OutboxRelay(store, broker).publish_pending() == 2
        dead = store.fetch(status=OutboxStatus.DEAD)
    assert order_ids(broker.messages) == [1, 4]
    assert [r.id for r in dead] == ids[1:3]
    assert dead[0].last_error is not None and "malformed JSON" in dead[0].last_error
    assert dead[1].last_error is not None and "headers" in dead[1].last_error


async def test_failed_batch_is_isolated_message_by_message(db: Harness) -> None:
    db.add(*(event(i) for i in range(5)))
    broker = BatchRecordingBroker(fail=lambda m: m.payload["payload"]["order_id"] == 2)
    with db.store() as store:
        relay = OutboxRelay(store, broker, batch_size=5, retry=NO_DELAY, max_attempts=2)
        assert await relay.publish_pending() == 4
        assert store.counts()[OutboxStatus.PENDING] == 1
        assert await relay.publish_pending() == 0
        assert store.counts()[OutboxStatus.DEAD] == 1
    assert order_ids(broker.messages) == [0, 1, 3, 4]


async def test_hung_publish_times_out_and_is_retried(db: Harness) -> None:
    db.add(event(1))
    never = anyio.Event()

    class HungBroker:
        async def send_message(self, message: Message, /) -> None:
            await never.wait()

    with db.store() as store:
        relay = OutboxRelay(store, HungBroker(), publish_timeout=0.05, lease=5.0)
        with anyio.fail_after(10):
            assert await relay.publish_pending() == 0
        [record] = store.fetch()
    assert record.status is OutboxStatus.PENDING and record.attempts == 1
    assert record.last_error is not None and "publish did not finish" in record.last_error


async def test_lease_guards_against_a_relay_that_came_back(db: Harness) -> None:
    db.add(event(1))
    clock = Clock()
    with db.store() as store, db.store() as other:
        [stale] = store.claim(limit=10, now=clock.now, lease=30.0, token="dead-relay")
        assert other.claim(limit=10, now=clock.now, lease=30.0, token="x") == []
        clock.advance(31)  # the lease ran out: another relay takes over
        broker = InMemoryMessageBroker()
        assert await OutboxRelay(other, broker, clock=clock).publish_pending() == 1
        # The first relay wakes up and reports a failure: ignored (not its claim anymore).
        store.settle(
            "dead-relay",
            OutboxSettlement(dead=[(stale.id, "late")], release=[stale.id]),
            now=clock.now,
        )
        [record] = store.fetch()
    assert record.status is OutboxStatus.SENT and record.last_error is None
    assert len(broker.messages) == 1


async def test_purge_sent(db: Harness) -> None:
    db.add(event(1), event(2))
    clock = Clock()
    with db.store() as store:
        relay = OutboxRelay(store, InMemoryMessageBroker(), batch_size=1, clock=clock)
        assert await relay.publish_pending(limit=1) == 1
        clock.advance(60)
        assert await relay.publish_pending() == 1
        assert store.purge_sent(clock.now - timedelta(seconds=30)) == 1
        assert [order_ids([r.to_message()]) for r in store.fetch()] == [[2]]


async def test_run_publishes_until_cancelled(db: Harness) -> None:
    db.add(*(event(i) for i in range(10)))
    broker = RecordingBroker(target=15)
    with db.store() as store:
        relay = OutboxRelay(store, broker, batch_size=3, poll_interval=3600.0)
        relay.wake()  # not running yet: no-op
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                await tg.start(relay.run)
                db.add(*(event(i) for i in range(10, 15)))
                relay.wake()  # otherwise the relay would idle for an hour
                await broker.reached.wait()
                tg.cancel_scope.cancel()
        assert store.counts()[OutboxStatus.SENT] == 15
    assert order_ids(broker.messages) == list(range(15))


async def test_cancel_finishes_the_batch_in_flight(db: Harness) -> None:
    db.add(event(1), event(2))
    entered = anyio.Event()
    release = anyio.Event()
    sent: list[Message] = []

    class SlowBroker:
        async def send_message(self, message: Message, /) -> None:
            entered.set()
            await release.wait()
            sent.append(message)

    with db.store() as store:
        relay = OutboxRelay(store, SlowBroker(), batch_size=10)
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                await tg.start(relay.run)
                await entered.wait()
                tg.cancel_scope.cancel()
                release.set()
        records = store.fetch()
    assert order_ids(sent) == [1, 2]
    assert [r.status for r in records] == [OutboxStatus.SENT, OutboxStatus.SENT]


async def test_run_survives_store_errors(db: Harness, caplog: pytest.LogCaptureFixture) -> None:
    db.add(event(1))

    class FlakyStore:
        def __init__(self, inner: Any) -> None:
            self.inner = inner
            self.failed = False

        def ensure_schema(self) -> None:
            self.inner.ensure_schema()

        def claim(self, **kwargs: Any) -> Any:
            if not self.failed:
                self.failed = True
                raise OSError("database is gone")
            return self.inner.claim(**kwargs)

        def settle(self, *args: Any, **kwargs: Any) -> None:
            self.inner.settle(*args, **kwargs)

        def close(self) -> None:
            self.inner.close()

    broker = RecordingBroker(target=1)
    with db.store() as inner:
        store = FlakyStore(inner)
        relay = OutboxRelay(store, broker, poll_interval=0.01)
        with caplog.at_level(logging.ERROR, "anycqrs.outbox"), anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                await tg.start(relay.run)
                await broker.reached.wait()
                tg.cancel_scope.cancel()
    assert store.failed
    assert "Outbox relay pass failed" in caplog.text
    assert order_ids(broker.messages) == [1]


async def test_two_relays_in_one_process_publish_each_message_once(db: Harness) -> None:
    total = 120
    db.add(*(event(i) for i in range(total)))
    brokers = [RecordingBroker(), RecordingBroker(), RecordingBroker()]
    stores = [db.store() for _ in brokers]
    relays = [OutboxRelay(store, broker, batch_size=7) for store, broker in zip(stores, brokers)]
    published = 0
    try:
        with anyio.fail_after(60):
            for _ in range(total):  # bounded: every round publishes at least one batch
                async with anyio.create_task_group() as tg:
                    for relay in relays:
                        tg.start_soon(relay.publish_pending)
                published = sum(len(b.messages) for b in brokers)
                if published >= total:
                    break
        counts = stores[0].counts()
    finally:
        for store in stores:
            store.close()
    ids = [i for b in brokers for i in order_ids(b.messages)]
    assert sorted(ids) == list(range(total))  # each exactly once
    for broker in brokers:  # and in order within what each relay published
        assert order_ids(broker.messages) == sorted(order_ids(broker.messages))
    assert counts[OutboxStatus.SENT] == total


def test_relay_validates_its_settings(db: Harness) -> None:
    with db.store() as store:
        broker = InMemoryMessageBroker()
        for kwargs in (
            {"batch_size": 0},
            {"max_attempts": 0},
            {"poll_interval": -1.0},
            {"publish_timeout": 0.0},
            {"lease": 10.0, "publish_timeout": 10.0},
        ):
            with pytest.raises(ValueError):
                OutboxRelay(store, broker, **kwargs)


async def test_failed_publishes_are_logged_once_per_batch_with_counts(
    db: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    db.add(*(event(i) for i in range(5)))
    broker = RecordingBroker(fail=lambda m: m.payload["payload"]["order_id"] % 2 == 0)
    policy = RetryPolicy(attempts=3, delay=1.0)
    with db.store() as store, caplog.at_level(logging.WARNING, "anycqrs.outbox"):
        assert await OutboxRelay(store, broker, retry=policy, batch_size=5).publish_pending() == 2
    summaries = [r for r in caplog.records if "not published" in r.getMessage()]
    assert len(summaries) == 1
    assert summaries[0].levelno == logging.WARNING
    message = summaries[0].getMessage()
    assert "3 of 5 message(s) not published (3 to retry, 0 dead-lettered, 2 sent)" in message
    assert "ConnectionError: broker refused OrderPlaced" in message
