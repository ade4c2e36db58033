"""End-to-end latency: producer process → Kafka → ``KafkaEventConsumer`` → handler.

Usage::

    python -m benchmarks.latency [--kafka-bootstrap HOST:PORT] [--rates 5000 20000]
        [--seconds 10] [--warmup 2] [--backend asyncio|trio] [--fetch-wait-ms 5]
        [--json PATH]

A producer in another process (``python -m benchmarks.latency --produce ...``,
plain confluent-kafka, ``linger.ms=1``) sends events at a fixed rate, each
stamped with its send time (``time.time_ns()``) in the event header
``bench.sent_ns``. The consumer (``KafkaEventConsumer``, 16 lanes) runs a
trivial handler that records ``now - sent`` per event; the first ``--warmup``
seconds are dropped and the rest go into an HdrHistogram (p50, p90, p99,
p99.9, max). The consumer waits for the first message of a batch, then
drains what librdkafka holds, so latency is the broker's fetch wait plus the
handling: ``fetch.wait.max.ms`` (librdkafka's default is 500 ms, how long a
fetch with no new data waits at the broker) is set to ``--fetch-wait-ms``.

Without ``--kafka-bootstrap`` (or ``ANYCQRS_BENCH_KAFKA_BOOTSTRAP``) a Tansu
broker is started for the run. The suite (``python -m benchmarks``) runs the
same measurement as the ``kafka/latency-*`` workloads (shorter, fewer rounds).

Method, and why. At 20k events/s the tail is set by pauses of the
consumer's event loop. The longest inside the process are CPython's full
(generation 2) collections: one every 1-2.5 s at that rate (every
message in flight when a young collection runs is promoted), each a
traversal of the process's whole heap: 11.5M instructions in the consumer's
own process under asyncio, 13.6M under trio (its modules: 5k objects more),
31.5M in the suite's process (python-cqrs, FastStream, pydantic and every
workload imported: 88k objects). In three of four probed 5 s runs, 75-100%
of the events above the p99 were in flight during one; in the fourth they
waited on the machine (other processes on the same two cores; seconds-long
tails on a saturated machine wait upstream, in the producer or the broker,
while the consumer idles). So:

* every run is a fresh interpreter (`measure_process`), so the p99 is
  measured on the consumer's heap, not on whatever the suite imported and
  built before (``--only`` and a full run would differ), and no backend
  runs on the leftovers of the other (in one process trio always ran
  second). A service's own heap sets its own pauses (a large one may
  ``gc.freeze()`` after startup); this measures the library's.
* the median of two rounds is their mean, and one round's p99 at 20k/s is
  that of 800 events of a 4 s window (one 40 ms stall decides it): the
  20k/s p99 moved 3x between full runs. The suite runs three rounds of each
  backend, rotated, so the median drops one disturbed round. The rounds
  stay 5 s long: the latency upstream of the consumer (sent to fetched:
  the producer process and Tansu) grows after about 5 s of 20k/s on one
  partition (p50 4-5 ms in the first seconds, 11-12 ms from the fifth on;
  a plain confluent-kafka consumer sees it too), so 10 s runs measured
  more of that (p50 10.6 and 11.6 ms against 6.0 and 5.9 ms for 5 s
  runs, alternated).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any

import anyio

from anycqrs.events import EventHandler, EventMap, EventMediator
from anycqrs.messages import NotificationEvent

STAMP = "bench.sent_ns"
_PLACEHOLDER = "9" * 19  # time.time_ns() has 19 digits until 2286


def _template(topic: str) -> tuple[bytes, list[tuple[str, bytes]]]:
    from anycqrs.brokers import Message
    from anycqrs.brokers.kafka import encode_message

    from .kafka_bench import BenchPaid

    event = NotificationEvent(
        payload=BenchPaid(order_id=1, customer="c1", amount=12.5, note="x" * 20),
        topic=topic,
        key="k",
        headers={STAMP: _PLACEHOLDER},
    )
    _, value, _, headers = encode_message(Message.from_event(event))
    assert value is not None and value.count(_PLACEHOLDER.encode()) == 1
    encoded = [
        (name, v.encode() if isinstance(v, str) else (v or b"")) for name, v in headers or ()
    ]
    return value, encoded


def produce(bootstrap: str, topic: str, rate: int, seconds: float) -> int:
    """Send ``rate`` events per second for ``seconds`` (paced every ~0.5 ms)."""
    from confluent_kafka import Producer

    value, headers = _template(topic)
    before, after = value.split(_PLACEHOLDER.encode())
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 1})
    total = int(rate * seconds)
    keys = [f"k{i}".encode() for i in range(100)]
    sent = 0
    start = time.perf_counter()
    while sent < total:
        due = min(total, int((time.perf_counter() - start) * rate) + 1)
        while sent < due:
            stamp = str(time.time_ns()).encode()
            try:
                producer.produce(topic, before + stamp + after, keys[sent % 100], headers=headers)
            except BufferError:
                producer.poll(0.001)
                continue
            sent += 1
        producer.poll(0)
        time.sleep(0.0005)
    producer.flush(30)
    return sent


class _Record(EventHandler[NotificationEvent[Any]]):
    latencies: list[int] = []
    target = 0
    done: anyio.Event | None = None

    async def handle(self, event: NotificationEvent[Any]) -> None:
        cls = _Record
        cls.latencies.append(time.time_ns() - int(event.headers[STAMP]))
        if len(cls.latencies) >= cls.target and cls.done is not None:
            cls.done.set()


async def _run(
    bootstrap: str, rate: int, seconds: float, fetch_wait_ms: int
) -> tuple[list[int], int]:
    from anycqrs.brokers.kafka import KafkaEventConsumer

    from .kafka_bench import GROUP_SETTINGS, BenchPaid

    topic = f"bench-latency-{uuid.uuid4().hex[:8]}"
    _create_topic(bootstrap, topic)
    events = EventMap()
    events.bind(NotificationEvent[BenchPaid], _Record)
    total = int(rate * seconds)
    _Record.latencies, _Record.target, _Record.done = [], total, anyio.Event()
    consumer = KafkaEventConsumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": fetch_wait_ms,
            **GROUP_SETTINGS,
        },
        [topic],
        EventMediator(events),
    )
    async with anyio.create_task_group() as group:
        await group.start(consumer.run)
        with anyio.fail_after(60):
            while not consumer.status.assigned:
                await anyio.sleep(0.05)
        command = [sys.executable, "-m", "benchmarks.latency", "--produce"]
        command += [bootstrap, topic, str(rate), str(seconds)]
        process = await anyio.open_process(command, env=_child_env())
        async with process:
            with anyio.fail_after(seconds + 60):
                await _Record.done.wait()
                await process.wait()
        group.cancel_scope.cancel()
    return _Record.latencies, total


def _child_env() -> dict[str, str]:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def _create_topic(bootstrap: str, topic: str) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, 1, 1)]).values():
        future.result(30)


def summary(latencies_ns: list[int], rate: int, warmup: float) -> dict[str, Any]:
    """Percentiles (ms) of the latencies after the first ``warmup`` seconds."""
    from hdrh.histogram import HdrHistogram

    skip = int(rate * warmup)
    kept = latencies_ns[skip:] or latencies_ns
    histogram = HdrHistogram(1, 60_000_000, 3)  # 1 µs .. 60 s, 3 significant digits
    for ns in kept:
        histogram.record_value(max(1, ns // 1000))
    ms = {p: histogram.get_value_at_percentile(p) / 1000 for p in (50, 90, 99, 99.9)}
    return {
        "rate": rate,
        "events": len(kept),
        "p50_ms": ms[50],
        "p90_ms": ms[90],
        "p99_ms": ms[99],
        "p999_ms": ms[99.9],
        "max_ms": histogram.get_max_value() / 1000,
    }


def measure(
    bootstrap: str,
    rate: int,
    *,
    seconds: float = 10.0,
    warmup: float = 2.0,
    backend: str = "asyncio",
    fetch_wait_ms: int = 5,
) -> dict[str, Any]:
    """One run at ``rate`` events/s: the latency summary."""
    latencies, _ = anyio.run(_run, bootstrap, rate, seconds, fetch_wait_ms, backend=backend)
    return {"backend": backend, **summary(latencies, rate, warmup)}


def measure_process(
    bootstrap: str,
    rate: int,
    *,
    seconds: float = 10.0,
    warmup: float = 2.0,
    backend: str = "asyncio",
    fetch_wait_ms: int = 5,
) -> dict[str, Any]:
    """`measure` in a fresh interpreter (its heap only the consumer's: see the module docs)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "row.json")
        command = [sys.executable, "-m", "benchmarks.latency", "--kafka-bootstrap", bootstrap]
        command += ["--rates", str(rate), "--seconds", str(seconds), "--warmup", str(warmup)]
        command += ["--backend", backend, "--fetch-wait-ms", str(fetch_wait_ms), "--json", path]
        subprocess.run(command, env=_child_env(), check=True, stdout=subprocess.DEVNULL)
        with open(path, encoding="utf-8") as fh:
            row: dict[str, Any] = json.load(fh)[0]
    return row


class Runs:
    """Latency runs shared by the suite's ``p50`` and ``p99`` workloads: each
    run (a fresh process, `measure_process`) serves one round of each
    percentile. The suite calls ``measure(n)`` and divides the seconds it
    returns by ``n``: here ``n`` is the run's length in seconds (the first
    fifth is warm-up), and the percentile comes back multiplied by it."""

    def __init__(self, bootstrap: Any) -> None:
        self._bootstrap = bootstrap
        self._runs: dict[tuple[int, str], list[dict[str, Any]]] = {}
        self._used: dict[tuple[int, str, str], int] = {}

    def percentile(self, rate: int, backend: str, key: str) -> Any:
        def measure_round(seconds: int) -> float:
            runs = self._runs.setdefault((rate, backend), [])
            index = self._used.get((rate, backend, key), 0)
            if index >= len(runs):
                bootstrap = self._bootstrap()
                runs.append(
                    measure_process(
                        bootstrap, rate, seconds=seconds, warmup=seconds / 5, backend=backend
                    )
                )
            self._used[rate, backend, key] = index + 1
            return float(runs[index][key]) / 1000 * seconds

        return measure_round


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.latency", description=__doc__)
    parser.add_argument("--produce", nargs=4, metavar=("BOOTSTRAP", "TOPIC", "RATE", "SECONDS"))
    parser.add_argument(
        "--kafka-bootstrap", default=os.environ.get("ANYCQRS_BENCH_KAFKA_BOOTSTRAP")
    )
    parser.add_argument("--rates", type=int, nargs="+", default=[5000, 20000])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--backend", choices=["asyncio", "trio"], nargs="+", default=["asyncio"])
    parser.add_argument("--fetch-wait-ms", type=int, default=5)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    if args.produce:
        bootstrap, topic, rate, seconds = args.produce
        produce(bootstrap, topic, int(rate), float(seconds))
        return 0
    from ._kafka import Tansu

    tansu = Tansu(args.kafka_bootstrap)
    results = []
    # one row: measured in this process; several: each in its own (no run
    # inherits the heap of the one before, see the module docs)
    run = measure if len(args.rates) * len(args.backend) == 1 else measure_process
    try:
        for rate in args.rates:
            for backend in args.backend:
                row = run(
                    tansu.bootstrap(),
                    rate,
                    seconds=args.seconds,
                    warmup=args.warmup,
                    backend=backend,
                    fetch_wait_ms=args.fetch_wait_ms,
                )
                results.append(row)
                print(
                    f"{rate:>6}/s {backend:<8} p50 {row['p50_ms']:7.2f} ms  "
                    f"p90 {row['p90_ms']:7.2f}  p99 {row['p99_ms']:7.2f}  "
                    f"p99.9 {row['p999_ms']:7.2f}  max {row['max_ms']:7.2f}  "
                    f"({row['events']} events)",
                    flush=True,
                )
    finally:
        tansu.stop()
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
