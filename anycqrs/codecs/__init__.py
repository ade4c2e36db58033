"""Message codecs: how events become wire bytes, one boundary for every broker.

A `MessageCodec` encodes a broker `anycqrs.brokers.Message` and decodes wire
bytes into the `NotificationEvent[P]` bound under the event name. Brokers and
consumers take one as `codec=...` (chosen once, at construction):

* `JsonCodec` (the default, `JSON`): the JSON of `to_dict(event)`, with
  `event_name` / `message_id` headers; decoded on the msgspec fast path.
* `PythonCqrsCodec`: python-cqrs 5.x's camelCase JSON without headers, so an
  anycqrs service and a python-cqrs service read each other's messages.
* `ProtobufCodec`: payloads as generated protobuf messages (or payloads with
  python-cqrs's `proto()` / `from_proto()` hooks) in a small envelope.

The outbox stores messages codec-neutral (the JSON of the message, optionally
compressed); the broker the relay publishes to applies its codec.

Example:
    ```python
    from anycqrs.codecs import PythonCqrsCodec

    broker = KafkaMessageBroker(config, codec=PythonCqrsCodec(event_map))
    ```
"""

from ._protobuf import ProtobufCodec as ProtobufCodec
from ._protobuf import ProtoConvertible as ProtoConvertible
from ._protocol import JSON as JSON
from ._protocol import JsonCodec as JsonCodec
from ._protocol import MessageCodec as MessageCodec
from ._python_cqrs import PythonCqrsCodec as PythonCqrsCodec

__all__ = [
    "JSON",
    "JsonCodec",
    "MessageCodec",
    "ProtoConvertible",
    "ProtobufCodec",
    "PythonCqrsCodec",
]
