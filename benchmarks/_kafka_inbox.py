"""Kafka consumption through the inbox: ``kafka/consume-inbox-postgres`` and
``kafka/consume-inbox-sqlite`` beside ``kafka/consume``.

The same events as ``kafka/consume`` (``benchmarks.kafka_bench``), the same
``KafkaEventConsumer`` (16 lanes), into an ``EventMediator`` whose inbox
guards the handler; the handler writes one effect row through its
``InboxTransaction`` (one ``tx.run``). Per message that is, on PostgreSQL,
three round trips (``BEGIN`` + the inbox ``INSERT`` pipelined, the effect
``INSERT``, ``COMMIT``) and three worker-thread hops; on SQLite three hops
and one WAL commit. ``one_hop=True`` (what the catalog's columns run): the
store defers its begin (``defer_begin=True``) and the handler's ``run`` says
``commit=True``, so the same round trips take one hop. The baseline column is plain
``kafka/consume`` (no inbox) on the same topic, so the ratio is the price of
exactly-once effects. Timed from the first event handled to the last.

``batch=True`` (a transaction per lane chunk, a savepoint per message):
per message two round trips (``RELEASE``/``SAVEPOINT``/the inbox ``INSERT``
pipelined, the effect ``INSERT``) and one hop with ``one_hop``, two without;
``BEGIN`` and ``COMMIT`` once per chunk.

``optimistic=True`` (batch mode without savepoints, PostgreSQL): the
chunk's inbox rows are claimed in one statement in the round trip of
``BEGIN``, so per message **one** round trip (the effect ``INSERT``) and one
hop (with or without ``one_hop``: a claimed row is looked up on the loop);
per chunk the claim and the ``COMMIT``. What the catalog's PostgreSQL
columns run (the fastest form; the SQLite columns run batch mode).

``deferred=True`` (the ``-deferred`` workloads): the handler writes with
``tx.defer`` instead of ``tx.run``. In an optimistic chunk the write is
queued and runs in the commit's hop, pipelined with the other messages'
writes and the ``COMMIT``: per message **no** hop and no round trip of its
own; per chunk two hops and two round trips (the claim, then the writes and
the ``COMMIT`` in one pipeline). SQLite has no optimistic chunks: there
``defer`` runs at once (like ``run`` without ``commit=True``).

Run alone: ``python -m benchmarks._kafka_inbox HOST:PORT [DSN] [COUNT] [--batch]``
(``--batch``: only the batch-mode rows).
"""

from __future__ import annotations

import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import lagom

from anycqrs.brokers.kafka import KafkaEventConsumer
from anycqrs.events import EventHandler, EventMap
from anycqrs.events.bootstrap import bootstrap
from anycqrs.inbox import InboxStore, InboxTransaction, PostgresInbox, SqliteInbox
from anycqrs.messages import NotificationEvent

from . import kafka_bench
from .kafka_bench import GROUP_SETTINGS, BenchPaid

ROUND_TRIPS = {"postgres": 3, "sqlite": 0}
"""Database round trips per message (SQLite is in-process: none)."""


class _Progress:
    def __init__(
        self,
        count: int,
        write: Callable[[Any, int], None],
        *,
        one_hop: bool = False,
        deferred: bool = False,
    ) -> None:
        self.count = count
        self.one_hop = one_hop
        self.deferred = deferred
        self.write = write
        self.seen = 0
        self.first: float | None = None
        self.done = anyio.Event()


class _Effect(EventHandler[NotificationEvent[BenchPaid]]):
    def __init__(self, tx: InboxTransaction, progress: _Progress) -> None:
        self.tx = tx
        self.progress = progress

    async def handle(self, event: NotificationEvent[BenchPaid]) -> None:
        progress = self.progress
        if progress.first is None:
            progress.first = time.perf_counter()
        if progress.deferred:
            await self.tx.defer(progress.write, event.payload.order_id)
        else:
            await self.tx.run(progress.write, event.payload.order_id, commit=progress.one_hop)
        progress.seen += 1
        if progress.seen >= progress.count:
            progress.done.set()


