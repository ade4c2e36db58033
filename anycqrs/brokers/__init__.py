"""Message brokers: the :class:`MessageBroker` protocol, the wire
:class:`Message`, and the built-in in-memory and devnull brokers.

Kafka lives in :mod:`anycqrs.brokers.kafka` (extra ``kafka``) and RabbitMQ in
:mod:`anycqrs.brokers.rabbitmq` (extra ``rabbitmq``). Their classes are also
reachable from here (``anycqrs.brokers.KafkaMessageBroker``); they are imported
on first access, so the client libraries are only needed when used.
"""

from __future__ import annotations

import importlib
from types import MappingProxyType
from typing import Any

from ._memory import DevnullMessageBroker as DevnullMessageBroker
from ._memory import InMemoryMessageBroker as InMemoryMessageBroker
from ._message import Message as Message
from ._message import MessageBroker as MessageBroker
from ._message import publish_many as publish_many

__all__ = [
    "ConsumerRetryPolicy",
    "DevnullMessageBroker",
    "InMemoryMessageBroker",
    "KafkaEventConsumer",
    "KafkaMessageBroker",
    "Message",
    "MessageBroker",
    "RabbitMQEventConsumer",
    "RabbitMQMessageBroker",
    "publish_many",
]

_LAZY = MappingProxyType(
    {
        "ConsumerRetryPolicy": "anycqrs.brokers._consumer",
        "KafkaMessageBroker": "anycqrs.brokers.kafka",
        "KafkaEventConsumer": "anycqrs.brokers.kafka",
        "RabbitMQMessageBroker": "anycqrs.brokers.rabbitmq",
        "RabbitMQEventConsumer": "anycqrs.brokers.rabbitmq",
    }
)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'anycqrs.brokers' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
