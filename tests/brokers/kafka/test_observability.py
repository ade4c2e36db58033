"""What a Kafka client tells about itself (issue 10, items 4 to 6):
librdkafka's log lines in Python `logging`, the consumer's assignment status
and its warning when it gets no partition, and record keys that are not
UTF-8."""

from __future__ import annotations

import json
import logging

import anyio
import pytest

import anycqrs
from anycqrs.brokers import Message
from anycqrs.brokers.kafka import KafkaConsumerStatus, KafkaEventConsumer, KafkaMessageBroker
from anycqrs.events import EventMediator

from ..broker_helpers import (
    Recorder,
    committed,
    consumer_config,
    create_topic,
    paid,
    plain_produce,
    running,
)

pytestmark = pytest.mark.anyio

LIBRDKAFKA = "anycqrs.brokers.kafka.librdkafka"


async def test_librdkafka_logs_go_to_python_logging_not_stderr(
    mediator: EventMediator,
    unique: str,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Producer, consumer and dead-letter producer all fail to connect: each
    one's lines come through its own logger, none raw on stderr."""
    caplog.set_level(logging.DEBUG, logger=LIBRDKAFKA)
    unreachable = {"bootstrap.servers": "127.0.0.1:1", "reconnect.backoff.ms": 100}
    consumer = KafkaEventConsumer(
        {**unreachable, "group.id": f"g-{unique}"},
        [f"logs-{unique}"],
        mediator,
        dead_letter_topic=f"logs-{unique}.dlt",
        close_timeout=5,
    )
    with anyio.fail_after(30):
        async with KafkaMessageBroker({**unreachable, "message.timeout.ms": 300}) as broker:
            async with running(consumer):
                with anyio.move_on_after(0.5):
                    await broker.send_message(Message.from_event(paid(1, f"logs-{unique}")))

                def every_client_logged() -> bool:
                    names = {r.name for r in caplog.records}
                    return {f"{LIBRDKAFKA}.{n}" for n in ("producer", "consumer", "dlq")} <= names

                while not every_client_logged():
                    await anyio.sleep(0.1)
    failures = [
        r
        for r in caplog.records
        if r.name.startswith(LIBRDKAFKA) and "127.0.0.1:1" in r.getMessage()
    ]
    assert failures and all(r.levelno >= logging.DEBUG for r in failures)
    raw = [line for line in capfd.readouterr().err.splitlines() if line.startswith("%")]
    assert raw == []


async def test_a_member_without_partitions_warns_and_says_so_in_its_status(
    kafka_bootstrap: str, unique: str, mediator: EventMediator, caplog: pytest.LogCaptureFixture
) -> None:
    topic, group = f"idle-{unique}", f"g-{unique}"
    await create_topic(kafka_bootstrap, topic, partitions=1)
    config = consumer_config(kafka_bootstrap, group)
    first = KafkaEventConsumer(config, [topic], mediator, unassigned_warning=1.0)
    second = KafkaEventConsumer(config, [topic], mediator, unassigned_warning=1.0)
    assert first.status == KafkaConsumerStatus(False, frozenset(), None, None)
    caplog.set_level(logging.WARNING, logger="anycqrs.brokers.kafka")

    def idle_warned() -> bool:
        return any("no partition" in r.getMessage() for r in caplog.records)

    async with running(first), running(second):
        with anyio.fail_after(40):
            while True:
                statuses = sorted((first.status, second.status), key=lambda s: len(s.assigned))
                idle, busy = statuses
                if busy.assigned and not idle.assigned and idle_warned():
                    break
                await anyio.sleep(0.1)
        assert busy.assigned == {(topic, 0)} and busy.unassigned_since is None
        assert busy.unassigned_for is None and busy.running and idle.running
        assert idle.unassigned_since is not None
        assert idle.unassigned_for is not None and idle.unassigned_for >= 1.0
    warning = next(r for r in caplog.records if "no partition" in r.getMessage())
    assert warning.levelno == logging.WARNING and topic in warning.getMessage()
    assert first.status.running is False and second.status.assigned == frozenset()


async def test_a_key_that_is_not_utf8_does_not_dead_letter_a_valid_event(
    kafka_bootstrap: str, unique: str, mediator: EventMediator, recorder: Recorder
) -> None:
    topic, group = f"key-{unique}", f"g-{unique}"
    await create_topic(kafka_bootstrap, topic, partitions=1)
    header = [("event_name", b"OrderPaid")]
    records = [
        (topic, json.dumps({"payload": {"order_id": i}}).encode(), key, header)
        for i, key in enumerate([b"\xff\xfe", b"ok", b"\xff\xfe", b"caf\xc3\xa9"])
    ]
    await plain_produce(kafka_bootstrap, records)
    consumer = KafkaEventConsumer(consumer_config(kafka_bootstrap, group), [topic], mediator)
    async with running(consumer):
        await recorder.wait_count(4)
    assert sorted((e.payload.order_id, e.key) for e in recorder.events) == [
        (0, "\\xff\\xfe"),
        (1, "ok"),
        (2, "\\xff\\xfe"),
        (3, "café"),
    ]
    assert all(isinstance(e, anycqrs.NotificationEvent) for e in recorder.events)
    assert await committed(kafka_bootstrap, group, topic) == [4]
