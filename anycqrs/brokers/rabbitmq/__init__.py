"""RabbitMQ: a producer (`RabbitMQMessageBroker`) and a consumer
(`RabbitMQEventConsumer`) on pika's blocking connection, each owning a
dedicated connection thread (pika is not thread-safe).

Install the `rabbitmq` extra: `pip install anycqrs[rabbitmq]`.

Wire format: body = JSON of `to_dict(event)`, `content_type`
`application/json`, `type` and header `event_name` = the event name,
`message_id` = the event id, header `key` = the event's key (the consumer's
ordering key), plus the event's own headers; persistent.

Both reconnect after a lost connection (and wait for a broker that is not up
yet) following an `anycqrs.RetryPolicy` passed as `reconnect=`. The consumer
is a transport over the public consumer layer, `anycqrs.consumers`.

Deprecated, kept for one release: `ReconnectPolicy` (a factory of the
equivalent `RetryPolicy`) and `ConsumerRetryPolicy` (now `anycqrs.RetryPolicy`).

Example:
    ```python
    async with RabbitMQMessageBroker("amqp://guest:guest@localhost/%2F",
                                     exchange="orders") as broker:
        await broker.send_message(Message.from_event(event))  # routing key = event.topic
    ```
"""

from __future__ import annotations

from typing import Any

from ._consumer import RabbitMQEventConsumer as RabbitMQEventConsumer
from ._producer import RabbitMQMessageBroker as RabbitMQMessageBroker
from ._reconnect import ReconnectPolicy as ReconnectPolicy

__all__ = [
    "RabbitMQEventConsumer",
    "RabbitMQMessageBroker",
    "ReconnectPolicy",
]


def __getattr__(name: str) -> Any:
    if name == "ConsumerRetryPolicy":
        from .._deprecated import consumer_retry_policy

        return consumer_retry_policy("anycqrs.brokers.rabbitmq")
    raise AttributeError(f"module 'anycqrs.brokers.rabbitmq' has no attribute {name!r}")
