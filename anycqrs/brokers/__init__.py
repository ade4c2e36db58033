"""Message brokers: the :class:`MessageBroker` protocol, the wire
:class:`Message`, and the built-in in-memory and devnull brokers.

Kafka lives in :mod:`anycqrs.brokers.kafka` (extra ``kafka``) and RabbitMQ in
:mod:`anycqrs.brokers.rabbitmq` (extra ``rabbitmq``).
"""

from ._memory import DevnullMessageBroker as DevnullMessageBroker
from ._memory import InMemoryMessageBroker as InMemoryMessageBroker
from ._message import Message as Message
from ._message import MessageBroker as MessageBroker
from ._message import publish_many as publish_many

__all__ = [
    "DevnullMessageBroker",
    "InMemoryMessageBroker",
    "Message",
    "MessageBroker",
    "publish_many",
]
