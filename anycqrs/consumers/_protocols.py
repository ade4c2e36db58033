"""The two seams of the consumer layer: what a consumer feeds (an event sink)
and what a transport provides (batches in, settlements and dead letters out)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ._decoder import EventDecoder, Inbound

__all__ = [
    "ChunkPlan",
    "ChunkRedo",
    "ChunkSink",
    "CountsRevocations",
    "DecodingTransport",
    "EventSink",
    "EventTypes",
    "NeedsEventIds",
    "Transport",
]


@runtime_checkable
class EventTypes(Protocol):
    """Which `NotificationEvent[P]` class an event name stands for.

    `anycqrs.EventMap` is one: `notification_type` returns the class bound
    under the name and raises `anycqrs.errors.UnknownEventName` when none is.
    """

    def notification_type(self, event_name: str, /) -> Any:
        """The `NotificationEvent[P]` class bound under `event_name`."""
        ...


@runtime_checkable
class EventSink(Protocol):
    """What a consumer feeds: decoded events go to `send`, routed by `event_map`.

    `anycqrs.EventMediator` is the event sink of every built-in consumer; any
    object with these two members will do (a recorder in a test, a mediator
    wrapped by your own middleware).

    Example:
        ```python
        class Printer:
            event_map = event_map          # an anycqrs.EventMap

            async def send(self, event):
                print(event.event_name, event.payload)
        ```
    """

    @property
    def event_map(self) -> EventTypes:
        """The bindings incoming messages are decoded with."""
        ...

    async def send(self, event: Any, /) -> Any:
        """Handle one decoded event; raising makes the consumer retry it."""
        ...


@runtime_checkable
class NeedsEventIds(Protocol):
    """An event sink that may need every message to carry an ``event_id``
    (`anycqrs.EventMediator` with an inbox): consumers then treat a message
    without one as poison instead of giving it a random id."""

    @property
    def requires_event_ids(self) -> bool:
        """Whether messages without an ``event_id`` are poison."""
        ...


@runtime_checkable
class SenderSink(Protocol):
    """An event sink with a cheaper way in for consumers (`anycqrs.EventMediator`):
    `sender_parts()` returns ``(send, resolve, follow)``, together exactly
    `send`'s semantics, that the `Lanes` use once per event instead of `send`:
    ``resolve(event)`` is a new handler when the event's plan is a lone
    plain handler (the lanes await its `handle` themselves, take its events
    with `take_list` also when it raised, and, when it returned, ``await
    follow(events)``), else `None` (``await send(event)``; `resolve` itself
    is `None` when no event can have such a plan). See
    `anycqrs.events._sender.ConsumedSender`. Not exported: the lanes' own seam."""

    def sender_parts(
        self,
    ) -> tuple[
        Callable[[Any], Awaitable[Any]],
        Callable[[Any], Any] | None,
        Callable[[Sequence[Any]], Awaitable[Any]],
    ]:
        """``(send, resolve, follow)`` for one consumer run."""
        ...


@runtime_checkable
class DecodingTransport(Protocol):
    """A transport whose `fetch` leaves its items undecoded (`event` and
    `error` both `None`; the Kafka transport): the `Lanes` call `decode`
    with each chunk just before they handle it, so a decoded event lives
    only while its chunk is handled instead of while it waits in a lane's
    queue (fewer objects for the garbage collector to walk). A message
    that cannot be decoded becomes a poison item there, handled as if
    `fetch` had found it. Not exported: the lanes' own seam."""

    def decode(self, items: Sequence[Inbound], /) -> None:
        """Set the `event` (or, for a poison message, the `error`) of `items`."""
        ...


@runtime_checkable
class CountsRevocations(Protocol):
    """A transport that counts the revocations of its run (the Kafka
    transport: partitions revoked or lost), the count raised before any
    item becomes stale: while it is 0 no item is, and the `Lanes` skip the
    per-item `stale` call. Not exported: the lanes' own seam."""

    revocations: int
    """How often items of this run were made stale (0: none is)."""


