"""A pika `BlockingConnection` owned by one dedicated thread.

pika's blocking connection is not thread-safe, so every call on it runs in
the thread that created it. The event loop hands work over with
`AmqpThread.call` (a job queue plus `add_callback_threadsafe` to wake the
connection); the thread runs the jobs after each `process_data_events` and
reports every job that finished in that round with one
`anyio.from_thread.run_sync` hop. The same thread serves heartbeats, so an
idle connection stays open.

An `AmqpThread` is one connection: when the connection (or its channel) is
lost the thread ends, every pending call fails with
`anycqrs.errors.ConnectionLost` and `on_exit` runs. Reconnecting is the
owner's business (`start` again, or a new `AmqpThread`, see `_reconnect`), so
that backoff waits happen on the event loop, where cancellation is immediate.
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

from ...errors import BrokerError, ConnectionLost

__all__ = ["LOST_ERRORS", "AmqpThread", "Job"]

logger = logging.getLogger("anycqrs.brokers.rabbitmq")

Job = Callable[[Any], Any]

#: pika errors after which the connection or its channel is unusable.
LOST_ERRORS: tuple[type[Exception], ...] = (
    pika.exceptions.AMQPConnectionError,
    pika.exceptions.ChannelClosed,
    pika.exceptions.ChannelWrongStateError,
)


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
        url: AMQP URL (`amqp://user:pass@host:5672/%2F`).
        setup: called with the channel once connected (declarations, QoS,
            `basic_consume`...), in the connection thread.
        after_poll: called in the connection thread after every
            `process_data_events` round (to hand deliveries over).
        on_exit: called in the connection thread when it ends after having
            connected.
        poll_interval: most seconds one `process_data_events` may block.
        name: shown in logs, errors and the thread's name.
        client_properties: AMQP client properties (`connection_name`
            shows in the management UI and `rabbitmqctl list_connections`).
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
        client_properties: dict[str, Any] | None = None,
    ) -> None:
        self._url = url
        self._setup = setup
        self._after_poll = after_poll
        self._on_exit = on_exit
        self._poll_interval = poll_interval
        self._name = name
        self._client_properties = client_properties
        self._jobs: deque[_Call] = deque()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._connection: Any = None
        self._token: anyio.lowlevel.EventLoopToken | None = None
        # guards `_closed` against `call` queueing a job the thread never runs
        self._lock = threading.Lock()
        self._closed = True
        self.failure: BaseException | None = None
        """Why the connection thread ended, if it ended on its own."""

    @property
    def alive(self) -> bool:
        return not self._closed and self._thread is not None and self._thread.is_alive()

    async def start(self) -> None:
        """Connect and run `setup`.

        Raises:
            ConnectionLost: the connection or `setup` failed (the cause is chained).
        """
        self._token = anyio.lowlevel.current_token()
        self._stopping.clear()
        self.failure = None
        started = _Call(lambda _channel: None)
        with self._lock:
            self._closed = False
            self._jobs.append(started)
        self._thread = threading.Thread(
            target=self._main, name=f"anycqrs-{self._name}", daemon=True
        )
        self._thread.start()
        try:
            await started.event.wait()
        except BaseException:  # cancelled while connecting: end the thread, re-raise
            await self.stop()
            raise
        if started.error is not None:
            await self.stop()
            error = started.error
            if isinstance(error, ConnectionLost) and error.__cause__ is not None:
                error = error.__cause__
            raise ConnectionLost(f"Cannot connect to RabbitMQ: {error}") from error

    async def call(self, job: Job) -> Any:
        """Run `job(channel)` in the connection thread and return its result.

        Raises:
            ConnectionLost: not connected, or the connection was lost before
                the job finished (the job may have run partly).
        """
        call = _Call(job)
        with self._lock:
            if self._closed:
                raise ConnectionLost(
                    f"{self._name}: not connected ({self.failure or 'not started'})"
                )
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
        connection: Any = None
        try:
            parameters = pika.URLParameters(self._url)
            if self._client_properties is not None:
                parameters.client_properties = dict(self._client_properties)
            connection = pika.BlockingConnection(parameters)
            channel = connection.channel()
            self._setup(channel)
        except Exception as exc:  # noqa: BLE001 - reported to start()
            self.failure = exc
            _close_quietly(connection)
            self._close(ConnectionLost(f"{self._name}: cannot connect: {exc}"), exc)
            return
        self._connection = connection
        try:
            self._loop(connection, channel)
        except Exception as exc:  # noqa: BLE001 - reported to every waiter
            logger.warning("%s: connection lost: %r", self._name, exc)
            self.failure = exc
            self._close(ConnectionLost(f"{self._name}: connection lost: {exc!r}"), exc)
        else:
            self._close(ConnectionLost(f"{self._name}: connection closed"), None)
        finally:
            self._connection = None
            _close_quietly(connection)
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
                except pika.exceptions.ChannelClosedByBroker as exc:
                    # a protocol error (404, 403...): the caller's, not worth a
                    # retry; the channel is gone, so the connection ends too
                    call.error = BrokerError(f"{self._name}: channel closed by the broker: {exc}")
                    self._report([*finished, call])
                    raise
                except LOST_ERRORS:
                    jobs.appendleft(call)
                    if finished:
                        self._report(finished)
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

    def _close(self, error: ConnectionLost, cause: BaseException | None) -> None:
        """No more calls: fail the pending ones with `error`."""
        with self._lock:
            self._closed = True
            calls = list(self._jobs)
            self._jobs.clear()
        for call in calls:
            call.error = error
        if calls:
            error.__cause__ = cause
            self._report(calls)


def _noop() -> None:
    pass


def _close_quietly(connection: Any) -> None:
    try:
        if connection is not None and connection.is_open:
            connection.close()
    except pika.exceptions.AMQPError:  # pragma: no cover - already broken
        pass


def _set_all(calls: list[_Call]) -> None:
    for call in calls:
        call.event.set()
