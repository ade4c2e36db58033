"""The Kafka producer under a stalled, reset and refused connection.

Tansu advertises the port of a loopback fault proxy, so every connection of
the producer goes through it. A `KafkaMessageBroker` (``message.timeout.ms``
5000) publishes keyed events in batches of 10 while the proxy stalls the
connections (shorter and longer than the message timeout), resets them, and
refuses new ones for longer than the timeout. A batch that raises
`BrokerDeliveryError` is published again — only its failed messages when the
error says which ones (``failures`` message ids), the whole batch otherwise.

Afterwards the topic is read back: every confirmed event must be on it
(duplicates allowed: a failure report may hide a delivery), each key's events
in order. Failure reports without a message id are a failure (the caller
cannot retry exactly what failed), and so are librdkafka log lines written
raw to stderr instead of going through Python ``logging``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import anyio

from anycqrs.brokers import Message
from anycqrs.brokers.kafka import KafkaMessageBroker
from anycqrs.errors import BrokerDeliveryError

from .harness import RawLogLines, Settings, Tansu, create_topic, free_port, unique
from .ledger import Outcome
from .model import order_of, tick, ticks_on
from .proxy import FaultProxy

PARTITIONS = 3
PRODUCER = {
    "message.timeout.ms": 5000,
    "reconnect.backoff.ms": 50,
    "reconnect.backoff.max.ms": 500,
}


class Sender:
    """Publishes events ``0, 1, 2 ...`` (batches of 10, ~100 per second) in a
    thread until stopped, publishing again what failed."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap, self.topic = bootstrap, topic
        self.confirmed: list[int] = []
        self.failed_reports = 0
        self.anonymous_failures = 0
        self.reported_failed: set[int] = set()
        self.other_errors: list[str] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=anyio.run, args=(self._run,), daemon=True)

    async def _run(self) -> None:
        n = 0
        config = {"bootstrap.servers": self.bootstrap, **PRODUCER}
        async with KafkaMessageBroker(config, flush_timeout=10) as broker:
            while not self.stopping.is_set():
                await self._publish(broker, list(range(n, n + 10)))
                n += 10
                await anyio.sleep(0.1)

    async def _publish(self, broker: KafkaMessageBroker, batch: list[int]) -> None:
        events = {i: tick(i, self.topic) for i in batch}
        pending = list(batch)
        while pending:
            try:
                await broker.send_many([Message.from_event(events[i]) for i in pending])
            except BrokerDeliveryError as error:
                self.failed_reports += 1
                by_id = {str(events[i].event_id): i for i in pending}
                failed = [by_id[str(m)] for m, _ in error.failures if str(m) in by_id]
                self.anonymous_failures += sum(1 for m, _ in error.failures if m is None)
                self.reported_failed.update(failed)
                if len(failed) == len(error.failures):
                    pending = failed
                await anyio.sleep(0.2)
                continue
            except Exception as error:
                self.other_errors.append(repr(error))
                await anyio.sleep(0.2)
                continue
            self.confirmed.extend(pending)
            pending = []

    def __enter__(self) -> Sender:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stopping.set()
        self.thread.join(120)


def faults(
    proxy: FaultProxy,
) -> list[tuple[str, float, Callable[[], object], Callable[[], object]]]:
    """One cycle: (name, seconds, start, end)."""
    noop = lambda: None  # noqa: E731
    return [
        ("stall 3 s", 3.0, proxy.stall, proxy.resume),
        ("reset", 1.0, proxy.cut, noop),
        ("reset", 1.0, proxy.cut, noop),
        ("refuse 7 s", 7.0, proxy.refuse, proxy.accept),
        ("stall 7 s", 7.0, proxy.stall, proxy.resume),
        ("reset", 1.0, proxy.cut, noop),
    ]


def scenario(settings: Settings) -> Outcome:
    outcome = Outcome("kafka-producer-proxy")
    proxy_port = free_port()
    with Tansu(advertise=proxy_port) as tansu:
        proxy = FaultProxy(tansu.port, port=proxy_port)
        try:
            topic = f"faults-{unique()}"
            create_topic(proxy.address, topic, PARTITIONS)
            raw = RawLogLines(settings.workdir / "producer-stderr.log")
            with raw, Sender(proxy.address, topic) as sender:
                time.sleep(2)
                deadline = time.monotonic() + settings.duration(1, 60)
                while time.monotonic() < deadline:
                    for _name, seconds, start, end in faults(proxy):
                        start()
                        time.sleep(seconds)
                        end()
                        outcome.faults += 1
                        time.sleep(2)
            on_topic = ticks_on(proxy.address, topic, PARTITIONS)
        finally:
            proxy.close()
    outcome.tally(sender.confirmed, on_topic, order_of)
    if sender.anonymous_failures:
        outcome.problem(
            f"{sender.anonymous_failures} failure(s) in {sender.failed_reports} "
            "BrokerDeliveryError(s) carried message_id=None: the caller cannot tell "
            "which messages failed"
        )
    if raw.count:
        outcome.problem(
            f"{raw.count} raw librdkafka log line(s) went to stderr instead of Python logging "
            f"({raw.path})"
        )
    outcome.problems.extend(f"unexpected publish error: {e}" for e in sender.other_errors[:3])
    twice = {n for n in sender.reported_failed if on_topic.count(n) > 1}
    outcome.notes.append(
        f"{sender.failed_reports} BrokerDeliveryError(s); {len(twice)} message(s) reported "
        f"failed were on the topic before their retry; {proxy.accepted} connections through "
        "the proxy"
    )
    return outcome