@runtime_checkable
class ChunkSink(Protocol):
    """An event sink that may handle a lane's chunk in one unit of work
    (`anycqrs.EventMediator` whose inbox batches: one transaction per
    chunk, see `anycqrs.inbox.PostgresInbox`'s ``batch``).

    The `Lanes` call `chunk` once per chunk: `None` means items settle one
    by one as today. A context manager is entered around the chunk's
    items; they are settled only once it exited cleanly. When its exit
    raises (a failed commit, a broken transaction) nothing is settled and
    the whole chunk is handled again under the consumer's retry policy
    (then the consumer stops with `anycqrs.errors.MessageHandlingError`).

    Example:
        ```python
        class Batched:
            event_map = event_map

            async def send(self, event):
                ...

            def chunk(self):
                return unit_of_work()   # an async context manager, or None
        ```
    """

    def chunk(self) -> AbstractAsyncContextManager[None] | None:
        """The async context of the next chunk, or `None`."""
        ...


class ChunkRedo(Exception):
    """Raised by a chunk context's exit (`ChunkSink.chunk`) when the chunk
    must be handled again at once in a new context, not because it failed:
    the `Lanes` do so without a delay and without using an attempt of the
    retry policy (an optimistic inbox chunk whose handler failed is redone
    with a savepoint per call), once per attempt; a second one in a row is
    a failure of the chunk like any other exception."""


@runtime_checkable
class ChunkPlan(Protocol):
    """A chunk context (what `ChunkSink.chunk` returns) that wants the
    chunk's events before it is entered: the `Lanes` call `expect` with
    them (the decoded ones), so an inbox can claim all their rows in one
    statement (`anycqrs.inbox.PostgresInbox`'s ``optimistic``)."""

    def expect(self, events: Sequence[Any]) -> None:
        """The events the chunk will handle, in order (some may be skipped)."""
        ...


@runtime_checkable
class Transport(Protocol):
    """What a broker adapter provides to `consume` and the `Lanes`.

    A transport is the state of *one run* of a consumer (an open Kafka
    consumer, a RabbitMQ channel, an in-memory queue): the consumer object
    builds a new one each time it runs. All methods are called on the event
    loop; `settle`, `stale` and `location` must not block.

    Contract:
        * `fetch` waits for the next batch and turns it into `Inbound` items
          with the decoder it is given (`decode.inbound(...)`); raising
          `anyio.EndOfStream` ends the run once the lanes finished.
        * `settle` is told, in order per lane, which items are done (handled,
          dead-lettered or skipped as poison): commit offsets / ack them.
          Items never settled must be delivered again by the broker. A
          settled item is not read again (the transport may release what it
          carries, as the Kafka transport does with `event` and `raw`).
        * `stale` says an item must be dropped unhandled (its partition was
          revoked, its channel closed): it is neither handled nor settled.
        * `dead_letter` moves an item aside; `False` means there is no
          destination (a failing item then stops the consumer, a poison one
          is skipped).

    Example:
        ```python
        class QueueTransport:
            def __init__(self, queue):
                self.queue = queue

            async def fetch(self, decode):
                records = await self.queue.get_batch()
                return [decode.inbound(r.body, r.name, r.topic, r.key, lane=hash(r.key), raw=r)
                        for r in records]

            def settle(self, items):
                self.queue.ack([item.raw for item in items])

            def stale(self, item):
                return False

            def location(self, item):
                return f"queue@{item.raw.id}"

            async def dead_letter(self, item, error, attempts):
                return False
        ```
    """

    async def fetch(self, decode: EventDecoder, /) -> Sequence[Inbound]:
        """The next batch (may be empty); raise `anyio.EndOfStream` when done."""
        ...

    def settle(self, items: Sequence[Inbound], /) -> None:
        """These items were handled (or dead-lettered, or skipped): commit / ack."""
        ...

    def stale(self, item: Inbound, /) -> bool:
        """Whether `item` must be dropped unhandled (e.g. partition revoked)."""
        ...

    def location(self, item: Inbound, /) -> str:
        """Where `item` came from, for logs and errors (`topic[0]@42`)."""
        ...

    async def dead_letter(self, item: Inbound, error: BaseException, attempts: int, /) -> bool:
        """Move `item` aside; `False` when no destination is configured.

        `attempts` is how often the handler ran (`0` for a poison message).
        """
        ...
