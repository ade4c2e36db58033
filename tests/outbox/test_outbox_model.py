"""Outbox data types: retry policy, record decoding, status."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from anycqrs.errors import DeserializationError
from anycqrs.outbox import OutboxRecord, OutboxRetryPolicy, OutboxStatus


def test_retry_policy_grows_exponentially_up_to_the_bound() -> None:
    policy = OutboxRetryPolicy(initial_delay=0.5, multiplier=2.0, max_delay=3.0)
    assert [policy.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert policy.delay(0) == 0.5
    assert policy.delay(10_000) == 3.0  # no OverflowError
    now = datetime(2024, 1, 1, tzinfo=timezone.utc)
    assert policy.next_attempt(2, now) == now + timedelta(seconds=1)


def test_retry_policy_jitter_stays_in_range() -> None:
    policy = OutboxRetryPolicy(initial_delay=10.0, jitter=0.5)
    delays = {policy.delay(1) for _ in range(200)}
    assert all(10.0 <= d <= 15.0 for d in delays)
    assert len(delays) > 1


def test_retry_policy_rejects_negative_values() -> None:
    with pytest.raises(ValueError, match="initial_delay"):
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
