"""RabbitMQ fault tests against the real broker on 127.0.0.1:5672.

Connections are lost two ways: closed server-side with `rabbitmqctl` (only
this test's own connection, found by its `connection_name`; about a second
per close, so only where the server-side close matters), or cut by a
loopback `Forwarder` the service connects through (a network failure, in
milliseconds). A forwarder that starts late is a broker that is not up yet.
The server itself is never stopped. Backoff waits go to a fake `sleep`
(`Backoff`), so no test waits out a real delay."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import Any

import anyio
import anyio.to_thread
import pytest

import anycqrs
from anycqrs._exc import BaseExceptionGroup, real_errors
from anycqrs.brokers import Message
from anycqrs.brokers.rabbitmq import RabbitMQEventConsumer, RabbitMQMessageBroker
from anycqrs.errors import BrokerError, ConnectionLost
from anycqrs.events import EventMediator

from ..broker_helpers import Recorder, paid, running
from .rabbitmq_helpers import (
    Backoff,
    Forwarder,
    Names,
    Warnings,
    admin,
    declare_queue,
    drain,
    forwarding,
)

pytestmark = pytest.mark.anyio

needs_rabbitmqctl = pytest.mark.skipif(
    shutil.which("rabbitmqctl") is None and os.environ.get("CI", "").lower() != "true",
    reason="needs rabbitmqctl (installed with the RabbitMQ server; required in CI)",
)

FAST = anycqrs.RetryPolicy(attempts=50, delay=0.05, max_delay=1.0)


def _rabbitmqctl(*args: str) -> str:
    done = subprocess.run(
        ["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout


def _close_connections(connection_name: str) -> int:
    """Close the connections whose `connection_name` client property is
    `connection_name`; returns how many."""
    marker = f'{{"connection_name","{connection_name}"}}'
    closed = 0
    # `close_connection` takes the connection's pid here (newer servers
    # also take its name)
    for line in _rabbitmqctl("list_connections", "pid", "client_properties").splitlines():
        pid, _, properties = line.partition("\t")
        if marker in properties:
            _rabbitmqctl("close_connection", pid, "test")
            closed += 1
    return closed


async def force_close(connection_name: str) -> None:
    closed = await anyio.to_thread.run_sync(_close_connections, connection_name)
    assert closed == 1


def order_ids(bodies: list[tuple[Any, bytes]]) -> list[int]:
    return [json.loads(body)["payload"]["order_id"] for _, body in bodies]


@needs_rabbitmqctl
async def test_consumer_keeps_consuming_after_its_connection_is_closed(
    rabbitmq_url: str,
    names: Names,
    mediator: EventMediator,
    recorder: Recorder,
    warnings_log: Warnings,
) -> None:
    release = anyio.Event()
    blocked = anyio.Event()

    async def hold_three_once(event: Any, _calls: int) -> None:
        # the first delivery of #3 is in flight while the connection dies
        if event.payload.order_id == 3 and not release.is_set():
            blocked.set()
            await release.wait()

    recorder.behaviour = hold_three_once
    consumer = RabbitMQEventConsumer(
        rabbitmq_url,
        names.queue,
        mediator,
        bindings=[(names.exchange, "#")],
        prefetch=4,
        reconnect=FAST,
        connection_name=names.consumer,
    )
    backoff = Backoff.on(consumer)
    async with running(consumer):
        async with RabbitMQMessageBroker(rabbitmq_url, exchange=names.exchange) as broker:
            await broker.send_many([Message.from_event(paid(i, "o")) for i in range(10)])
            with anyio.fail_after(30):
                await blocked.wait()
            await force_close(names.consumer)
            release.set()  # finishes on the dead channel: must not be acked there
            await broker.send_many([Message.from_event(paid(i, "o")) for i in range(10, 20)])
            await recorder.wait_for(
                lambda: set(recorder.ids()) == set(range(20)) and recorder.ids().count(3) >= 2
            )
            # and it is really consuming on the new connection
            await broker.send_message(Message.from_event(paid(20, "o")))
            await recorder.wait_for(lambda: 20 in recorder.ids())
    assert backoff.delays[0] == 0.05
    assert "connection lost" in warnings_log.attempts()[0]
    assert any("reconnected (attempt" in m for m in warnings_log.messages())
    # every delivery of the new connection was acked; nothing is left behind
    assert await drain(rabbitmq_url, names.queue) == []


async def test_consumer_redeclares_its_topology(
    rabbitmq_url: str,
    names: Names,
    mediator: EventMediator,
    recorder: Recorder,
    warnings_log: Warnings,
) -> None:
    network = Forwarder(rabbitmq_url)
    consumer = RabbitMQEventConsumer(
        network.url,
        names.queue,
        mediator,
        bindings=[(names.exchange, "orders.#")],
        reconnect=FAST,
    )
    Backoff.on(consumer)

    def delete(channel: Any) -> None:
        channel.queue_delete(names.queue)
        channel.exchange_delete(names.exchange)

    def probe(channel: Any) -> int:
        # passive: fails (404, the channel closes) if the queue or exchange is missing
        channel.exchange_declare(names.exchange, passive=True)
        consumers: int = channel.queue_declare(names.queue, passive=True).method.consumer_count
        return consumers

    async with running(network), running(consumer):
        assert await admin(rabbitmq_url, probe) == 1
        await admin(rabbitmq_url, delete)
        assert network.cut() == 1
        with anyio.fail_after(30):
            await warnings_log.reconnected.wait()
        # queue and exchange declared again, and consumed on the new connection
        assert await admin(rabbitmq_url, probe) == 1
        async with RabbitMQMessageBroker(
            rabbitmq_url, exchange=names.exchange, declare_exchange=False
        ) as broker:
            # mandatory: raises BrokerDeliveryError unless the binding is back
            await broker.send_message(Message.from_event(paid(1, "orders.paid")))
        await recorder.wait_for(lambda: 1 in recorder.ids())
    assert recorder.ids() == [1]
    assert await drain(rabbitmq_url, names.queue) == []


@needs_rabbitmqctl
async def test_publish_after_a_lost_connection_reconnects(
    rabbitmq_url: str, names: Names, warnings_log: Warnings
) -> None:
    await declare_queue(rabbitmq_url, names)
    async with forwarding(rabbitmq_url) as network:
        broker = RabbitMQMessageBroker(network.url, reconnect=FAST, connection_name=names.producer)
        backoff = Backoff.on(broker)
        async with broker:
            await broker.send_message(Message.from_event(paid(1, names.queue)))
            await force_close(names.producer)  # closed by the server
            await broker.send_many([Message.from_event(paid(i, names.queue)) for i in (2, 3)])
            assert network.cut() >= 1  # the network fails (and the closed one, if not gone yet)
            await broker.send_message(Message.from_event(paid(4, names.queue)))
    ids = order_ids(await drain(rabbitmq_url, names.queue))
    # at-least-once: each exactly once here, as nothing was in doubt...
    # ...unless the close raced a publish; then a duplicate is allowed
    assert sorted(set(ids)) == [1, 2, 3, 4]
    assert len(backoff.delays) >= 2  # one reconnect per forced close, at least
    assert sum("reconnected (attempt" in m for m in warnings_log.messages()) >= 2


async def test_producer_without_reconnect_raises(rabbitmq_url: str) -> None:
    async with (
        forwarding(rabbitmq_url) as network,
        RabbitMQMessageBroker(network.url, reconnect=None, mandatory=False) as broker,
    ):
        await broker.send_message(Message.from_event(paid(1, "nowhere-but-default")))
        assert network.cut() == 1
        with pytest.raises(BrokerError, match=r"connection|not connected"):
            await broker.send_message(Message.from_event(paid(2, "nowhere-but-default")))


async def test_consumer_without_reconnect_stops(
    rabbitmq_url: str, names: Names, mediator: EventMediator
) -> None:
    with anyio.fail_after(30), pytest.raises(BaseExceptionGroup) as raised:
        async with forwarding(rabbitmq_url) as network, anyio.create_task_group() as group:
            consumer = RabbitMQEventConsumer(network.url, names.queue, mediator, reconnect=None)
            await group.start(consumer.run)
            assert network.cut() == 1
            await anyio.sleep_forever()
    (error,) = real_errors(raised.value)
    assert isinstance(error, ConnectionLost)
    assert "connection lost" in str(error)


async def test_cancel_during_backoff_is_prompt(
    rabbitmq_url: str, names: Names, mediator: EventMediator, warnings_log: Warnings
) -> None:
    with anyio.fail_after(30):
        async with forwarding(rabbitmq_url) as network, anyio.create_task_group() as group:
            consumer = RabbitMQEventConsumer(  # the real anyio.sleep, cancelled
                network.url,
                names.queue,
                mediator,
                reconnect=anycqrs.RetryPolicy(attempts=None, delay=3600.0, max_delay=3600.0),
            )
            await group.start(consumer.run)
            assert network.cut() == 1
            await warnings_log.attempting.wait()  # now waiting an hour to reconnect
            group.cancel_scope.cancel()
    assert any("reconnecting in 3.6e+03s" in m for m in warnings_log.attempts())
    assert not warnings_log.reconnected.is_set()


async def test_consumer_waits_for_a_broker_that_is_not_up_yet(
    rabbitmq_url: str,
    names: Names,
    mediator: EventMediator,
    recorder: Recorder,
    warnings_log: Warnings,
) -> None:
    network = Forwarder(rabbitmq_url)  # not listening yet
    consumer = RabbitMQEventConsumer(
        network.url,
        names.queue,
        mediator,
        bindings=[(names.exchange, "#")],
        reconnect=FAST,
        connection_name=names.consumer,
    )
    backoff = Backoff.on(consumer, hold=True)
    with anyio.fail_after(30):
        async with anyio.create_task_group() as group:
            started = anyio.Event()

            async def run_consumer() -> None:
                await group.start(consumer.run)
                started.set()

            group.start_soon(run_consumer)
            await backoff.waiting.wait()  # refused, backing off
            assert not started.is_set()
            await group.start(network.run)  # the broker comes up
            backoff.release.set()
            await started.wait()
            async with RabbitMQMessageBroker(rabbitmq_url, exchange=names.exchange) as broker:
                await broker.send_message(Message.from_event(paid(1, "o")))
            await recorder.wait_for(lambda: 1 in recorder.ids())
            group.cancel_scope.cancel()
    assert backoff.delays == [0.05]
    assert "cannot connect" in warnings_log.attempts()[0]
    assert any("reconnected (attempt 1)" in m for m in warnings_log.messages())


async def test_producer_waits_for_a_broker_that_is_not_up_yet(
    rabbitmq_url: str, names: Names, warnings_log: Warnings
) -> None:
    await declare_queue(rabbitmq_url, names)
    network = Forwarder(rabbitmq_url)  # not listening yet
    broker = RabbitMQMessageBroker(network.url, reconnect=FAST)
    backoff = Backoff.on(broker, hold=True)
    with anyio.fail_after(30):
        async with anyio.create_task_group() as group:

            async def broker_comes_up() -> None:
                await backoff.waiting.wait()
                await group.start(network.run)
                backoff.release.set()

            group.start_soon(broker_comes_up)
            async with broker:
                await broker.send_message(Message.from_event(paid(1, names.queue)))
            group.cancel_scope.cancel()
    assert order_ids(await drain(rabbitmq_url, names.queue)) == [1]
    assert backoff.delays == [0.05]
    assert "cannot connect" in warnings_log.attempts()[0]
