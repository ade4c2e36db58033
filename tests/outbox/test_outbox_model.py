"""Outbox data types: the deprecated retry policy factory, record decoding, status."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from anycqrs import RetryPolicy
from anycqrs.errors import DeserializationError
from anycqrs.outbox import OutboxRecord, OutboxRetryPolicy, OutboxStatus


def test_outbox_retry_policy_is_a_deprecated_factory_of_the_retry_policy() -> None:
    with pytest.warns(DeprecationWarning, match="OutboxRetryPolicy is deprecated"):
        policy = OutboxRetryPolicy(initial_delay=0.5, multiplier=3.0, max_delay=4.0, jitter=0.2)
    assert policy == RetryPolicy(attempts=10, delay=0.5, multiplier=3.0, max_delay=4.0, jitter=0.2)
    with pytest.warns(DeprecationWarning):
        assert OutboxRetryPolicy() == RetryPolicy(
            attempts=10, delay=1.0, multiplier=2.0, max_delay=300.0
        )
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="delay"):
        OutboxRetryPolicy(initial_delay=-1.0)


def _record(**kwargs: object) -> OutboxRecord:
    now = datetime.now(timezone.utc)
    fields: dict[str, object] = {
        "id": 1,
        "message_id": "7f1c3f52-9f5e-4a57-a0a8-4f5b7c0b2c11",
        "message_name": "OrderPlaced",
        "topic": "orders",
        "key": None,
        "headers": "{}",
        "payload": '{"a": 1}',
        "status": OutboxStatus.PENDING,
        "attempts": 0,
        "created_at": now,
        "next_attempt_at": now,
    }
    fields.update(kwargs)
    return OutboxRecord(**fields)  # type: ignore[arg-type]


def test_record_decoding_errors_name_the_field() -> None:
    assert _record().to_message().payload == {"a": 1}
    with pytest.raises(DeserializationError, match="message_id"):
        _record(message_id="nope").to_message()
    with pytest.raises(DeserializationError, match="headers"):
        _record(headers="[1]").to_message()
    with pytest.raises(DeserializationError, match="malformed JSON"):
        _record(payload="{").to_message()


def test_status_is_its_value() -> None:
    assert str(OutboxStatus.DEAD) == "dead"
    assert OutboxStatus("sent") is OutboxStatus.SENT
