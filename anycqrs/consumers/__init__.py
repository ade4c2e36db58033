"""The consumer layer: between an event sink and a broker transport.

A *consumer* reads messages from a broker and feeds the decoded events to an
*event sink* (an `anycqrs.EventMediator`). This package is the part every
consumer shares, public so a transport for a new broker (NATS, Redis streams)
can be written from these names alone:

* `EventSink`: what a consumer feeds (`send(event)`, `event_map`).
* `Transport`: what a broker adapter provides for one run (`fetch` a batch,
  `settle` what finished, `dead_letter`, `stale`, `location`).
* `EventDecoder` and `Inbound`: wire bytes to events, poison messages kept
  as items instead of errors.
* `Lanes`: bounded concurrency, per-key order, retries (`anycqrs.RetryPolicy`),
  poison handling, dead letters, settling what finished on a graceful stop.
* `consume`: one run, a transport feeding a sink through lanes.
* `InMemoryTransport`: the whole contract without a broker, for tests.

The Kafka and RabbitMQ consumers of `anycqrs.brokers` are transports over
this layer. Nothing here imports `anycqrs.events`.

Example:
    ```python
    from anycqrs.consumers import InMemoryTransport, consume

    transport = InMemoryTransport()
    transport.put_event(NotificationEvent(payload=OrderPaid(1), topic="orders"))
    transport.close()
    await consume(mediator, transport)
    assert len(transport.settled) == 1
    ```
"""

from __future__ import annotations

from ._consume import consume as consume
from ._decoder import EventDecoder as EventDecoder
from ._decoder import Inbound as Inbound
from ._lanes import DEFAULT_RETRY as DEFAULT_RETRY
from ._lanes import Lanes as Lanes
from ._memory import DeadLetter as DeadLetter
from ._memory import InMemoryTransport as InMemoryTransport
from ._memory import MemoryRecord as MemoryRecord
from ._protocols import ChunkSink as ChunkSink
from ._protocols import EventSink as EventSink
from ._protocols import EventTypes as EventTypes
from ._protocols import NeedsEventIds as NeedsEventIds
from ._protocols import Transport as Transport

__all__ = [
    "DEFAULT_RETRY",
    "ChunkSink",
    "DeadLetter",
    "EventDecoder",
    "EventSink",
    "EventTypes",
    "NeedsEventIds",
    "InMemoryTransport",
    "Inbound",
    "Lanes",
    "MemoryRecord",
    "Transport",
    "consume",
]
