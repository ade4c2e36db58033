"""`InMemoryTransport`: the whole consumer contract without a broker, for tests."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import anyio
import attrs

from ..codecs import MessageCodec
from ..serialization import dumps, to_dict
from ._decoder import EventDecoder, Inbound

__all__ = ["DeadLetter", "InMemoryTransport", "MemoryRecord"]


@attrs.frozen
class MemoryRecord:
    """One message held by an `InMemoryTransport`.

    Attributes:
        offset: position in the transport, from 0, in `put` order.
        value: the message body (JSON of `to_dict(event)`).
        event_name: the `event_name` header (`None`: the JSON's own field).
        topic: the topic it was put on.
        key: the ordering key (`None`: the topic orders it, like one partition).
    """

    offset: int
    value: bytes | None
    event_name: str | None
    topic: str
    key: str | None


@attrs.frozen
class DeadLetter:
    """A record the consumer moved aside.

    Attributes:
        record: the record.
        error: why (the handler's last error, or the decoding error).
        attempts: how often the handler ran (`0`: could not be decoded).
    """

    record: MemoryRecord
    error: BaseException
    attempts: int


class _Delivery:
    """One fetch of a record; revoking it makes the item stale."""

    __slots__ = ("record", "revoked")

    def __init__(self, record: MemoryRecord) -> None:
        self.record = record
        self.revoked = False


class InMemoryTransport:
    """A `Transport` over an in-memory queue: run the consumer contract
    (lanes, per-key order, retries, dead letters, poison messages, graceful
    stop, rebalance-like revocation) in unit tests, without a broker.

    Put records with `put` / `put_event`, run `consume(sink, transport)` and
    look at `settled` (what would be committed / acked, in settle order) and
    `dead_letters`. `close` says nothing more is coming: `consume` then
    returns once the lanes finished. `revoke` behaves like a rebalance: the
    fetched records not yet settled are dropped unhandled by the lanes and
    delivered again by a later fetch, as a partition's new owner would read
    them from the committed offset. A transport is one run's state: use a new
    one for each run.

    Args:
        batch_size: most records one `fetch` returns.
        dead_letter_destination: whether `dead_letter` accepts records; when
            `False`, a record that keeps failing stops the consumer with
            `MessageHandlingError` and stays unsettled.

    Example:
        ```python
        from anycqrs.consumers import InMemoryTransport, consume

        transport = InMemoryTransport()
        transport.put_event(NotificationEvent(payload=OrderPaid(1), topic="orders", key="1"))
        transport.put(b"not json", event_name="OrderPaid", topic="orders")
        transport.close()
        await consume(mediator, transport, retry=RetryPolicy(attempts=2, delay=0))
        assert [r.offset for r in transport.settled] == [0, 1]
        assert transport.dead_letters[0].attempts == 0      # the poison one
        ```
    """

    def __init__(self, *, batch_size: int = 100, dead_letter_destination: bool = True) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self._batch_size = batch_size
        self._dead_letter_destination = dead_letter_destination
        self._queue: deque[MemoryRecord] = deque()
        self._in_flight: dict[int, _Delivery] = {}
        self._offset = 0
        self._closed = False
        self._wakeup: anyio.Event | None = None
        self.settled: list[MemoryRecord] = []
        """Records settled (committed / acked), in settle order."""
        self.dead_letters: list[DeadLetter] = []
        """Records moved aside, in order."""
        self.fetches = 0
        """How many batches were fetched."""

    # -- the test's side -------------------------------------------------------

    def put(
        self,
        value: bytes | None,
        *,
        event_name: str | None = None,
        topic: str = "memory",
        key: str | None = None,
    ) -> MemoryRecord:
        """Queue a raw message (malformed ones make poison items)."""
        if self._closed:
            raise RuntimeError("the transport is closed; use a new one")
        record = MemoryRecord(self._offset, value, event_name, topic, key)
        self._offset += 1
        self._queue.append(record)
        self._wake()
        return record

    def put_event(self, event: Any, *, codec: MessageCodec | None = None) -> MemoryRecord:
        """Queue a `NotificationEvent` as a broker would carry it (in the
        format of `codec`, default JSON; run `consume(..., codec=codec)`)."""
        if codec is None:
            return self.put(
                dumps(to_dict(event)), event_name=event.event_name, topic=event.topic, key=event.key
            )
        from ..brokers import Message

        return self.put(
            codec.encode(Message.from_event(event)),
            event_name=event.event_name if codec.transport_headers else None,
            topic=event.topic,
            key=event.key,
        )

    def close(self) -> None:
        """Nothing more is coming: `fetch` ends once the queue is empty."""
        self._closed = True
        self._wake()

    def revoke(self, *keys: str | None) -> int:
        """Revoke the fetched, unsettled records (only those with one of `keys`
        when given; `None` among them stands for keyless records).

        Their items become stale (the lanes drop them; a handler already
        running finishes, but its item is not settled) and the records are
        queued again, in offset order, for a later fetch.

        Returns:
            How many records were revoked.
        """
        revoked = [
            delivery
            for delivery in self._in_flight.values()
            if not keys or delivery.record.key in keys
        ]
        for delivery in revoked:
            delivery.revoked = True
            del self._in_flight[delivery.record.offset]
        self._queue.extendleft(
            sorted((d.record for d in revoked), key=lambda r: r.offset, reverse=True)
        )
        if revoked:
            self._wake()
        return len(revoked)

    @property
    def pending(self) -> int:
        """Records queued and not fetched yet."""
        return len(self._queue)

    @property
    def in_flight(self) -> int:
        """Records fetched and not settled yet."""
        return len(self._in_flight)

    async def wait_settled(self, count: int) -> None:
        """Wait until at least `count` records were settled (bound it with `fail_after`)."""
        while len(self.settled) < count:
            await self._changed()

    # -- the consumer's side (the Transport protocol) --------------------------

    async def fetch(self, decode: EventDecoder, /) -> Sequence[Inbound]:
        """Wait for records; hand over up to `batch_size` of them, decoded."""
        while not self._queue:
            if self._closed and not self._in_flight:
                raise anyio.EndOfStream
            await self._changed()
        items: list[Inbound] = []
        queue, in_flight = self._queue, self._in_flight
        for _ in range(min(self._batch_size, len(queue))):
            record = queue.popleft()
            delivery = in_flight[record.offset] = _Delivery(record)
            lane = hash(record.key if record.key is not None else record.topic)
            items.append(
                decode.inbound(
                    record.value,
                    record.event_name,
                    record.topic,
                    record.key,
                    lane=lane,
                    raw=record,
                    ticket=delivery,
                )
            )
        self.fetches += 1
        return items

    def settle(self, items: Sequence[Inbound], /) -> None:
        """Record the items as settled (revoked ones are not)."""
        for item in items:
            delivery: _Delivery = item.ticket
            if delivery.revoked:
                continue
            item.handled = True
            del self._in_flight[delivery.record.offset]
            self.settled.append(delivery.record)
        self._wake()

    def stale(self, item: Inbound, /) -> bool:
        """Whether the item's record was revoked since it was fetched."""
        revoked: bool = item.ticket.revoked
        return revoked

    def message_headers(self, item: Inbound, /) -> Mapping[str, Any]:
        """The headers of the item's event (the record carries no others)."""
        event = item.event
        return event.headers if event is not None else {}

    def span_attributes(self, item: Inbound, /) -> dict[str, Any]:
        """The messaging attributes of the item's `process` span."""
        record: MemoryRecord = item.raw
        return {
            "messaging.system": "memory",
            "messaging.destination.name": record.topic,
            "messaging.message.id": str(item.event.event_id) if item.event is not None else "",
        }

    def location(self, item: Inbound, /) -> str:
        """`topic@offset` of the item's record."""
        record: MemoryRecord = item.raw
        return f"{record.topic}@{record.offset}"

    async def dead_letter(self, item: Inbound, error: BaseException, attempts: int, /) -> bool:
        """Keep the record in `dead_letters` (when a destination is configured)."""
        if not self._dead_letter_destination:
            return False
        self.dead_letters.append(DeadLetter(item.raw, error, attempts))
        return True

    # -- internals -------------------------------------------------------------

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()
            self._wakeup = None

    async def _changed(self) -> None:
        if self._wakeup is None:
            self._wakeup = anyio.Event()
        await self._wakeup.wait()
