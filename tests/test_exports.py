"""The public surface is pinned: what DESIGN.md documents exists, nothing private leaks."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

import pytest

import anycqrs

TOP_LEVEL = {
    "AnyCQRSError",
    "BreakerState",
    "BreakerStore",
    "MemoryBreakerStore",
    "RedisBreakerStore",
    "StreamingRequestHandlerFallback",
    "CORRequestHandler",
    "CircuitBreaker",
    "CircuitBreakerLike",
    "Container",
    "DomainEvent",
    "Event",
    "EventHandler",
    "EventHandlerFallback",
    "EventMap",
    "EventMediator",
    "LagomContainer",
    "LoggingMiddleware",
    "Middleware",
    "MiddlewareChain",
    "NotificationEvent",
    "Request",
    "RequestHandler",
    "RequestHandlerFallback",
    "RequestMap",
    "RequestMediator",
    "Response",
    "RetryPolicy",
    "Saga",
    "SagaContext",
    "SagaMap",
    "SagaMediator",
    "SagaStepHandler",
    "SagaStepResult",
    "StreamingRequestHandler",
    "StreamingRequestMediator",
    "errors",
    "from_dict",
    "to_dict",
}

DOCUMENTED_PATHS = [
    ("anycqrs.container", "ScopedContainer"),
    ("anycqrs.container", "ScopedLagomContainer"),
    ("anycqrs.container", "DishkaContainer"),
    ("anycqrs.container", "DiContainer"),
    ("anycqrs.container", "DependencyInjectorContainer"),
    ("anycqrs.requests.bootstrap", "bootstrap"),
    ("anycqrs.requests.bootstrap", "bootstrap_streaming"),
    ("anycqrs.events.bootstrap", "bootstrap"),
    ("anycqrs.saga.bootstrap", "bootstrap"),
    ("anycqrs.errors", "RequestHandlerDoesNotExist"),
    ("anycqrs.errors", "EventDispatchError"),
    ("anycqrs.errors", "HandlerResolutionError"),
    ("anycqrs.diagrams", "CoRMermaid"),
    ("anycqrs.diagrams", "SagaMermaid"),
    ("anycqrs.saga", "Fallback"),
    ("anycqrs.saga", "SagaStatus"),
    ("anycqrs.saga", "SagaStepStatus"),
    ("anycqrs.saga.storage", "MemorySagaStorage"),
    ("anycqrs.saga.storage", "SqliteSagaStorage"),
    ("anycqrs.saga.storage", "PostgresSagaStorage"),
    ("anycqrs.saga.storage", "SqlAlchemySagaStorage"),
    ("anycqrs.brokers", "Message"),
    ("anycqrs.brokers", "MessageBroker"),
    ("anycqrs.brokers", "InMemoryMessageBroker"),
    ("anycqrs.brokers", "DevnullMessageBroker"),
    ("anycqrs.brokers", "KafkaMessageBroker"),
    ("anycqrs.brokers", "RabbitMQMessageBroker"),
    ("anycqrs.brokers.kafka", "KafkaMessageBroker"),
    ("anycqrs.brokers.kafka", "KafkaEventConsumer"),
    ("anycqrs.brokers.kafka", "KafkaConsumerStatus"),
    ("anycqrs.brokers.rabbitmq", "RabbitMQMessageBroker"),
    ("anycqrs.brokers.rabbitmq", "RabbitMQEventConsumer"),
    ("anycqrs.brokers.rabbitmq", "ReconnectPolicy"),
    ("anycqrs.errors", "ConnectionLost"),
    ("anycqrs.errors", "DeadLetterError"),
    ("anycqrs.brokers", "BatchMessageBroker"),
    ("anycqrs.consumers", "EventSink"),
    ("anycqrs.consumers", "EventTypes"),
    ("anycqrs.consumers", "Transport"),
    ("anycqrs.consumers", "Inbound"),
    ("anycqrs.consumers", "EventDecoder"),
    ("anycqrs.consumers", "Lanes"),
    ("anycqrs.consumers", "consume"),
    ("anycqrs.consumers", "InMemoryTransport"),
    ("anycqrs.consumers", "MemoryRecord"),
    ("anycqrs.consumers", "DeadLetter"),
    ("anycqrs.errors", "CircuitBreakerOpen"),
    ("anycqrs.sse", "SSEResponse"),
    ("anycqrs.outbox", "OutboxRelay"),
    ("anycqrs.outbox", "SqliteOutbox"),
    ("anycqrs.outbox", "PostgresOutbox"),
    ("anycqrs.outbox", "SqlAlchemyOutbox"),
    ("anycqrs.outbox", "SqlAlchemyOutboxStore"),
    ("anycqrs.codecs", "MessageCodec"),
    ("anycqrs.codecs", "JsonCodec"),
    ("anycqrs.codecs", "JSON"),
    ("anycqrs.codecs", "PythonCqrsCodec"),
    ("anycqrs.codecs", "ProtobufCodec"),
    ("anycqrs.codecs", "ProtoConvertible"),
    ("anycqrs.consumers", "NeedsEventIds"),
    ("anycqrs.consumers", "ChunkSink"),
    ("anycqrs.errors", "InboxError"),
    ("anycqrs.errors", "InboxKeyError"),
    ("anycqrs.inbox", "InboxStore"),
    ("anycqrs.inbox", "InboxTransaction"),
    ("anycqrs.inbox", "InboxPruner"),
    ("anycqrs.inbox", "SqliteInbox"),
    ("anycqrs.inbox", "PostgresInbox"),
    ("anycqrs.inbox", "SqlAlchemyInbox"),
    ("anycqrs.inbox", "derive_id"),
    ("anycqrs.inbox", "handler_identity"),
    ("anycqrs.saga", "saga_id_for"),
    ("anycqrs.observability", "Health"),
    ("anycqrs.observability", "HealthApp"),
    ("anycqrs.observability", "HealthCheck"),
    ("anycqrs.observability", "HealthReport"),
    ("anycqrs.observability", "HealthSource"),
    ("anycqrs.observability", "ConsumerProbe"),
    ("anycqrs.observability", "ConsumerMetrics"),
    ("anycqrs.observability", "MetricsMiddleware"),
    ("anycqrs.observability", "OutboxMonitor"),
    ("anycqrs.observability", "OutboxSnapshot"),
    ("anycqrs.observability", "OutboxStats"),
    ("anycqrs.observability", "MessageContext"),
    ("anycqrs.observability", "current_message"),
    ("anycqrs.observability", "correlation_scope"),
    ("anycqrs.observability", "message_from_headers"),
    ("anycqrs.observability", "CorrelationFilter"),
    ("anycqrs.observability", "CorrelationMiddleware"),
    ("anycqrs.observability", "TracedTransport"),
]


def test_top_level_all_is_the_documented_api() -> None:
    assert set(anycqrs.__all__) == TOP_LEVEL
    assert sorted(anycqrs.__all__) == list(anycqrs.__all__)


def test_every_exported_name_exists_and_is_documented() -> None:
    for name in anycqrs.__all__:
        obj = getattr(anycqrs, name)
        assert inspect.getdoc(obj), f"anycqrs.{name} has no docstring"


def test_nothing_private_leaks() -> None:
    public = {n for n in dir(anycqrs) if not n.startswith("_")}
    subpackages = {"brokers", "consumers", "container", "events", "messages", "middlewares"}
    subpackages |= {"requests"}
    subpackages |= {"saga", "serialization", "diagrams", "outbox", "errors", "sse", "codecs"}
    subpackages |= {"inbox", "observability"}
    assert public - set(anycqrs.__all__) <= subpackages


@pytest.mark.parametrize(("module", "name"), DOCUMENTED_PATHS)
def test_documented_import_paths(module: str, name: str) -> None:
    obj = getattr(importlib.import_module(module), name)
    assert inspect.getdoc(obj), f"{module}.{name} has no docstring"


@pytest.mark.parametrize("module", ["anycqrs.brokers", "anycqrs.consumers"])
def test_consumer_layer_all_is_pinned(module: str) -> None:
    namespace = importlib.import_module(module)
    expected = {
        "anycqrs.brokers": {
            "BatchMessageBroker",
            "DevnullMessageBroker",
            "InMemoryMessageBroker",
            "KafkaEventConsumer",
            "KafkaMessageBroker",
            "Message",
            "MessageBroker",
            "RabbitMQEventConsumer",
            "RabbitMQMessageBroker",
        },
        "anycqrs.consumers": {
            "ChunkSink",
            "DEFAULT_RETRY",
            "DeadLetter",
            "EventDecoder",
            "EventSink",
            "EventTypes",
            "InMemoryTransport",
            "Inbound",
            "Lanes",
            "MemoryRecord",
            "NeedsEventIds",
            "Transport",
            "consume",
        },
    }[module]
    assert set(namespace.__all__) == expected
    for name in namespace.__all__:
        assert inspect.getdoc(getattr(namespace, name)), f"{module}.{name} has no docstring"


def test_observability_surface() -> None:
    """Tracing and correlation names (the metrics and health names join them)."""
    from anycqrs import observability

    assert {
        "CAUSATION_ID",
        "CORRELATION_ID",
        "MESSAGE_ID",
        "TRACE_HEADERS",
        "CorrelationFilter",
        "CorrelationMiddleware",
        "MessageContext",
        "TracedTransport",
        "correlation_scope",
        "current_message",
        "message_from_headers",
    } <= set(observability.__all__)
    assert (observability.MESSAGE_ID, observability.CORRELATION_ID) == (
        "message_id",
        "correlation_id",
    )
    assert observability.CAUSATION_ID == "causation_id"


def test_every_error_derives_from_the_root() -> None:
    from anycqrs import errors

    for name in errors.__all__:
        error = getattr(errors, name)
        assert issubclass(error, anycqrs.AnyCQRSError), name


def test_private_machinery_is_not_exported() -> None:
    import anycqrs.container
    import anycqrs.events
    from anycqrs.events._dispatcher import EventDispatcher

    assert "EventDispatcher" not in anycqrs.events.__all__
    assert not hasattr(anycqrs.events, "EventDispatcher")
    assert EventDispatcher.__module__ == "anycqrs.events._dispatcher"
    assert "factory_for" not in anycqrs.container.__all__
    assert "FactoryContainer" in anycqrs.container.__all__
    assert set(anycqrs.container.__all__) == {
        "Container",
        "DependencyInjectorContainer",
        "DiContainer",
        "DishkaContainer",
        "FactoryContainer",
        "LagomContainer",
        "ScopedContainer",
        "ScopedLagomContainer",
        "as_container",
    }


def test_rabbitmq_surface() -> None:
    from anycqrs.brokers import rabbitmq

    assert sorted(rabbitmq.__all__) == [
        "RabbitMQEventConsumer",
        "RabbitMQMessageBroker",
        "ReconnectPolicy",
    ]
    assert issubclass(anycqrs.errors.ConnectionLost, anycqrs.errors.BrokerError)
    consumer = rabbitmq.RabbitMQEventConsumer
    assert not {"stale", "done", "location", "dead_letter"} & set(dir(consumer))


def test_sqlalchemy_stores_are_imported_on_first_use() -> None:
    """``anycqrs.saga.storage`` and ``anycqrs.outbox`` import without
    SQLAlchemy; its stores import it when first named."""
    code = (
        "import sys; sys.modules['sqlalchemy'] = None\n"
        "import anycqrs.saga.storage, anycqrs.outbox\n"
        "for module, name in [(anycqrs.saga.storage, 'SqlAlchemySagaStorage'),"
        " (anycqrs.outbox, 'SqlAlchemyOutbox')]:\n"
        "    try:\n"
        "        getattr(module, name)\n"
        "    except ImportError:\n"
        "        pass\n"
        "    else:\n"
        "        raise SystemExit(name + ' imported without SQLAlchemy')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    import anycqrs.outbox
    import anycqrs.saga.storage

    assert "SqlAlchemySagaStorage" in anycqrs.saga.storage.__all__
    assert {"SqlAlchemyOutbox", "SqlAlchemyOutboxStore"} <= set(anycqrs.outbox.__all__)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        anycqrs.outbox.Nope  # type: ignore[attr-defined]


def test_the_error_tree_draws_every_error() -> None:
    import re

    import anycqrs.errors as errors

    tree = (errors.__doc__ or "").split("```")[1]
    drawn = set(re.findall(r"[A-Z][A-Za-z]+(?:Error|Exist|Open|Lost|Name)\b", tree))
    public = {name for name in errors.__all__ if isinstance(getattr(errors, name), type)}
    assert public <= drawn, f"missing from the tree: {sorted(public - drawn)}"
