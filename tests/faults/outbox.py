"""Outbox writers and relays SIGKILLed on PostgreSQL.

Two writer processes commit domain rows and their outbox events in one
transaction each (one in five transactions is rolled back on purpose; a
SIGKILL mid-transaction rolls back too). Two relay processes
(`PostgresOutboxStore` + `OutboxRelay`, lease 4 s) publish to Kafka. Every
1–3 s a writer or a relay is SIGKILLed and replaced.

The domain table is the truth: every committed row's event must be on the
topic (duplicates allowed: a relay killed after publishing and before
marking the rows sent leaves them to the next one), no rolled-back event may
ever be published, and no row may be dead. The first writer starts on a
fresh database with a rolled-back transaction, then a committed one (a
schema cache must not believe in a table that was rolled back). Per-key
order is not promised across concurrent relays (not measured).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import anyio
import anyio.to_thread
import psycopg

from anycqrs.brokers import Message
from anycqrs.brokers.kafka import KafkaMessageBroker
from anycqrs.outbox import OutboxRelay, OutboxStatus, PostgresOutbox, PostgresOutboxStore

from .harness import (
    Child,
    Pool,
    Settings,
    Tansu,
    backend_of,
    create_topic,
    unique,
    wait_until,
)
from .ledger import LedgerFile, Outcome, read_lines
from .model import tick, ticks_on
from .worker import ready

PARTITIONS = 3


class RolledBack(Exception):
    pass


async def write(
    dsn: str, table: str, domain: str, topic: str, ledger: str, start: int, probe: bool
) -> None:
    """Child: commit (domain row + outbox event) transactions until killed."""
    book = LedgerFile(ledger)
    conn = psycopg.connect(dsn, autocommit=True)
    outbox = PostgresOutbox(conn, table=table)

    def place(n: int, rollback: bool) -> None:
        try:
            with conn.transaction():
                conn.execute(f"INSERT INTO {domain} (n) VALUES (%s)", (n,))
                outbox.add(tick(n, topic))
                time.sleep(0.003)
                if rollback:
                    book.write("rb", n)
                    raise RolledBack
        except RolledBack:
            pass

    n = start
    if probe:
        await anyio.to_thread.run_sync(place, n, True)
        try:
            await anyio.to_thread.run_sync(place, n + 1, False)
        except Exception as error:
            book.write(
                "error", f"after a rolled-back first transaction on a fresh table: {error!r}"
            )
        n += 2
    ready()
    while True:
        try:
            await anyio.to_thread.run_sync(place, n, n % 5 == 0)
        except Exception as error:
            book.write("error", repr(error).replace("\n", " "))
            await anyio.sleep(0.2)
        n += 1
        await anyio.sleep(0.005)


class TimedBroker:
    """A broker that records how long each batch publish took (``publish
    <seconds> <messages> <outcome>`` lines in a ledger)."""

    def __init__(self, broker: KafkaMessageBroker, book: LedgerFile) -> None:
        self.broker = broker
        self.book = book

    async def send_message(self, message: Message, /) -> None:
        await self.send_many([message])

    async def send_many(self, messages: Sequence[Message], /) -> None:
        started, outcome = time.monotonic(), "cancelled"
        try:
            await self.broker.send_many(messages)
            outcome = "ok"
        except Exception as error:
            outcome = type(error).__name__
            raise
        finally:
            self.book.write("publish", f"{time.monotonic() - started:.3f}", len(messages), outcome)


async def relay(
    dsn: str,
    table: str,
    bootstrap: str,
    ledger: str | None = None,
    producer: dict[str, Any] | None = None,
    batch_size: int = 50,
) -> None:
    """Child: an `OutboxRelay` from PostgreSQL to Kafka (lease 4 s, publish
    timeout 2 s); with a ``ledger``, each batch publish is timed."""
    with PostgresOutboxStore(dsn, table=table) as store:
        config = {"bootstrap.servers": bootstrap, **(producer or {})}
        async with KafkaMessageBroker(config) as broker:
            target: Any = broker if ledger is None else TimedBroker(broker, LedgerFile(ledger))
            service = OutboxRelay(
                store,
                target,
                batch_size=batch_size,
                lease=4.0,
                publish_timeout=2.0,
                poll_interval=0.2,
            )
            async with anyio.create_task_group() as tg:
                await tg.start(service.run)
                ready()


def settle(outcome: Outcome, dsn: str, table: str, relays: Pool) -> None:
    """Wait (90 s at most) until the relays published every pending row;
    a row left pending or dead is a failure."""
    with PostgresOutboxStore(dsn, table=table) as store:

        def settled() -> bool:
            relays.replace_crashed()
            return store.counts().get(OutboxStatus.PENDING, 0) == 0

        if not wait_until(settled, 90, 0.5):
            outcome.problem("rows still pending 90 s after the last fault")
        dead = store.counts().get(OutboxStatus.DEAD, 0)
    if dead:
        outcome.problem(f"{dead} outbox row(s) dead")


def scenario(settings: Settings) -> Outcome:
    outcome = Outcome("outbox-kill", order_promised=False)
    rng = settings.rng(outcome.name)
    dsn = settings.postgres_dsn
    suffix = unique()
    table, domain = f"faults_outbox_{suffix}", f"faults_domain_{suffix}"
    ledger = str(settings.workdir / "outbox.ledger")
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f"CREATE TABLE {domain} (n bigint PRIMARY KEY)")
    try:
        with Tansu() as tansu:
            topic = f"faults-{unique()}"
            create_topic(tansu.bootstrap, topic, PARTITIONS)
            common: dict[str, Any] = {"dsn": dsn, "table": table}

            def writer(generation: int) -> Child:
                return Child(
                    settings.workdir,
                    f"outbox-writer-{generation}",
                    "outbox",
                    "write",
                    backend=backend_of(generation),
                    domain=domain,
                    topic=topic,
                    ledger=ledger,
                    start=generation * 1_000_000,
                    probe=generation == 0,
                    **common,
                )

            def relayer(generation: int) -> Child:
                return Child(
                    settings.workdir,
                    f"outbox-relay-{generation}",
                    "outbox",
                    "relay",
                    backend=backend_of(generation + 1),
                    bootstrap=tansu.bootstrap,
                    **common,
                )

            writers = Pool(writer, 1)
            writers.children[0].wait_ready()
            writers.grow()
            relays = Pool(relayer, 2)
            try:
                deadline = time.monotonic() + settings.duration(15, 40)
                while time.monotonic() < deadline:
                    time.sleep(rng.uniform(1.0, 3.0))
                    rng.choice((writers, relays)).kill_one(rng)
                    outcome.faults += 1
                    writers.replace_crashed()
                    relays.replace_crashed()
                writers.stop()
                settle(outcome, dsn, table, relays)
            finally:
                writers.stop()
                relays.stop()
            outcome.problems.extend(writers.crashes + relays.crashes)
            published = ticks_on(tansu.bootstrap, topic, PARTITIONS)
        with psycopg.connect(dsn, autocommit=True) as admin:
            committed = [row[0] for row in admin.execute(f"SELECT n FROM {domain}")]
    finally:
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(f"DROP TABLE IF EXISTS {domain}")
            admin.execute(f"DROP TABLE IF EXISTS {table}")
    lines = read_lines(ledger)
    rolled_back = {int(f[1]) for f in lines if f[0] == "rb"}
    errors = [" ".join(f[1:]) for f in lines if f[0] == "error"]
    outcome.tally(committed, published)
    leaked = rolled_back & set(published)
    if leaked:
        outcome.problem(f"{len(leaked)} rolled-back event(s) published, e.g. {min(leaked)}")
    if errors:
        outcome.problem(f"{len(errors)} writer transaction(s) failed; first: {errors[0][:300]}")
    outcome.notes.append(
        f"{len(rolled_back)} transactions rolled back on purpose, "
        f"{writers.generation} writers and {relays.generation} relays in all"
    )
    return outcome
