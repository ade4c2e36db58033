"""RabbitMQ: a producer (`RabbitMQMessageBroker`) and a consumer
(`RabbitMQEventConsumer`) on pika's blocking connection, each owning a
dedicated connection thread (pika is not thread-safe).

Install the `rabbitmq` extra: `pip install anycqrs[rabbitmq]`.

Wire format: body = JSON of `to_dict(event)`, `content_type`
`application/json`, `type` and header `event_name` = the event name,
`message_id` = the event id, header `key` = the event's key (the consumer's
ordering key), plus the event's own headers; persistent.

Both reconnect after a lost connection (and wait for a broker that is not up
yet) following an `anycqrs.RetryPolicy` passed as `reconnect=`.
`ReconnectPolicy` is a deprecated factory of the equivalent `RetryPolicy`.

Example:
    ```python
    async with RabbitMQMessageBroker("amqp://guest:guest@localhost/%2F",
                                     exchange="orders") as broker:
        await broker.send_message(Message.from_event(event))  # routing key = event.topic
    ```
"""

from .._consumer import ConsumerRetryPolicy as ConsumerRetryPolicy
from ._consumer import RabbitMQEventConsumer as RabbitMQEventConsumer
from ._producer import RabbitMQMessageBroker as RabbitMQMessageBroker
from ._reconnect import ReconnectPolicy as ReconnectPolicy

__all__ = [
    "ConsumerRetryPolicy",
    "RabbitMQEventConsumer",
    "RabbitMQMessageBroker",
    "ReconnectPolicy",
]
