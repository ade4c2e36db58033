"""Correlation ids without OpenTelemetry: the current message, the headers
of what it emits, the logging filter, and the whole path (HTTP request ->
outbox -> relay -> Kafka -> consumer -> event handler -> saga steps) in a
process where OpenTelemetry cannot be imported."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import attrs
import lagom
import pytest

import anycqrs
from anycqrs.brokers import InMemoryMessageBroker, Message
from anycqrs.consumers import InMemoryTransport, consume
from anycqrs.observability import (
    CorrelationFilter,
    MessageContext,
    correlation_scope,
    current_message,
    message_from_headers,
)

HERE = Path(__file__).parent


@attrs.frozen
class Paid:
    order_id: int


@attrs.frozen
class Shipped:
    order_id: int


class TestScope:
    """`correlation_scope` opens a conversation; nested scopes keep it."""

    def test_outside_any_scope(self) -> None:
        assert current_message() is None

    def test_given_id_is_the_origin(self) -> None:
        with correlation_scope("req-1") as scope:
            assert scope == MessageContext("req-1", "req-1", None)
            assert current_message() is scope
        assert current_message() is None

    def test_nested_scope_keeps_the_conversation(self) -> None:
        with correlation_scope("req-1"), correlation_scope() as inner:
            assert inner.correlation_id == "req-1"
            assert inner.causation_id == "req-1"
            assert inner.message_id != "req-1"

    def test_new_scope_gets_a_fresh_id(self) -> None:
        with correlation_scope() as scope:
            assert scope.message_id == scope.correlation_id
            assert len(scope.correlation_id) == 36

    def test_headers(self) -> None:
        ctx = message_from_headers(
            {"message_id": b"m2", "correlation_id": "r1", "causation_id": b"m1"}
        )
        assert ctx == MessageContext("m2", "r1", "m1")
        assert message_from_headers({}, "m9") == MessageContext("m9", "m9", None)


class TestOutgoing:
    """Messages made while a message is handled carry its conversation."""

    def test_message_from_event_is_stamped(self) -> None:
        event = anycqrs.NotificationEvent(payload=Paid(1), topic="t", headers={"tenant": "a"})
        with correlation_scope("req-1"):
            message = Message.from_event(event)
        assert message.headers == {
            "tenant": "a",
            "correlation_id": "req-1",
            "causation_id": "req-1",
        }

    def test_event_headers_win(self) -> None:
        event = anycqrs.NotificationEvent(
            payload=Paid(1), topic="t", headers={"correlation_id": "mine"}
        )
        with correlation_scope("req-1"):
            assert Message.from_event(event).headers["correlation_id"] == "mine"

    def test_origin_messages_carry_nothing_extra(self) -> None:
        event = anycqrs.NotificationEvent(payload=Paid(1), topic="t")
        assert Message.from_event(event).headers == {}


class TestLogging:
    """`CorrelationFilter` names the ids on every record, `""` when unknown."""

    def test_fields(self) -> None:
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.addFilter(CorrelationFilter())
        handler.setFormatter(
            logging.Formatter("%(correlation_id)s|%(causation_id)s|%(trace_id)s|%(message)s")
        )
        logger = logging.getLogger("anycqrs.tests.correlation")
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        try:
            logger.info("outside")
            with correlation_scope("req-7"), correlation_scope():
                logger.info("inside")
        finally:
            logger.removeHandler(handler)
        outside, inside = stream.getvalue().splitlines()
        assert outside == "|||outside"
        assert inside == "req-7|req-7||inside"

    def test_filter_reads_the_current_message(self) -> None:
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
        with correlation_scope("req-8"):
            assert CorrelationFilter().filter(record)
        assert record.correlation_id == "req-8"  # type: ignore[attr-defined]
        assert record.causation_id == ""  # type: ignore[attr-defined]


@pytest.mark.anyio
async def test_consumed_message_is_the_cause_of_its_followups() -> None:
    """A consumer makes each message current; its handler's follow-ups carry
    `causation_id` = that message and the conversation's `correlation_id`."""
    seen: list[MessageContext | None] = []

    class OnPaid(anycqrs.EventHandler[anycqrs.NotificationEvent[Paid]]):
        async def handle(self, event: anycqrs.NotificationEvent[Paid]) -> None:
            seen.append(current_message())
            self.emit(anycqrs.NotificationEvent(payload=Shipped(event.payload.order_id), topic="s"))

    events = anycqrs.EventMap()
    events.bind(anycqrs.NotificationEvent[Paid], OnPaid)
    broker = InMemoryMessageBroker()
    mediator = anycqrs.EventMediator(events, container=lagom.Container(), message_broker=broker)
    transport = InMemoryTransport()
    with correlation_scope("req-1"):
        incoming = Message.from_event(anycqrs.NotificationEvent(payload=Paid(1), topic="p"))
    event = anycqrs.NotificationEvent(
        payload=Paid(1), topic="p", headers=incoming.headers, event_id=incoming.message_id
    )
    transport.put_event(event)
    transport.close()
    with anyio.fail_after(10):
        await consume(mediator, transport)
    assert seen == [MessageContext(str(event.event_id), "req-1", "req-1")]
    (followup,) = broker.messages
    assert followup.headers == {"correlation_id": "req-1", "causation_id": str(event.event_id)}
    assert current_message() is None  # reset after each message


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_whole_path_without_opentelemetry(
    backend: str, kafka_bootstrap: str, tmp_path: Path, unique: str
) -> None:
    """HTTP request -> outbox -> relay -> Kafka -> consumer -> handler -> saga,
    in a process where `import opentelemetry` fails."""
    topic, group = f"untraced-{unique}", f"g-{unique}"
    script = str(HERE / "_untraced_path.py")
    done = subprocess.run(
        [sys.executable, script, kafka_bootstrap, topic, group, str(tmp_path), backend],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    row = result["row"]
    # the row: written in the HTTP request's conversation, caused by it
    assert row["headers"] == {"correlation_id": "req-untraced", "causation_id": "req-untraced"}
    assert "traceparent" not in row["headers"]
    seen = dict((where, ctx) for where, ctx in result["seen"])
    assert seen["command"] == ["req-untraced", "req-untraced", None]
    event_id = row["message_id"]
    assert seen["event"] == [event_id, "req-untraced", "req-untraced"]
    saga_id, correlation, causation = seen["reserve"]
    assert (correlation, causation) == ("req-untraced", event_id)
    assert seen["ship"] == [saga_id, "req-untraced", event_id]
