"""The lanes: bounded, per-key ordered delivery of `Inbound` items to an
event sink, with retries, poison handling and dead letters."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeGuard

import anyio
import anyio.abc

from .._endpoint import take_list
from .._exc import single_error
from .._retry import RetryPolicy, Sleep, retry_call
from ..errors import MessageHandlingError
from ..observability import _context, _messaging, _tracing
from ..observability._metrics import ConsumerMetrics
from ._decoder import Inbound
from ._outcomes import ItemOutcomes
from ._protocols import (
    ChunkPlan,
    ChunkRedo,
    ChunkSink,
    CountsRevocations,
    DecodingTransport,
    EventSink,
    SenderSink,
    Transport,
)
from ._queue import LaneQueue

__all__ = ["DEFAULT_RETRY", "Lanes"]

logger = logging.getLogger("anycqrs.consumers")

DEFAULT_RETRY = RetryPolicy(attempts=3, delay=0.1, multiplier=2.0, max_delay=10.0)
"""What consumers retry with unless told otherwise: 3 attempts, 0.1 s, 0.2 s."""


class Lanes(ItemOutcomes):
    """Bounded, per-key ordered delivery of `Inbound` items to an event sink.

    A fixed number of long-lived tasks (the concurrency bound), each handling
    its items one after another. An item goes to the lane chosen by its
    `lane` hash, so items with one key are handled in order while different
    keys run concurrently. Batches are handed over per lane (one chunk queued
    per lane per batch, without a loop pass while the lane has room); no task
    is spawned per message. A lane takes its queued chunks back to back and
    waits (its one pass through the event loop) only when it has none left
    (at most `buffer` chunks, so a submitter waiting on it runs soon).

    A lane first has a chunk decoded when the transport left that to it
    (the Kafka transport: see `DecodingTransport`). Then for each item it:

    * drops it unhandled when `transport.stale(item)` (revoked);
    * dead-letters a poison item (`item.error` set), never retrying it;
    * sends the event to the sink (through `sink.sender_parts()` when the
      sink offers them, as `anycqrs.EventMediator` does: `send`'s semantics
      without its frames, a lone plain handler awaited by the lane itself;
      see `SenderSink`); when that raises, retries it by `retry`
      and, when it still fails, dead-letters it, or, without a dead-letter
      destination, stops with `MessageHandlingError` (the item unsettled);
    * after each chunk, tells `transport.settle` which items finished, also
      when the lane is cancelled (graceful stop settles what finished).

    A sink that is a `ChunkSink` (an `EventMediator` whose inbox batches)
    gets each chunk inside its `chunk()` context: the chunk's items are
    settled only once it exited cleanly (none when cancelled), and when the
    exit raises the whole chunk is handled again by `retry`.

    Args:
        sink: where events go (`sink.send`).
        transport: the run's transport (`settle`, `stale`, `location`, `dead_letter`).
        concurrency: the number of lanes (items handled at once).
        retry: how a failing handler is retried.
        buffer: chunks each lane may have queued before `submit` waits.
        logger: where retries and dead letters are logged.
        sleep: how retry backoff waits (inject a fake in tests).
        metrics: where outcomes, durations and in-flight counts are recorded
            (`None`: nowhere).
        tracer_provider: an OpenTelemetry `TracerProvider` for the
            `process` spans (default: the global one, read now; none set:
            no spans). Spans and the correlation context of each message
            need a transport that is an
            `anycqrs.observability.TracedTransport`.

    Example:
        ```python
        lanes = Lanes(mediator, transport, concurrency=8, retry=RetryPolicy(attempts=5))
        async with anyio.create_task_group() as tg:
            await tg.start(lanes.run)
            await lanes.submit(await transport.fetch(EventDecoder(mediator.event_map)))
            await lanes.close()      # the lanes finish what they were given
        ```
    """

    def __init__(
        self,
        sink: EventSink,
        transport: Transport,
        *,
        concurrency: int,
        retry: RetryPolicy = DEFAULT_RETRY,
        buffer: int = 2,
        logger: logging.Logger = logger,
        sleep: Sleep = anyio.sleep,
        metrics: ConsumerMetrics | None = None,
        tracer_provider: Any = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self._send: Callable[[Any], Any] = sink.send
        self._resolve: Callable[[Any], Any] | None = None
        """A handler to await directly for an event, or `None` (see `SenderSink`)."""
        self._follow: Callable[[Any], Any] = sink.send
        if isinstance(sink, SenderSink):
            self._send, self._resolve, self._follow = sink.sender_parts()
        self._open_chunk: Callable[[], Any] | None = (
            sink.chunk if isinstance(sink, ChunkSink) else None
        )
        self._plan_types: dict[type, bool] = {}
        """Per chunk-context type, whether it is a `ChunkPlan` (one protocol
        check per type: a runtime protocol check costs tens of thousands of
        instructions)."""
        self._transport = transport
        self._decode: Callable[[list[Inbound]], None] | None = (
            transport.decode if isinstance(transport, DecodingTransport) else None
        )
        """The transport's `decode`, when it leaves decoding to the lanes."""
        self._counted: CountsRevocations | None = (
            transport if isinstance(transport, CountsRevocations) else None
        )
        """The transport, when it counts revocations (`stale` is asked only once one happened)."""
        self._retry = retry
        self._logger = logger
        self._sleep = sleep
        self._count = concurrency
        self._buffer = buffer
        self._lanes: list[LaneQueue] = []
        self._metrics = metrics
        self._in_flight = [0] * concurrency
        """Items handed to each lane and not finished (kept only with metrics)."""
        self._traced: _messaging.TracedTransport | None = (
            transport if isinstance(transport, _messaging.TracedTransport) else None
        )
        self._tracer = _tracing.tracer(tracer_provider) if self._traced is not None else None
        self._read: Callable[[Inbound], _context.MessageContext] | None = (
            _messaging.context_reader(self._traced) if self._traced is not None else None
        )

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run the lane tasks until `close` was called and they finished, or
        until cancelled (or an item fails for good).

        Raises:
            MessageHandlingError: an item kept failing and could not be
                dead-lettered.
        """
        try:
            with single_error():
                async with anyio.create_task_group() as group:
                    for index in range(self._count):
                        queue = LaneQueue()
                        self._lanes.append(queue)
                        group.start_soon(self._lane, queue, index)
                    task_status.started()
        finally:
            metrics = self._metrics
            if metrics is not None:  # chunks dropped unhandled leave the gauge too
                for index, left in enumerate(self._in_flight):
                    if left:
                        metrics.in_flight(index, -left)
                        self._in_flight[index] = 0

    async def submit(self, items: Sequence[Inbound]) -> None:
        """Hand `items` to their lanes (waits while a lane's buffer is full)."""
        lanes = self._lanes
        count = len(lanes)
        chunks: list[list[Inbound]]
        if count == 1:
            chunks = [list(items)]
        else:
            chunks = [[] for _ in range(count)]
            for item in items:
                chunks[item.lane % count].append(item)
        metrics, buffer = self._metrics, self._buffer
        for index, (queue, chunk) in enumerate(zip(lanes, chunks, strict=True)):
            if chunk:
                if metrics is not None:
                    metrics.in_flight(index, len(chunk))
                    self._in_flight[index] += len(chunk)
                while len(queue.chunks) >= buffer:  # full: wait until the lane takes one
                    if queue.space is None:
                        queue.space = anyio.Event()
                    await queue.space.wait()
                queue.chunks.append(chunk)  # no loop pass while the lane has room
                waiter = queue.waiter
                if waiter is not None:
                    queue.waiter = None
                    waiter.set()

    async def close(self) -> None:
        """Let the lanes finish what they were given, then end them."""
        for queue in self._lanes:
            queue.closed = True
            waiter = queue.waiter
            if waiter is not None:
                queue.waiter = None
                waiter.set()

    async def _lane(self, queue: LaneQueue, index: int) -> None:
        read = self._read
        if read is None:
            await self._items(queue, index, None)
            return
        # a traced transport: each item is the lane's current message while it
        # is handled (one attribute write per item, see LaneMessage)
        message = _context.LaneMessage(read)
        token = _context._CURRENT.set(message)
        try:
            await self._items(queue, index, message)
        finally:
            _context._CURRENT.reset(token)

    async def _items(
        self,
        queue: LaneQueue,
        index: int,
        message: _context.LaneMessage | None,
    ) -> None:
        metrics, settle = self._metrics, self._transport.settle
        handle = self._observed if self._tracer is not None else self._handle
        chunks = queue.chunks
        open_chunk, decode = self._open_chunk, self._decode
        while True:
            # take a queued chunk without a loop pass; wait only when none is
            # (the submitter runs, and cancellation lands, at that wait)
            if not chunks:
                if queue.closed:
                    return
                waiter = queue.waiter = anyio.Event()
                await waiter.wait()
                continue
            chunk = chunks.popleft()
            space = queue.space
            if space is not None:
                queue.space = None
                space.set()
            finished: list[Inbound] = []
            try:
                if decode is not None:  # just before handling: see DecodingTransport
                    decode(chunk)
                scope = open_chunk() if open_chunk is not None else None
                if scope is None:
                    await self._chunk(chunk, finished, handle, message)
                else:
                    finished.extend(await self._in_scope(chunk, scope, handle, message))
            finally:
                # the events are read before `settle`: a transport may release them
                events = [item.event for item in finished] if metrics is not None else None
                if finished:
                    settle(finished)
                if metrics is not None:
                    metrics.finished(index, len(chunk), events or [])
                    self._in_flight[index] -= len(chunk)

    async def _chunk(
        self,
        chunk: list[Inbound],
        finished: list[Inbound],
        handle: Callable[[Inbound, float], Any],
        message: _context.LaneMessage | None,
    ) -> None:
        """Handle the items of `chunk`, appending each finished one to `finished`."""
        stale, metrics, clock = self._transport.stale, self._metrics, time.perf_counter
        counted = self._counted
        if metrics is None and self._tracer is None:
            # the plain loop: `_handle` inlined (no frame per item); with a
            # lane message, the item is current while it is sent (and retried)
            send, append, resolve = self._send, finished.append, self._resolve
            for item in chunk:
                if (counted is None or counted.revocations) and stale(item):
                    continue
                if item.error is not None:
                    await self._poison(item)
                else:
                    if message is not None:
                        message.item = item
                    try:
                        event = item.event
                        handler = resolve(event) if resolve is not None else None
                        if handler is None:
                            await send(event)
                        else:  # `send` inlined: a lone plain handler (see ConsumedSender)
                            try:
                                await handler.handle(event)
                            finally:  # a failed call's events are dropped with it
                                followups = take_list(handler) if handler._anycqrs_events else None
                            if followups:
                                await self._follow(followups)
                    except Exception as exc:  # noqa: BLE001 - retried by _failed
                        await self._failed(item, exc, 0.0)
                    finally:
                        if message is not None:
                            message.item = None
                append(item)
            return
        for item in chunk:
            if (counted is None or counted.revocations) and stale(item):
                continue
            started = clock() if metrics is not None else 0.0
            if item.error is not None:
                outcome = await self._poison(item)
            elif message is None:
                outcome = await handle(item, started)
            else:
                message.item = item
                try:
                    outcome = await handle(item, started)
                finally:
                    message.item = None
            finished.append(item)
            if metrics is not None:
                metrics.processed(item.event, outcome, clock() - started, item.error)

    async def _in_scope(
        self,
        chunk: list[Inbound],
        scope: Any,
        handle: Callable[[Inbound, float], Any],
        message: _context.LaneMessage | None,
    ) -> list[Inbound]:
        """Handle `chunk` inside the sink's chunk context (`ChunkSink`); the
        finished items once it exited cleanly. When the exit raises, the
        chunk is handled again (a new context) by the retry policy; what
        the items themselves raise is not retried here."""
        own: list[BaseException] = []  # errors of the items, not of the exit
        scopes = [scope]
        attempts = 0

        async def attempt() -> list[Inbound]:
            nonlocal attempts
            attempts += 1
            redone = False
            while True:
                done: list[Inbound] = []
                current = scopes.pop() if scopes else self._open_chunk()  # type: ignore[misc]
                if self._plans(current):
                    current.expect([item.event for item in chunk if item.error is None])
                try:
                    async with current:
                        try:
                            await self._chunk(chunk, done, handle, message)
                        except BaseException as error:
                            own.append(error)
                            raise
                except ChunkRedo:
                    if redone:
                        raise
                    redone = True  # at once, in a new context: not a failure
                    continue
                return done

        def on_retry(error: BaseException, failures: int, delay: float) -> None:
            self._logger.warning(
                "The chunk at %s failed as a whole (attempt %d): %r; handling it again in %.3gs",
                self._transport.location(chunk[0]),
                failures,
                error,
                delay,
            )

        try:
            done: list[Inbound] = await retry_call(
                self._retry,
                attempt,
                retryable=lambda error: not any(error is mine for mine in own),
                on_retry=on_retry,
                sleep=self._sleep,
            )
        except Exception as error:
            if any(error is mine for mine in own):
                raise
            raise MessageHandlingError(
                self._transport.location(chunk[0]), attempts, error
            ) from error
        return done

    def _plans(self, scope: Any) -> TypeGuard[ChunkPlan]:
        """Whether the chunk context `scope` wants the chunk's events (`ChunkPlan`)."""
        kind = type(scope)
        known = self._plan_types.get(kind)
        if known is None:
            known = self._plan_types[kind] = isinstance(scope, ChunkPlan)
        return known
