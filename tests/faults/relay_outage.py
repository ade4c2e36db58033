"""Outbox relays publishing through a stalled and refused Kafka connection.

Tansu advertises the port of a fault proxy. The parent commits outbox rows
(`PostgresOutbox`, ~100 per second) while two relay processes publish them
(`OutboxRelay`, batches of 100, ``publish_timeout`` 2 s, lease 4 s, a
librdkafka queue of 20 messages, so a stalled broker fills it). The proxy
stalls the connections for 10 s, then refuses new ones for 8 s.

Checks: every committed row published (duplicates allowed: a timed-out batch
is published again), no dead row, and every batch publish ends within its
``publish_timeout`` (with 2 s of slack for a loaded machine): a publish that
overruns lets the lease expire while the batch is still in flight, and
another relay publishes the same rows.
"""

from __future__ import annotations

import threading
import time

import psycopg

from anycqrs.outbox import PostgresOutbox

from .harness import (
    Child,
    Pool,
    Settings,
    Tansu,
    backend_of,
    create_topic,
    free_port,
    unique,
)
from .ledger import Outcome, read_lines
from .model import tick, ticks_on
from .outbox import settle
from .proxy import FaultProxy

PUBLISH_TIMEOUT = 2.0
SLACK = 2.0


class Writer:
    """Commits one outbox row per event, ~100 per second, in a thread."""

    def __init__(self, dsn: str, table: str, topic: str) -> None:
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.outbox = PostgresOutbox(self.conn, table=table)
        self.outbox.ensure_schema()
        self.topic = topic
        self.committed: list[int] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        while not self.stopping.wait(0.01):
            with self.conn.transaction():
                self.outbox.add(tick(n, self.topic))
            self.committed.append(n)
            n += 1

    def __enter__(self) -> Writer:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stopping.set()
        self.thread.join(30)
        self.conn.close()


def scenario(settings: Settings) -> Outcome:
    outcome = Outcome("outbox-relay-outage", order_promised=False)
    dsn, table = settings.postgres_dsn, f"faults_outbox_{unique()}"
    ledger = str(settings.workdir / "relay-outage.ledger")
    proxy_port = free_port()
    try:
        with Tansu(advertise=proxy_port) as tansu:
            proxy = FaultProxy(tansu.port, port=proxy_port)
            try:
                topic = f"faults-{unique()}"
                create_topic(proxy.address, topic, 3)

                def relayer(generation: int) -> Child:
                    return Child(
                        settings.workdir,
                        f"outage-relay-{generation}",
                        "outbox",
                        "relay",
                        backend=backend_of(generation),
                        dsn=dsn,
                        table=table,
                        bootstrap=proxy.address,
                        ledger=ledger,
                        producer={"queue.buffering.max.messages": 20, "message.timeout.ms": 30000},
                        batch_size=100,
                    )

                relays = Pool(relayer, 2)
                try:
                    with Writer(dsn, table, topic) as writer:
                        for child in relays.all():
                            child.wait_ready()
                        for _ in range(2 if settings.long else 1):
                            time.sleep(3)
                            proxy.stall()
                            time.sleep(10)
                            proxy.resume()
                            time.sleep(3)
                            proxy.refuse()
                            time.sleep(8)
                            proxy.accept()
                            outcome.faults += 2
                        time.sleep(2)
                    settle(outcome, dsn, table, relays)
                finally:
                    relays.stop()
                outcome.problems.extend(relays.crashes)
                published = ticks_on(proxy.address, topic, 3)
            finally:
                proxy.close()
    finally:
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(f"DROP TABLE IF EXISTS {table}")
    outcome.tally(writer.committed, published)
    times = [float(f[1]) for f in read_lines(ledger) if f[0] == "publish"]
    late = [t for t in times if t > PUBLISH_TIMEOUT + SLACK]
    if late:
        outcome.problem(
            f"{len(late)} of {len(times)} batch publishes ran past publish_timeout="
            f"{PUBLISH_TIMEOUT:g} s (longest {max(late):.1f} s): the timeout is not enforced"
        )
    outcome.notes.append(
        f"{len(times)} batch publishes, longest {max(times, default=0):.1f} s; "
        f"{proxy.accepted} connections through the proxy"
    )
    return outcome
