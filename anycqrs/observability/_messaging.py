"""Messaging spans: producers (one `send` span per message, its context
injected into the message's headers) and consumers (one `process` span per
consumed message, child of the context the message carries), with the
attributes of OpenTelemetry's messaging semantic conventions.

A message's *creation context* is the trace context in its headers when it
was made (`Message.from_event`, an outbox row): a producer's `send` span is
its child, so a relay publishing a row minutes later continues the trace of
the transaction that wrote it; the span the producer was called in (a relay
batch) is linked.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import attrs

from ..errors import BrokerDeliveryError
from ._context import MessageContext, message_from_headers
from ._propagation import extract, inject
from ._tracing import CONSUMER, PRODUCER, end_span, link, otel_trace, start_span

__all__ = [
    "TracedTransport",
    "context_reader",
    "end_sends",
    "start_sends",
]

SYSTEM = "messaging.system"
DESTINATION = "messaging.destination.name"
OPERATION = "messaging.operation.type"
OPERATION_NAME = "messaging.operation.name"
MESSAGE_ID = "messaging.message.id"
BATCH_COUNT = "messaging.batch.message_count"
CONSUMER_GROUP = "messaging.consumer.group.name"
PARTITION = "messaging.destination.partition.id"
OFFSET = "messaging.kafka.offset"
KAFKA_KEY = "messaging.kafka.message.key"
ROUTING_KEY = "messaging.rabbitmq.destination.routing_key"


@runtime_checkable
class TracedTransport(Protocol):
    """What a consumer transport offers so consumed messages get their
    correlation context and a `process` span (the built-in Kafka, RabbitMQ
    and in-memory transports implement it; a transport without it is
    consumed untraced and without correlation context).

    Example:
        ```python
        class QueueTransport:
            ...
            def message_headers(self, item):
                return item.raw.headers          # str or UTF-8 bytes values

            def span_attributes(self, item):
                return {"messaging.system": "myqueue",
                        "messaging.destination.name": item.raw.queue}
        ```
    """

    def message_headers(self, item: Any, /) -> Mapping[str, Any]:
        """The headers the item's message carried."""
        ...

    def span_attributes(self, item: Any, /) -> Mapping[str, Any]:
        """Messaging attributes of the item's `process` span."""
        ...


def context_reader(transport: TracedTransport) -> Callable[[Any], MessageContext]:
    """How to read a consumed item's correlation context (made once per
    consumer run; `LazyMessage(reader, item)` calls it only when asked)."""
    headers_of = transport.message_headers

    def read(item: Any) -> MessageContext:
        event = item.event
        own = str(event.event_id) if event is not None else None
        return message_from_headers(headers_of(item), own)

    return read


def start_sends(
    tracer: Any, system: str, messages: Sequence[Any], **attributes: Any
) -> tuple[list[Any], list[Any]]:
    """Start one `send` span per message (child of its creation context, else
    of the current span; the current span linked when it is not the parent)
    and return the messages with that span's context in their headers."""
    current = otel_trace.get_current_span()
    current_link = link(otel_trace.set_span_in_context(current)) if current else None
    sent: list[Any] = []
    spans: list[Any] = []
    for message in messages:
        created = extract(message.headers)
        attrs_ = {
            SYSTEM: system,
            DESTINATION: message.topic,
            OPERATION: "send",
            OPERATION_NAME: "send",
            MESSAGE_ID: str(message.message_id),
            **attributes,
        }
        if message.key is not None:
            attrs_[KAFKA_KEY if system == "kafka" else ROUTING_KEY] = message.key
        span = start_span(
            tracer,
            f"send {message.topic}",
            PRODUCER,
            attrs_,
            context=created,
            links=[current_link] if created is not None and current_link is not None else None,
        )
        headers = dict(message.headers)
        inject(headers, otel_trace.set_span_in_context(span))
        sent.append(attrs.evolve(message, headers=headers))
        spans.append(span)
    return sent, spans


def end_sends(spans: Sequence[Any], error: BaseException | None) -> None:
    """End the `send` spans; a delivery error marks the failed ones (all of
    them when the error does not say which)."""
    failed_at: set[int] | None = None
    if isinstance(error, BrokerDeliveryError) and error.positions is not None:
        failed_at = set(error.positions)
    for index, span in enumerate(spans):
        end_span(span, error if failed_at is None or index in failed_at else None)


def process_span(tracer: Any, transport: TracedTransport, item: Any) -> Any:
    """Start the `process` span of a consumed item (not made current)."""
    attributes = dict(transport.span_attributes(item))
    attributes[OPERATION] = "process"
    attributes[OPERATION_NAME] = "process"
    event = item.event
    if event is not None:
        attributes.setdefault(MESSAGE_ID, str(event.event_id))
    parent = extract(transport.message_headers(item))
    destination = attributes.get(DESTINATION, "")
    return start_span(tracer, f"process {destination}", CONSUMER, attributes, context=parent)
