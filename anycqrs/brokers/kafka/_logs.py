"""Where librdkafka's own log lines go: Python `logging`, not stderr.

Each client gets a logger under `anycqrs.brokers.kafka.librdkafka`:
`.producer` (`KafkaMessageBroker`), `.consumer` (`KafkaEventConsumer`) and
`.dlq` (its dead-letter producer). confluent-kafka's `logger` setting queues
librdkafka's lines and emits them from the thread that polls the client (the
delivery thread, the consumer's worker thread), never from librdkafka's own
threads and never on the event loop, so a slow handler cannot stall the
client's internals. A `logger` in the user's configuration wins.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

__all__ = ["LIBRDKAFKA_LOGGER", "with_logger"]

LIBRDKAFKA_LOGGER = "anycqrs.brokers.kafka.librdkafka"


def with_logger(config: Mapping[str, Any], role: str) -> dict[str, Any]:
    """`config` with librdkafka's lines routed to `LIBRDKAFKA_LOGGER.<role>`."""
    result = dict(config)
    result.setdefault("logger", logging.getLogger(f"{LIBRDKAFKA_LOGGER}.{role}"))
    return result
