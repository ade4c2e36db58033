"""Helpers of the RabbitMQ tests: unique names, a plain pika admin channel,
a controlled backoff clock and a loopback forwarder (a broker that "comes up"
or whose network "fails")."""

from __future__ import annotations

import contextlib
import logging
import socket
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import anyio.to_thread
import pika
import pytest


class Names:
    """Unique exchange, queue and connection names of one test."""

    def __init__(self, unique: str) -> None:
        self.exchange = f"anycqrs-test-{unique}"
        self.queue = f"anycqrs-test-q-{unique}"
        self.dlx = f"anycqrs-test-dlx-{unique}"
        self.dlq = f"anycqrs-test-dlq-{unique}"
        self.consumer = f"anycqrs-test-consumer-{unique}"
        self.producer = f"anycqrs-test-producer-{unique}"


def _admin(url: str, job: Any) -> Any:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        return job(connection.channel())
    finally:
        connection.close()


async def admin(url: str, job: Any) -> Any:
    """Run `job(channel)` on a fresh plain pika connection, in a worker thread."""
    return await anyio.to_thread.run_sync(_admin, url, job)


@pytest.fixture
def names(rabbitmq_url: str, unique: str) -> Iterator[Names]:
    names = Names(unique)
    yield names

    def cleanup(channel: Any) -> None:
        for queue in (names.queue, names.dlq):
            channel.queue_delete(queue)
        for exchange in (names.exchange, names.dlx):
            channel.exchange_delete(exchange)

    _admin(rabbitmq_url, cleanup)


async def declare_queue(url: str, names: Names, *, routing_key: str | None = None) -> None:
    """Declare the test's queue, bound to its exchange when `routing_key` is given."""

    def declare(channel: Any) -> None:
        channel.queue_declare(names.queue, durable=True)
        if routing_key is not None:
            channel.exchange_declare(names.exchange, "topic", durable=True)
            channel.queue_bind(names.queue, names.exchange, routing_key)

    await admin(url, declare)


async def declare_dlq(url: str, names: Names) -> None:
    def declare(channel: Any) -> None:
        channel.exchange_declare(names.dlx, "topic", durable=True)
        channel.queue_declare(names.dlq, durable=True)
        channel.queue_bind(names.dlq, names.dlx, "#")

    await admin(url, declare)


async def drain(url: str, queue: str) -> list[tuple[Any, bytes]]:
    """Take every message left in `queue`: `(properties, body)` pairs."""

    def get_all(channel: Any) -> list[tuple[Any, bytes]]:
        got = []
        while True:
            method, properties, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                return got
            got.append((properties, body))

    result: list[tuple[Any, bytes]] = await admin(url, get_all)
    return result


async def publish_raw(
    url: str, exchange: str, key: str, bodies: list[tuple[bytes, dict[str, Any]]]
) -> None:
    def publish(channel: Any) -> None:
        for body, headers in bodies:
            channel.basic_publish(exchange, key, body, pika.BasicProperties(headers=headers))

    await admin(url, publish)


class Backoff:
    """A fake `sleep` for reconnect backoff: records each delay, waits for none.

    Install it with `Backoff.on(service)`. With `hold` set, every wait blocks
    until `release` (a test then acts while the service is backing off);
    `waiting` is set when the first wait begins.
    """

    def __init__(self, *, hold: bool = False) -> None:
        self.delays: list[float] = []
        self.waiting = anyio.Event()
        self.release = anyio.Event()
        if not hold:
            self.release.set()

    @classmethod
    def on(cls, service: Any, *, hold: bool = False) -> Backoff:
        backoff = cls(hold=hold)
        service._sleep = backoff
        return backoff

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        self.waiting.set()
        await self.release.wait()
        await anyio.lowlevel.checkpoint()


class Warnings(logging.Handler):
    """The WARNING records of the `anycqrs.brokers.rabbitmq` logger."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []
        self.attempting = anyio.Event()
        self.reconnected = anyio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        message = record.getMessage()
        if "reconnecting in" in message:
            self.attempting.set()
        elif "reconnected" in message:
            self.reconnected.set()

    def messages(self) -> list[str]:
        return [r.getMessage() for r in self.records]

    def attempts(self) -> list[str]:
        return [m for m in self.messages() if "reconnecting in" in m]


@pytest.fixture
def warnings_log() -> Iterator[Warnings]:
    handler = Warnings()
    log = logging.getLogger("anycqrs.brokers.rabbitmq")
    log.addHandler(handler)
    old_level = log.level
    log.setLevel(logging.INFO)
    yield handler
    log.removeHandler(handler)
    log.setLevel(old_level)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def via(url: str, port: int, *, user: str | None = None, password: str | None = None) -> str:
    """`url` pointed at `127.0.0.1:port` (optionally with other credentials)."""
    parsed = urllib.parse.urlsplit(url)
    netloc = f"{user or parsed.username or 'guest'}:{password or parsed.password or 'guest'}"
    return urllib.parse.urlunsplit(parsed._replace(netloc=f"{netloc}@127.0.0.1:{port}"))


def target(url: str) -> tuple[str, int]:
    parsed = urllib.parse.urlsplit(url)
    return parsed.hostname or "127.0.0.1", parsed.port or 5672


class Forwarder:
    """A loopback TCP forwarder to the real broker.

    A service given `url` connects through it: the broker "comes up" when
    `run` starts, and `cut` breaks every connection through it at once (a
    network failure; the broker sees the socket close). New connections are
    forwarded again right away.
    """

    def __init__(self, url: str) -> None:
        self.port = free_port()
        self.url = via(url, self.port)
        self._upstream = target(url)
        self._open: list[anyio.CancelScope] = []

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=self.port)
        task_status.started()
        await listener.serve(self._serve)

    def cut(self) -> int:
        """Break every connection through the forwarder; returns how many."""
        cut = len(self._open)
        for scope in self._open:
            scope.cancel()
        return cut

    async def _serve(self, client: Any) -> None:
        with anyio.CancelScope() as scope:
            self._open.append(scope)
            try:
                async with client, await anyio.connect_tcp(*self._upstream) as server:
                    async with anyio.create_task_group() as group:
                        group.start_soon(_pipe, client, server)
                        group.start_soon(_pipe, server, client)
            finally:
                self._open.remove(scope)


async def _pipe(source: Any, sink: Any) -> None:
    with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError, OSError):
        async for chunk in source:
            await sink.send(chunk)
    with contextlib.suppress(Exception):
        await sink.send_eof()


@contextlib.asynccontextmanager
async def forwarding(url: str) -> AsyncIterator[Forwarder]:
    """A running `Forwarder` to `url`, stopped on exit."""
    forwarder = Forwarder(url)
    async with anyio.create_task_group() as group:
        await group.start(forwarder.run)
        yield forwarder
        group.cancel_scope.cancel()