async def _consume(
    bootstrap_servers: str, topic: str, inbox: InboxStore, progress: _Progress, lanes: int
) -> float:
    container = lagom.Container()
    container[_Progress] = progress

    def bind(events: EventMap) -> None:
        events.bind(NotificationEvent[BenchPaid], _Effect)

    mediator = bootstrap(di_container=container, events_mapper=bind, inbox=inbox)
    consumer = KafkaEventConsumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": f"bench-inbox-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            **GROUP_SETTINGS,
        },
        [topic],
        mediator,
        max_concurrency=lanes,
    )
    async with anyio.create_task_group() as group:
        await group.start(consumer.run)
        with anyio.fail_after(600):
            await progress.done.wait()
        end = time.perf_counter()
        group.cancel_scope.cancel()
    assert progress.first is not None
    return end - progress.first


def consume_postgres(
    bootstrap_servers: str,
    topic: str,
    count: int,
    dsn: str,
    backend: str = "asyncio",
    lanes: int = 16,
    one_hop: bool = False,
    batch: bool = False,
    optimistic: bool = False,
    deferred: bool = False,
) -> dict[str, Any]:
    """The PostgreSQL inbox (own connections, one per lane); `one_hop`:
    ``defer_begin=True`` and the handler's ``run(..., commit=True)``;
    `batch`: ``batch=True`` (one transaction per lane chunk, a savepoint
    per message); `optimistic` (with `batch`): no savepoints, the chunk's
    rows claimed in one statement; `deferred`: the handler writes with
    ``tx.defer`` instead of ``tx.run`` (queued to the optimistic chunk's
    commit)."""
    import psycopg

    suffix = uuid.uuid4().hex[:8]
    inbox_table, effects = f"bench_inbox_{suffix}", f"bench_effects_{suffix}"
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(f"CREATE TABLE {effects} (order_id INTEGER NOT NULL)".encode())
    insert = f"INSERT INTO {effects} (order_id) VALUES (%s)".encode()
    inbox = PostgresInbox(
        dsn,
        table=inbox_table,
        max_transactions=lanes,
        defer_begin=one_hop,
        batch=batch,
        optimistic=optimistic,
    )
    progress = _Progress(
        count,
        lambda connection, order_id: connection.execute(insert, (order_id,)),
        one_hop=one_hop,
        deferred=deferred,
    )
    try:
        seconds = anyio.run(
            _consume, bootstrap_servers, topic, inbox, progress, lanes, backend=backend
        )
    finally:
        inbox.close()
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(f"DROP TABLE IF EXISTS {effects}".encode())
            connection.execute(f"DROP TABLE IF EXISTS {inbox_table}".encode())
    return kafka_bench._result(
        f"anycqrs KafkaEventConsumer + PostgresInbox ({backend}, {lanes} lanes, "
        f"{_form(one_hop, batch, optimistic, deferred and optimistic)})",
        count,
        seconds,
        round_trips_per_message=0
        if deferred and optimistic
        else 1
        if optimistic
        else 2
        if batch
        else ROUND_TRIPS["postgres"],
        thread_hops_per_message=0
        if deferred and optimistic
        else 1
        if one_hop or optimistic
        else 2
        if batch
        else 3,
    )


def _form(one_hop: bool, batch: bool, optimistic: bool = False, deferred: bool = False) -> str:
    hops = (
        "deferred writes, 2 hops per chunk"
        if deferred
        else "1 hop"
        if one_hop
        else "1 hop, begin not deferred"
        if optimistic
        else "2 hops"
        if batch
        else "3 hops"
    )
    mode = "optimistic batch" if optimistic else "batch"
    return f"{mode}, {hops}" if batch else hops


def consume_sqlite(
    bootstrap_servers: str,
    topic: str,
    count: int,
    backend: str = "asyncio",
    lanes: int = 16,
    one_hop: bool = False,
    batch: bool = False,
    deferred: bool = False,
) -> dict[str, Any]:
    """The SQLite inbox (one connection, WAL, one transaction at a time);
    `batch`: one transaction per lane chunk; `deferred`: the handler writes
    with ``tx.defer`` (SQLite has no optimistic chunks: it runs at once,
    like ``run`` without ``commit=True``)."""
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "bench.sqlite3"
        with sqlite3.connect(path) as connection:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("CREATE TABLE effects (order_id INTEGER NOT NULL)")
        inbox = SqliteInbox(path, defer_begin=one_hop, batch=batch)
        progress = _Progress(
            count,
            lambda connection, order_id: connection.execute(
                "INSERT INTO effects (order_id) VALUES (?)", (order_id,)
            ),
            one_hop=one_hop,
            deferred=deferred,
        )
        try:
            seconds = anyio.run(
                _consume, bootstrap_servers, topic, inbox, progress, lanes, backend=backend
            )
        finally:
            inbox.close()
    return kafka_bench._result(
        f"anycqrs KafkaEventConsumer + SqliteInbox ({backend}, {lanes} lanes, "
        f"{_form(one_hop, batch)}{', tx.defer' if deferred else ''})",
        count,
        seconds,
        round_trips_per_message=ROUND_TRIPS["sqlite"],
        thread_hops_per_message=1 if one_hop else 2 if batch else 3,
    )


