"""A pika ``BlockingConnection`` owned by one dedicated thread.

pika's blocking connection is not thread-safe, so every call on it runs in
the thread that created it. The event loop hands work over with
:meth:`AmqpThread.call` (a job queue plus ``add_callback_threadsafe`` to wake
the connection); the thread runs the jobs after each
``process_data_events`` and reports every job that finished in that round
with one ``anyio.from_thread.run_sync`` hop. The same thread serves
heartbeats, so an idle connection stays open.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
import pika
import pika.exceptions

from ..errors import BrokerError

logger = logging.getLogger("anycqrs.brokers.rabbitmq")

Job = Callable[[Any], Any]


class _Call:
    __slots__ = ("error", "event", "job", "result")

    def __init__(self, job: Job) -> None:
        self.job = job
        self.event = anyio.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class AmqpThread:
    """Runs a blocking pika connection and channel in their own thread.

    Args:
        url: AMQP URL (``amqp://user:pass@host:5672/%2F``).
        setup: called with the channel once connected (declarations, QoS,
            ``basic_consume``...), in the connection thread.
        after_poll: called in the connection thread after every
            ``process_data_events`` round (to hand deliveries over).
        on_exit: called in the connection thread when it ends after having
            connected.
        poll_interval: most seconds one ``process_data_events`` may block.
    """

    def __init__(
        self,
        url: str,
        setup: Callable[[Any], None],
        *,
        after_poll: Callable[[Any], None] | None = None,
        on_exit: Callable[[], None] | None = None,
        poll_interval: float = 0.5,
        name: str = "rabbitmq",
    ) -> None:
        self._url = url
        self._setup = setup
        self._after_poll = after_poll
        self._on_exit = on_exit
        self._poll_interval = poll_interval
        self._name = name
        self._jobs: deque[_Call] = deque()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._connection: Any = None
        self._token: anyio.lowlevel.EventLoopToken | None = None
        self.failure: BaseException | None = None
        """Why the connection thread ended, if it ended on its own."""

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self.failure is None

    async def start(self) -> None:
        """Connect and run ``setup``; raises :class:`BrokerError` on failure."""
        self._token = anyio.lowlevel.current_token()
        self._stopping.clear()
        self.failure = None
        started = _Call(lambda _channel: None)
        self._jobs.append(started)
        self._thread = threading.Thread(
            target=self._main, name=f"anycqrs-{self._name}", daemon=True
        )
        self._thread.start()
        await started.event.wait()
        if started.error is not None:
            await self.stop()
            raise BrokerError(f"Cannot connect to RabbitMQ: {started.error}") from started.error

    async def call(self, job: Job) -> Any:
        """Run ``job(channel)`` in the connection thread and return its result."""
        if not self.alive:
            raise BrokerError(f"{self._name}: not connected ({self.failure or 'not started'})")
        call = _Call(job)
        self._jobs.append(call)
        self.wake()
        await call.event.wait()
        if call.error is not None:
            raise call.error
        return call.result

    def wake(self) -> None:
        """Make the connection thread run its jobs now (any thread)."""
        connection = self._connection
        if connection is not None:
            try:
                connection.add_callback_threadsafe(_noop)
            except (pika.exceptions.AMQPError, AttributeError):  # pragma: no cover - closing
                pass

    async def stop(self) -> None:
        """Close the channel and connection and end the thread (shielded)."""
        thread = self._thread
        if thread is None:
            return
        with anyio.CancelScope(shield=True):
            self._stopping.set()
            self.wake()
            await anyio.to_thread.run_sync(thread.join)
            self._thread = None

    # -- connection thread ------------------------------------------------------

    def _main(self) -> None:
        try:
            connection = pika.BlockingConnection(pika.URLParameters(self._url))
            channel = connection.channel()
            self._setup(channel)
        except Exception as exc:  # noqa: BLE001 - reported to start()
            self.failure = exc
            self._fail_all(exc)
            return
        self._connection = connection
        try:
            self._loop(connection, channel)
        except Exception as exc:  # noqa: BLE001 - reported to every waiter
            logger.error("%s: connection failed: %s", self._name, exc)
            self.failure = exc
            self._fail_all(BrokerError(f"{self._name}: connection failed: {exc}"))
        finally:
            self._connection = None
            try:
                if connection.is_open:
                    connection.close()
            except pika.exceptions.AMQPError:  # pragma: no cover - already broken
                pass
            if self._on_exit is not None:
                self._on_exit()

    def _loop(self, connection: Any, channel: Any) -> None:
        jobs = self._jobs
        after_poll = self._after_poll
        while True:
            finished: list[_Call] = []
            while jobs:
                call = jobs.popleft()
                try:
                    call.result = call.job(channel)
                except (pika.exceptions.AMQPConnectionError, pika.exceptions.ConnectionClosed):
                    jobs.appendleft(call)
                    raise
                except Exception as exc:  # noqa: BLE001 - handed to the caller
                    call.error = exc
                finished.append(call)
            if finished:
                self._report(finished)
            if self._stopping.is_set():
                return
            if after_poll is not None:
                after_poll(channel)
            connection.process_data_events(time_limit=self._poll_interval)

    def _report(self, calls: list[_Call]) -> None:
        try:
            anyio.from_thread.run_sync(_set_all, calls, token=self._token)
        except anyio.RunFinishedError:  # pragma: no cover - the loop is gone
            pass

    def _fail_all(self, error: BaseException) -> None:
        calls = []
        while self._jobs:
            call = self._jobs.popleft()
            call.error = error
            calls.append(call)
        if calls:
            self._report(calls)


def _noop() -> None:
    pass


def _set_all(calls: list[_Call]) -> None:
    for call in calls:
        call.event.set()
