"""Exactly-once effects with RabbitMQ connections cut: a consumer with a
PostgreSQL inbox behind the fault proxy.

The `rabbitmq` scenario's set-up (consumer and producer each through a
fault proxy of their own, connections reset and stalled past the
heartbeat, one side at a time and both at once) with the handler writing an
effect row in its inbox transaction. Redeliveries after a lost channel are
skipped by the inbox: every confirmed event must have exactly one effect
row, each key's effects in publish order.
"""

from __future__ import annotations

import time

import anyio

from anycqrs.brokers.rabbitmq import RabbitMQEventConsumer, RabbitMQMessageBroker

from .harness import Child, Settings, reachable, unique, wait_until
from .inbox import Tables, guarded_mediator, judge
from .ledger import Outcome
from .model import Producer
from .proxy import FaultProxy
from .rabbitmq import cleanup, cut_and_stall, url
from .worker import ready


async def consume(url: str, queue: str, exchange: str, dsn: str, inbox: str, effects: str) -> None:
    """Child: a `RabbitMQEventConsumer` into the guarded mediator."""
    consumer = RabbitMQEventConsumer(
        url,
        queue,
        guarded_mediator(dsn, inbox, effects),
        bindings=[(exchange, "faults.#")],
        prefetch=32,
    )
    async with anyio.create_task_group() as tg:
        await tg.start(consumer.run)
        ready()


def scenario(settings: Settings) -> Outcome:
    outcome = Outcome("inbox-rabbitmq-proxy")
    port = settings.rabbitmq_port
    if not reachable(port):
        outcome.problem(f"RabbitMQ is not reachable on 127.0.0.1:{port}")
        return outcome
    suffix = unique()
    queue, exchange = f"faults.q.{suffix}", f"faults.x.{suffix}"
    tables = Tables(settings.postgres_dsn, suffix)
    tables.create()
    consumer_proxy, producer_proxy = FaultProxy(port), FaultProxy(port)
    child = Child(
        settings.workdir,
        "inbox-rabbitmq-consumer",
        "inbox_rabbitmq",
        "consume",
        backend="trio",
        url=url(consumer_proxy.port),
        queue=queue,
        exchange=exchange,
        dsn=settings.postgres_dsn,
        inbox=tables.inbox,
        effects=tables.effects,
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
        if not wait_until(
            lambda: sent <= set(tables.effects_in_order()) or not child.alive(), 60, 0.5
        ):
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
    try:
        judge(outcome, producer.sent, tables.effects_in_order())
    finally:
        tables.drop()
    return outcome
