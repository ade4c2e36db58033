"""Message brokers: the `MessageBroker` and `BatchMessageBroker` protocols, the
wire `Message`, and the built-in in-memory and devnull brokers.

Kafka lives in `anycqrs.brokers.kafka` (extra `kafka`) and RabbitMQ in
`anycqrs.brokers.rabbitmq` (extra `rabbitmq`). Their classes are also
reachable from here (`anycqrs.brokers.KafkaMessageBroker`); they are imported
on first access, so the client libraries are only needed when used. The
consumers run on the public consumer layer, `anycqrs.consumers`.
"""

from __future__ import annotations

import importlib
from types import MappingProxyType
from typing import Any

from ._memory import DevnullMessageBroker as DevnullMessageBroker
from ._memory import InMemoryMessageBroker as InMemoryMessageBroker
from ._message import BatchMessageBroker as BatchMessageBroker
from ._message import Message as Message
from ._message import MessageBroker as MessageBroker

# Private (not in __all__): the event dispatcher and the outbox relay import it
# from here; its home is anycqrs.brokers._message.
from ._message import publish_many as publish_many

__all__ = [
    "BatchMessageBroker",
    "DevnullMessageBroker",
    "InMemoryMessageBroker",
    "KafkaEventConsumer",
    "KafkaMessageBroker",
    "Message",
    "MessageBroker",
    "RabbitMQEventConsumer",
    "RabbitMQMessageBroker",
]

_LAZY = MappingProxyType(
    {
        "KafkaMessageBroker": "anycqrs.brokers.kafka",
        "KafkaEventConsumer": "anycqrs.brokers.kafka",
        "RabbitMQMessageBroker": "anycqrs.brokers.rabbitmq",
        "RabbitMQEventConsumer": "anycqrs.brokers.rabbitmq",
    }
)


def __getattr__(name: str) -> Any:
    if name == "ConsumerRetryPolicy":
        from ._deprecated import consumer_retry_policy

        return consumer_retry_policy("anycqrs.brokers")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'anycqrs.brokers' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
