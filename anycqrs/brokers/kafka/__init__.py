"""Kafka: a producer (`KafkaMessageBroker`) and a consumer (`KafkaEventConsumer`,
a transport of `anycqrs.consumers`), both on confluent-kafka (librdkafka).

Install the `kafka` extra: `pip install anycqrs[kafka]`.

Every blocking librdkafka call runs in a worker thread, one thread hop per
batch. Wire format (`encode_message`): value = JSON of `to_dict(event)`
(`Message.payload`), key = the event's `key` (UTF-8), headers `event_name`
and `message_id` plus the event's own `headers`.

librdkafka's own log lines go to Python `logging`, under
`anycqrs.brokers.kafka.librdkafka.producer`, `.consumer` and `.dlq`.

Example:
    ```python
    async with KafkaMessageBroker({"bootstrap.servers": "localhost:9092"}) as broker:
        mediator = anycqrs.requests.bootstrap.bootstrap(message_broker=broker, ...)
        await mediator.send(PayOrder(order_id=1))
    ```
"""

from __future__ import annotations

from typing import Any

from ._consumer import KafkaEventConsumer as KafkaEventConsumer
from ._producer import KafkaMessageBroker as KafkaMessageBroker
from ._status import KafkaConsumerStatus as KafkaConsumerStatus
from ._wire import encode_message as encode_message

__all__ = ["KafkaConsumerStatus", "KafkaEventConsumer", "KafkaMessageBroker", "encode_message"]


def __getattr__(name: str) -> Any:
    if name == "ConsumerRetryPolicy":
        from .._deprecated import consumer_retry_policy

        return consumer_retry_policy("anycqrs.brokers.kafka")
    raise AttributeError(f"module 'anycqrs.brokers.kafka' has no attribute {name!r}")
