"""`consume`: one run of a consumer, a transport feeding an event sink through lanes."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel

from .._exc import single_error
from .._retry import RetryPolicy, Sleep
from ..codecs import MessageCodec
from ..observability._metrics import ConsumerMetrics
from ._decoder import EventDecoder
from ._lanes import DEFAULT_RETRY, Lanes, logger
from ._protocols import EventSink, NeedsEventIds, Transport

__all__ = ["consume"]


async def consume(
    sink: EventSink,
    transport: Transport,
    *,
    concurrency: int = 16,
    retry: RetryPolicy = DEFAULT_RETRY,
    logger: logging.Logger = logger,
    sleep: Sleep = anyio.sleep,
    codec: MessageCodec | None = None,
    metrics: ConsumerMetrics | None = None,
    tracer_provider: Any = None,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Feed `sink` from `transport` until cancelled or the transport ends.

    The loop every consumer runs: it fetches a batch and hands it to the
    lanes (which queue up to two chunks each, so fetching runs ahead of the
    handlers), the `Lanes` handle them with per-key order, retries and
    dead letters, and the transport settles what finished. Everything a run
    needs lives in this call (the decoder, the lanes), so the transport is
    the only state, and a consumer runs again by building a new one.

    It reports started (for `task_group.start`) once the lanes are up. When
    `transport.fetch` raises `anyio.EndOfStream` the lanes finish what they
    were given and `consume` returns; cancelling it stops the lanes, and what
    finished is settled before the cancellation propagates.

    Args:
        sink: where events go (an `anycqrs.EventMediator`).
        transport: this run's transport.
        concurrency: the number of lanes.
        retry: how a failing handler is retried.
        logger: where retries, poison messages and dead letters are logged.
        sleep: how retry backoff waits (inject a fake in tests).
        codec: the wire format the transport's bytes are in (default: JSON;
            see `anycqrs.codecs`).
        metrics: the consumer's instruments (`ConsumerMetrics.create(...)`;
            `None`: not measured).
        tracer_provider: an OpenTelemetry `TracerProvider` for the
            per-message `process` spans (default: the global one; none set,
            or OpenTelemetry absent: no spans). See `Lanes`.
        task_status: set by `task_group.start`.

    Raises:
        MessageHandlingError: an item kept failing and `transport.dead_letter`
            had no destination (the item stays unsettled).

    Example:
        ```python
        transport = InMemoryTransport()
        transport.put_event(NotificationEvent(payload=OrderPaid(1), topic="orders"))
        transport.close()
        await consume(mediator, transport)        # returns once all are settled
        assert len(transport.settled) == 1
        ```
    """
    decode = EventDecoder(
        sink.event_map,
        codec,
        require_event_id=isinstance(sink, NeedsEventIds) and sink.requires_event_ids,
    )
    lanes = Lanes(
        sink,
        transport,
        concurrency=concurrency,
        retry=retry,
        logger=logger,
        sleep=sleep,
        metrics=metrics,
        tracer_provider=tracer_provider,
    )
    fetch, submit = transport.fetch, lanes.submit
    with single_error():
        async with anyio.create_task_group() as group:
            await group.start(lanes.run)
            task_status.started()
            while True:
                try:
                    batch = await fetch(decode)
                except anyio.EndOfStream:
                    break
                if batch:
                    await submit(batch)
                # one pass per batch: a transport whose fetch and the lanes'
                # buffers never wait must not keep the loop from others
                await anyio.lowlevel.checkpoint()
            await lanes.close()
