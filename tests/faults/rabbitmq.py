"""RabbitMQ connections cut and stalled past the heartbeat, through the
fault proxy (the shared RabbitMQ itself is never touched: the scenario only
declares and deletes its own exchange and queue).

A consumer process (`RabbitMQEventConsumer`, heartbeat 2 s) and the parent's
producer (`RabbitMQMessageBroker`, publisher confirms, heartbeat 2 s) each
connect through a fault proxy of their own. While keyed events flow, the
proxies reset the connections and stall them for 6 s (three heartbeats), one
side at a time and both at once. Every confirmed event must be handled
(duplicates allowed: redeliveries after a lost channel), each key's events
first handled in the order they were published.
"""

from __future__ import annotations

import time

import anyio
import pika

from anycqrs.brokers.rabbitmq import RabbitMQEventConsumer, RabbitMQMessageBroker

from .harness import Child, Settings, reachable, unique, wait_until
from .ledger import Outcome
from .model import Producer, handled, order_of, recording_mediator
from .proxy import FaultProxy
from .worker import ready

OPTIONS = "heartbeat=2&socket_timeout=3&stack_timeout=5&connection_attempts=1"


def url(port: int) -> str:
    return f"amqp://guest:guest@127.0.0.1:{port}/%2F?{OPTIONS}"


def cut_and_stall(consumer_proxy: FaultProxy, producer_proxy: FaultProxy, deadline: float) -> int:
    """Until `deadline`: cut the consumer's, the producer's and both connections, then
    stall each for 6 s (past the heartbeat), 2 s apart; the number of faults made."""
    faults = 0
    cycle = [(consumer_proxy,), (producer_proxy,), (consumer_proxy, producer_proxy)]
    while time.monotonic() < deadline:
        for proxies in cycle:
            for proxy in proxies:
                proxy.cut()
            faults += 1
            time.sleep(2)
        for proxies in cycle:
            for proxy in proxies:
                proxy.stall()
            time.sleep(6)
            for proxy in proxies:
                proxy.resume()
            faults += 1
            time.sleep(2)
    return faults


async def consume(url: str, queue: str, exchange: str, ledger: str) -> None:
    """Child: a `RabbitMQEventConsumer` recording what it handles."""
    consumer = RabbitMQEventConsumer(
        url,
        queue,
        recording_mediator(ledger, 0.002),
        bindings=[(exchange, "faults.#")],
        prefetch=32,
    )
    async with anyio.create_task_group() as tg:
        await tg.start(consumer.run)
        ready()


def cleanup(port: int, queue: str, exchange: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url(port)))
    try:
        channel = connection.channel()
        channel.queue_delete(queue)
        channel.exchange_delete(exchange)
    finally:
        connection.close()


def scenario(settings: Settings) -> Outcome:
    outcome = Outcome("rabbitmq-proxy")
    port = settings.rabbitmq_port
    if not reachable(port):
        outcome.problem(f"RabbitMQ is not reachable on 127.0.0.1:{port}")
        return outcome
    suffix = unique()
    queue, exchange = f"faults.q.{suffix}", f"faults.x.{suffix}"
    ledger = str(settings.workdir / "rabbitmq.ledger")
    consumer_proxy, producer_proxy = FaultProxy(port), FaultProxy(port)
    child = Child(
        settings.workdir,
        "rabbitmq-consumer",
        "rabbitmq",
        "consume",
        backend="trio",
        url=url(consumer_proxy.port),
        queue=queue,
        exchange=exchange,
        ledger=ledger,
    )
    try:
        if not child.wait_ready():
            outcome.problem(child.crashed() or "the consumer did not start")
            return outcome

        def broker() -> RabbitMQMessageBroker:
            return RabbitMQMessageBroker(url(producer_proxy.port), exchange=exchange)

        with Producer(broker, "faults.t", rate=100) as producer:
            time.sleep(2)
            deadline = time.monotonic() + settings.duration(1, 60)
            outcome.faults += cut_and_stall(consumer_proxy, producer_proxy, deadline)
        sent = set(producer.sent)
        if not wait_until(lambda: sent <= set(handled(ledger)) or not child.alive(), 60, 0.5):
            outcome.problem("the consumer did not handle every confirmed event within 60 s")
        crash = child.crashed()
        if crash:
            outcome.problem(crash)
        outcome.notes.append(
            f"{len(producer.errors)} publish error(s) retried; connections through the proxies: "
            f"consumer {consumer_proxy.accepted}, producer {producer_proxy.accepted}"
        )
    finally:
        child.stop()
        consumer_proxy.close()
        producer_proxy.close()
        cleanup(port, queue, exchange)
    outcome.tally(producer.sent, handled(ledger), order_of)
    return outcome
