"""One run of a `RabbitMQEventConsumer`: the transport `anycqrs.consumers.consume`
reads from — the connection thread, its deliveries and acks, reconnecting when the
connection is lost — and the settings every run is built from."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from typing import Any

import anyio
import anyio.abc
import anyio.from_thread
import anyio.lowlevel
import attrs

from ..._retry import RetryPolicy, Sleep
from ...consumers import EventDecoder, Inbound
from ...errors import ConnectionLost
from ...observability._health import ConsumerProbe
from ._connection import AmqpThread
from ._reconnect import reconnect
from ._wire import dead_letter_properties, name_and_key

__all__ = ["ConsumerRun", "Settings"]

logger = logging.getLogger("anycqrs.brokers.rabbitmq")

_Delivery = tuple[int, Any, Any, bytes, str | None, str | None]
"""A message as received: generation, method, properties, body, event name, key."""


@attrs.frozen
class Settings:
    """What every run of one consumer connects with."""

    url: str
    queue: str
    bindings: tuple[tuple[str, str], ...]
    declare_queue: bool
    prefetch: int
    dlx: str | None
    dlx_key: str
    poll_interval: float
    reconnect: RetryPolicy | None
    name: str
    client_properties: dict[str, Any]


class ConsumerRun:
    """One run of a consumer, its `anycqrs.consumers.Transport`: its
    connections (one generation each), the deliveries handed over from the
    connection thread and the acks going back.

    The thread-side methods run in the connection thread; the others on the
    event loop.
    """

    def __init__(self, settings: Settings, sleep: Sleep, probe: ConsumerProbe) -> None:
        self._settings = settings
        self._probe = probe
        self._sleep = sleep
        self._token = anyio.lowlevel.current_token()
        self._arrived: list[_Delivery] = []
        """Received in the connection thread, not handed over yet."""
        self._acks: deque[tuple[int, int]] = deque()
        """(connection generation, delivery tag) of handled messages to ack."""
        self._inbox: list[_Delivery] = []
        self._wakeup = anyio.Event()
        self._ended = False
        self._generation = 0
        self._live: int | None = None
        """Generation of the open connection (`None` while there is none)."""
        self._thread: AmqpThread | None = None

    # -- event-loop side --------------------------------------------------------

    async def open(self) -> None:
        """The first connection; a broker that is not up yet is waited for."""
        settings = self._settings
        await reconnect(settings.reconnect, settings.name, self._connect, sleep=self._sleep)

    async def fetch(self, decode: EventDecoder, /) -> list[Inbound]:
        """The next deliveries, decoded (reconnecting first when the connection is gone)."""
        while True:
            if self._ended:
                await self._reconnect_now()
            if self._inbox:
                deliveries, self._inbox = self._inbox, []
                inbound = decode.inbound
                return [
                    inbound(
                        body,
                        name,
                        method.routing_key,
                        key,
                        lane=hash(key) if key is not None else method.delivery_tag,
                        raw=(method, properties, body),
                        ticket=(generation, method.delivery_tag),
                    )
                    for generation, method, properties, body, name, key in deliveries
                ]
            await self._wakeup.wait()
            self._wakeup = anyio.Event()

    async def close(self) -> None:
        """Ack what was handled and end the connection (shielded)."""
        with anyio.CancelScope(shield=True):
            thread, generation = self._thread, self._live
            self._live = None
            if thread is None:
                return
            if thread.alive and generation is not None:
                with anyio.move_on_after(10):
                    try:
                        await thread.call(lambda channel: self._flush_acks(generation, channel))
                    except ConnectionLost:
                        pass  # unacked: redelivered
            await thread.stop()
            self._thread = None

    async def _connect(self) -> None:
        """Open a new connection (a new generation) and start consuming."""
        settings = self._settings
        self._generation += 1
        generation = self._generation
        self._arrived.clear()
        self._ended = False
        thread = AmqpThread(
            settings.url,
            lambda channel: self._setup(generation, channel),
            after_poll=lambda channel: self._after_poll(generation, channel),
            on_exit=lambda: self._on_exit(generation),
            poll_interval=settings.poll_interval,
            name=settings.name,
            client_properties=settings.client_properties,
        )
        await thread.start()
        self._thread = thread
        self._live = generation
        self._probe.connected()

    async def _reconnect_now(self) -> None:
        """The connection is gone: reconnect with backoff, or raise."""
        settings, thread = self._settings, self._thread
        assert thread is not None
        failure = thread.failure
        lost = ConnectionLost(str(failure) if failure is not None else "the connection closed")
        lost.__cause__ = failure
        self._live = None
        await thread.stop()
        self._thread = None
        if settings.reconnect is None:
            raise ConnectionLost(f"{settings.name}: RabbitMQ connection lost: {lost}") from lost
        await reconnect(
            settings.reconnect, settings.name, self._connect, lost=lost, sleep=self._sleep
        )

    def _deliver(self, items: list[_Delivery]) -> None:
        self._inbox.extend(items)
        self._wakeup.set()

    def _ended_now(self, generation: int) -> None:
        if generation == self._live:
            thread = self._thread
            failure = thread.failure if thread is not None else None
            self._probe.disconnected(str(failure) if failure is not None else "connection closed")
            self._live = None
            self._ended = True
            self._wakeup.set()

    # -- the rest of the transport ---------------------------------------------

    def stale(self, item: Inbound, /) -> bool:
        """Delivered on a connection that is gone: RabbitMQ redelivers it."""
        return bool(item.ticket[0] != self._live)

    def settle(self, items: Sequence[Inbound], /) -> None:
        """Ack handled messages (in the connection thread's next round)."""
        self._acks.extend(item.ticket for item in items)
        self._probe.polled()
        thread = self._thread
        if thread is not None:
            thread.wake()

    def message_headers(self, item: Inbound, /) -> dict[str, Any]:
        """The AMQP headers of the item's message (its `message_id` property too)."""
        _method, properties, _body = item.raw
        headers = dict(properties.headers or {})
        if properties.message_id is not None:
            headers.setdefault("message_id", properties.message_id)
        return headers

    def span_attributes(self, item: Inbound, /) -> dict[str, Any]:
        """The messaging attributes of the item's `process` span."""
        method, properties, _body = item.raw
        attributes: dict[str, Any] = {
            "messaging.system": "rabbitmq",
            "messaging.destination.name": method.routing_key,
            "messaging.rabbitmq.destination.routing_key": method.routing_key,
            "messaging.destination.subscription.name": self._settings.queue,
            "messaging.rabbitmq.message.delivery_tag": method.delivery_tag,
        }
        if method.exchange:
            attributes["messaging.rabbitmq.exchange"] = method.exchange
        if properties.message_id is not None:
            attributes["messaging.message.id"] = properties.message_id
        return attributes

    def location(self, item: Inbound, /) -> str:
        """`queue#delivery_tag`."""
        return f"{self._settings.queue}#{item.ticket[1]}"

    async def dead_letter(self, item: Inbound, error: BaseException, attempts: int, /) -> bool:
        """Publish the message to the dead-letter exchange, if there is one."""
        settings, thread = self._settings, self._thread
        dlx = settings.dlx
        if dlx is None:
            return False
        if thread is None or self.stale(item):
            self._not_dead_lettered(item)
            return True  # not acked either: redelivered, tried again
        method, properties, body = item.raw
        dead = dead_letter_properties(
            properties, method.routing_key, settings.queue, error, attempts
        )
        routing_key = settings.dlx_key

        def publish(channel: Any) -> None:
            channel.basic_publish(dlx, routing_key, body, dead)

        try:
            await thread.call(publish)
        except ConnectionLost:
            self._not_dead_lettered(item)
        return True

    def _not_dead_lettered(self, item: Inbound) -> None:
        logger.warning(
            "%s: connection lost before %s could be dead-lettered; "
            "RabbitMQ redelivers it (it is handled again, not dead-lettered)",
            self._settings.name,
            self.location(item),
        )

    # -- connection thread ------------------------------------------------------

    def _setup(self, generation: int, channel: Any) -> None:
        settings = self._settings
        if settings.declare_queue:
            channel.queue_declare(settings.queue, durable=True)
        for exchange, routing_key in settings.bindings:
            channel.exchange_declare(exchange, "topic", durable=True)
            channel.queue_bind(settings.queue, exchange, routing_key)
        if settings.dlx is not None:
            channel.exchange_declare(settings.dlx, "topic", durable=True)
        channel.confirm_delivery()
        channel.basic_qos(prefetch_count=settings.prefetch)

        def on_message(_channel: Any, method: Any, properties: Any, body: bytes) -> None:
            self._on_message(generation, method, properties, body)

        channel.basic_consume(settings.queue, on_message)

    def _on_message(self, generation: int, method: Any, properties: Any, body: bytes) -> None:
        self._arrived.append((generation, method, properties, body, *name_and_key(properties)))

    def _after_poll(self, generation: int, channel: Any) -> None:
        self._probe.polled()
        self._flush_acks(generation, channel)
        if self._arrived:
            arrived, self._arrived = self._arrived, []
            try:
                anyio.from_thread.run_sync(self._deliver, arrived, token=self._token)
            except anyio.RunFinishedError:  # pragma: no cover - loop gone
                pass

    def _flush_acks(self, generation: int, channel: Any) -> None:
        acks = self._acks
        stale = 0
        while acks:
            acked_generation, tag = acks.popleft()
            if acked_generation == generation:
                channel.basic_ack(tag)
            else:  # a delivery of a lost channel: RabbitMQ redelivers it
                stale += 1
        if stale:
            logger.info(
                "%s: %d message(s) handled before the connection was lost were not "
                "acked; RabbitMQ redelivers them",
                self._settings.name,
                stale,
            )

    def _on_exit(self, generation: int) -> None:
        try:
            anyio.from_thread.run_sync(self._ended_now, generation, token=self._token)
        except anyio.RunFinishedError:  # pragma: no cover - loop gone
            pass