def consume(
    tansu: Any, column: str, kind: str, dsn: str, deferred: bool = False
) -> Callable[[int], float]:
    """The catalog's measuring function for one column (see `_kafka.consume`):
    the asyncio and trio columns run the fastest form docs/inbox.md
    recommends: the one-hop handler (``defer_begin=True`` and
    ``run(..., commit=True)``) in batch mode, optimistic on PostgreSQL;
    `deferred`: the handler writes with ``tx.defer`` instead (the
    ``-deferred`` workloads)."""

    def measure(count: int) -> float:
        topic = tansu.filled_topic(count)
        bootstrap_servers = tansu.bootstrap()
        if column == "baseline":
            result = kafka_bench.anycqrs_consume(bootstrap_servers, topic, count)
        elif kind == "postgres":
            result = consume_postgres(
                bootstrap_servers,
                topic,
                count,
                dsn,
                backend=column,
                one_hop=True,
                batch=True,
                optimistic=True,
                deferred=deferred,
            )
        else:
            result = consume_sqlite(
                bootstrap_servers,
                topic,
                count,
                backend=column,
                one_hop=True,
                batch=True,
                deferred=deferred,
            )
        return float(result["seconds"])

    return measure


if __name__ == "__main__":  # pragma: no cover
    servers = sys.argv[1]
    postgres = sys.argv[2] if len(sys.argv) > 2 else "postgresql://postgres@127.0.0.1:5432/postgres"
    total = int(sys.argv[3]) if len(sys.argv) > 3 else 20_000
    filled = str(kafka_bench.plain_produce(servers, total)["topic"])
    runs: list[tuple[bool, Callable[[], dict[str, Any]]]] = [
        (False, lambda: kafka_bench.anycqrs_consume(servers, filled, total)),
        (False, lambda: consume_postgres(servers, filled, total, postgres)),
        (False, lambda: consume_postgres(servers, filled, total, postgres, one_hop=True)),
        (False, lambda: consume_postgres(servers, filled, total, postgres, backend="trio")),
        (
            False,
            lambda: consume_postgres(
                servers, filled, total, postgres, backend="trio", one_hop=True
            ),
        ),
        (True, lambda: consume_postgres(servers, filled, total, postgres, batch=True)),
        (
            True,
            lambda: consume_postgres(servers, filled, total, postgres, one_hop=True, batch=True),
        ),
        (
            True,
            lambda: consume_postgres(
                servers, filled, total, postgres, backend="trio", one_hop=True, batch=True
            ),
        ),
        (
            True,
            lambda: consume_postgres(
                servers, filled, total, postgres, one_hop=True, batch=True, optimistic=True
            ),
        ),
        (
            True,
            lambda: consume_postgres(
                servers,
                filled,
                total,
                postgres,
                backend="trio",
                one_hop=True,
                batch=True,
                optimistic=True,
            ),
        ),
        (
            True,
            lambda: consume_postgres(servers, filled, total, postgres, batch=True, optimistic=True),
        ),
        (
            True,
            lambda: consume_postgres(
                servers,
                filled,
                total,
                postgres,
                one_hop=True,
                batch=True,
                optimistic=True,
                deferred=True,
            ),
        ),
        (False, lambda: consume_sqlite(servers, filled, total)),
        (False, lambda: consume_sqlite(servers, filled, total, one_hop=True)),
        (True, lambda: consume_sqlite(servers, filled, total, one_hop=True, batch=True)),
        (
            True,
            lambda: consume_sqlite(
                servers, filled, total, backend="trio", one_hop=True, batch=True
            ),
        ),
    ]
    only_batch = "--batch" in sys.argv  # only the batch-mode rows
    rows = [run() for batched, run in runs if batched or not only_batch]
    for row in rows:
        print(f"{row['name']:<72} {row['rate']:>9,.0f} msg/s  ({row['seconds']:.2f}s)")
