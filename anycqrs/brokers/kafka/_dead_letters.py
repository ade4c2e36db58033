"""The dead-letter writer of a `KafkaEventConsumer`: its own producer, retries
with backoff, and a truncated dead letter when the topic refuses the full one.

Bad input never stops a consumer: a record too large for the dead-letter
topic (its value plus the `anycqrs.*` headers over `message.max.bytes`) is
written truncated instead. Only a topic that stays unreachable, or refuses
even the truncated record, stops the consumer, with `DeadLetterError`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from confluent_kafka import KafkaError

from ..._retry import RetryPolicy, retry_call
from ...errors import BrokerDeliveryError, BrokerError, DeadLetterError
from ._core import KafkaProducerCore, record_id
from ._wire import Record, dead_letter_record, truncated_dead_letter

__all__ = ["DEAD_LETTER_RETRY", "DeadLetters"]

logger = logging.getLogger("anycqrs.brokers.kafka")

DEAD_LETTER_RETRY = RetryPolicy(attempts=6, delay=0.5, multiplier=2.0, max_delay=10.0)
"""How writing a dead letter is retried: 6 attempts, 0.5 s doubling to 10 s
between them (~15 s of waiting, plus each attempt's `message.timeout.ms`)."""

_REFUSED = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.INVALID_RECORD,
        KafkaError.INVALID_MSG_SIZE,
    }
)
"""Delivery errors no retry fixes: the record itself is refused."""


class _Refused(Exception):
    """The dead-letter topic refused the record itself (never retried)."""


def _identity(records: Sequence[Record]) -> Sequence[Record]:
    return records


class DeadLetters:
    """Writes the dead letters of one consumer run to `topic`. Used between
    `start()` and `stop()`.

    Args:
        topic: the dead-letter topic.
        config: its producer's librdkafka configuration.
        retry: how a dead letter that was not delivered is retried.
    """

    __slots__ = ("_producer", "_retry", "_topic")

    def __init__(self, topic: str, config: Mapping[str, Any], retry: RetryPolicy) -> None:
        self._topic = topic
        self._retry = retry
        self._producer: KafkaProducerCore[Record] = KafkaProducerCore(
            config, _identity, record_id, name="dead-letter producer"
        )

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def write(self, msg: Any, error: BaseException, attempts: int, location: str) -> None:
        """Dead-letter the consumed record `msg` (at `location`), truncated
        if the topic refuses it whole.

        Raises:
            DeadLetterError: the topic stayed unreachable, or refused even
                the truncated record.
        """
        topic = self._topic
        try:
            try:
                await self._deliver(dead_letter_record(msg, error, attempts, topic))
            except _Refused as refused:
                logger.error(
                    "The dead-letter topic %s refused the message at %s (%s); writing it truncated",
                    topic,
                    location,
                    refused,
                )
                await self._deliver(
                    truncated_dead_letter(msg, error, attempts, topic, str(refused))
                )
        except (_Refused, BrokerError) as exc:
            raise DeadLetterError(location, exc) from exc

    async def _deliver(self, record: Record) -> None:
        producer = self._producer

        async def attempt() -> None:
            failures = await producer.deliver((record,))
            if failures:
                failure = failures[0]
                if failure.code in _REFUSED:
                    raise _Refused(failure.reason)
                raise BrokerDeliveryError([(None, failure.reason)], what=f"topic {record[0]!r}")

        def on_retry(error: BaseException, failures: int, delay: float) -> None:
            logger.warning(
                "Dead letter to %s not delivered (attempt %d): %s; retrying in %.3gs",
                record[0],
                failures,
                error,
                delay,
            )

        await retry_call(
            self._retry,
            attempt,
            retryable=lambda error: not isinstance(error, _Refused),
            on_retry=on_retry,
        )
