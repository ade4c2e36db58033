"""One trace from an HTTP request to the last saga step, through the
outbox, the relay and a real broker (Tansu Kafka, RabbitMQ), both backends,
with the OpenTelemetry SDK's in-memory exporter (a provider per test: the
global provider is never set)."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from anycqrs.brokers.kafka import KafkaEventConsumer, KafkaMessageBroker
from anycqrs.brokers.rabbitmq import RabbitMQEventConsumer, RabbitMQMessageBroker

from ._path import Seen, build, post

pytestmark = pytest.mark.anyio

SPANS_OUT = os.environ.get("ANYCQRS_TRACE_SPANS_OUT")
"""Where the Kafka test writes its spans as JSON (docs/scripts/trace_waterfall.py draws them)."""


def consumer_config(bootstrap: str, group: str) -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 100,
    }


def _create_topic(bootstrap: str, topic: str) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, num_partitions=1)]).values():
        future.result(30)


async def create_topic(bootstrap: str, topic: str) -> None:
    await anyio.to_thread.run_sync(_create_topic, bootstrap, topic)


@pytest.fixture
def traced() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def _by_name(spans: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for span in spans:
        found.setdefault(span.name, span)
    return found


def _child_of(child: Any, parent: Any) -> bool:
    return child.parent is not None and child.parent.span_id == parent.context.span_id


def _check_trace(spans: Any, topic: str, system: str) -> dict[str, Any]:
    named = _by_name(spans)
    server = named["POST /orders/{order_id}"]
    send = named["send PlaceOrder"]
    create = named[f"create {topic}"]
    publish = named["outbox publish"]
    produce = named[f"send {topic}"]
    process = named[f"process {topic}"]
    handle = named["handle OrderPlaced"]
    run = named["saga FulfilSaga"]
    reserve, ship = named["act Reserve"], named["act Ship"]
    trace_id = server.context.trace_id
    for span in (send, create, produce, process, handle, run, reserve, ship):
        assert span.context.trace_id == trace_id, span.name
    assert _child_of(send, server)
    assert _child_of(create, send)
    assert _child_of(produce, create)  # the relay continues the writer's trace
    assert _child_of(process, produce)
    assert _child_of(handle, process)
    assert _child_of(run, handle)
    assert _child_of(reserve, run) and _child_of(ship, run)
    # the relay's batch span runs on its own and links to each row's creation context
    assert [link.context.span_id for link in publish.links] == [create.context.span_id]
    assert [link.context.span_id for link in produce.links] == [publish.context.span_id]
    assert create.kind is SpanKind.PRODUCER and produce.kind is SpanKind.PRODUCER
    assert process.kind is SpanKind.CONSUMER
    assert produce.attributes["messaging.system"] == system
    assert produce.attributes["messaging.destination.name"] == topic
    assert produce.attributes["messaging.operation.type"] == "send"
    assert process.attributes["messaging.system"] == system
    assert process.attributes["messaging.operation.type"] == "process"
    assert process.attributes["messaging.message.id"] == produce.attributes["messaging.message.id"]
    assert publish.attributes["messaging.batch.message_count"] == 1
    return named


def _dump(spans: Any, path: str) -> None:
    rows = [
        {
            "name": s.name,
            "span_id": format(s.context.span_id, "016x"),
            "parent": format(s.parent.span_id, "016x") if s.parent else None,
            "start": s.start_time,
            "end": s.end_time,
            "kind": s.kind.name,
        }
        for s in spans
    ]
    Path(path).write_text(json.dumps(rows, indent=1))


async def test_one_trace_through_kafka(
    tmp_path: Path, kafka_bootstrap: str, traced: Any, unique: str
) -> None:
    provider, exporter = traced
    topic = f"traced-{unique}"
    await create_topic(kafka_bootstrap, topic)
    seen = Seen()
    parts = build(tmp_path, topic, provider, seen, lambda: None)
    response = await post(parts["app"], 7, "req-kafka")
    assert response.headers["x-correlation-id"] == "req-kafka"
    async with KafkaMessageBroker(
        {"bootstrap.servers": kafka_bootstrap}, tracer_provider=provider
    ) as broker:
        assert await parts["relay"](broker).publish_pending() == 1
    consumer = KafkaEventConsumer(
        consumer_config(kafka_bootstrap, f"g-{unique}"),
        [topic],
        parts["event_mediator"],
        tracer_provider=provider,
    )
    with anyio.fail_after(60):
        async with anyio.create_task_group() as group:
            await group.start(consumer.run)
            await seen.finished.wait()
            group.cancel_scope.cancel()
    spans = exporter.get_finished_spans()
    named = _check_trace(spans, topic, "kafka")
    process = named[f"process {topic}"]
    assert process.attributes["messaging.consumer.group.name"] == f"g-{unique}"
    assert process.attributes["messaging.destination.partition.id"] == "0"
    assert process.attributes["messaging.kafka.offset"] == 0
    if SPANS_OUT:
        _dump(spans, SPANS_OUT)


async def test_one_trace_through_rabbitmq(
    tmp_path: Path, rabbitmq_url: str, traced: Any, unique: str
) -> None:
    provider, exporter = traced
    exchange, queue, topic = f"ex-{unique}", f"q-{unique}", f"orders.{unique}"
    seen = Seen()
    parts = build(tmp_path, topic, provider, seen, lambda: None)
    await post(parts["app"], 8, "req-rabbit")
    consumer = RabbitMQEventConsumer(
        rabbitmq_url,
        queue,
        parts["event_mediator"],
        bindings=[(exchange, "orders.#")],
        tracer_provider=provider,
    )
    with anyio.fail_after(60):
        async with anyio.create_task_group() as group:
            await group.start(consumer.run)
            async with RabbitMQMessageBroker(
                rabbitmq_url, exchange=exchange, tracer_provider=provider
            ) as broker:
                assert await parts["relay"](broker).publish_pending() == 1
            await seen.finished.wait()
            group.cancel_scope.cancel()
    named = _check_trace(exporter.get_finished_spans(), topic, "rabbitmq")
    assert named[f"process {topic}"].attributes["messaging.destination.subscription.name"] == queue


async def test_failing_handler_is_recorded(traced: Any) -> None:
    """An error leaving a handler is recorded on its span (and the send span)."""
    import attrs

    import anycqrs

    provider, exporter = traced

    @attrs.frozen
    class Explode(anycqrs.Request[None]):
        pass

    class Exploding(anycqrs.RequestHandler[Explode, None]):
        async def handle(self, request: Explode) -> None:
            raise ValueError("boom")

    requests = anycqrs.RequestMap()
    requests.bind(Explode, Exploding)
    mediator = anycqrs.requests.bootstrap.bootstrap(
        commands_mapper=requests, tracer_provider=provider
    )
    with pytest.raises(ValueError, match="boom"):
        await mediator.send(Explode())
    (span,) = exporter.get_finished_spans()
    assert span.name == "send Explode"
    assert span.status.status_code.name == "ERROR"
    assert span.attributes["error.type"] == "ValueError"
    assert [event.name for event in span.events] == ["exception"]


async def test_cancellation_is_not_an_error(traced: Any) -> None:
    import attrs

    import anycqrs

    provider, exporter = traced
    started = anyio.Event()

    @attrs.frozen
    class Wait(anycqrs.Request[None]):
        pass

    class Waiting(anycqrs.RequestHandler[Wait, None]):
        async def handle(self, request: Wait) -> None:
            started.set()
            await anyio.sleep_forever()

    requests = anycqrs.RequestMap()
    requests.bind(Wait, Waiting)
    mediator = anycqrs.requests.bootstrap.bootstrap(
        commands_mapper=requests, tracer_provider=provider
    )
    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            group.start_soon(mediator.send, Wait())
            await started.wait()
            group.cancel_scope.cancel()
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code.name == "UNSET"


async def test_stream_is_one_span_with_item_events(traced: Any) -> None:
    import attrs

    import anycqrs

    provider, exporter = traced

    @attrs.frozen
    class Count(anycqrs.Request[int]):
        n: int

    class Counting(anycqrs.StreamingRequestHandler[Count, int]):
        async def handle(self, request: Count) -> Any:
            for i in range(request.n):
                yield i

    requests = anycqrs.RequestMap()
    requests.bind(Count, Counting)
    mediator = anycqrs.requests.bootstrap.bootstrap_streaming(
        queries_mapper=requests, tracer_provider=provider
    )
    assert [i async for i in mediator.stream(Count(3))] == [0, 1, 2]
    (span,) = exporter.get_finished_spans()
    assert span.name == "stream Count"
    assert [event.name for event in span.events] == ["item"] * 3
    assert span.attributes["anycqrs.stream.items"] == 3


def test_untraced_without_a_provider() -> None:
    """No SDK configured (the global provider is OpenTelemetry's default): no tracer."""
    from anycqrs.observability import _tracing

    assert _tracing.tracer() is None
    assert uuid.UUID  # the module imports stay used


async def test_recovery_in_another_process_links_to_the_origin(
    tmp_path: Path, traced: Any, anyio_backend: str
) -> None:
    """A saga left RUNNING after its first step is recovered by another
    process: its run there links to the trace it was started in, and its
    steps stay in the origin's conversation."""
    import subprocess
    import sys

    from anycqrs.observability import correlation_scope
    from anycqrs.saga.bootstrap import bootstrap
    from anycqrs.saga.storage import SqliteSagaStorage

    from ._recovery_saga import Delivery, saga_map

    provider, exporter = traced
    db = str(tmp_path / "sagas.db")
    mediator = bootstrap(
        sagas_mapper=saga_map(), saga_storage=SqliteSagaStorage(db), tracer_provider=provider
    )
    origin_tracer = provider.get_tracer("test.origin")
    with correlation_scope("req-origin"), origin_tracer.start_as_current_span("origin") as origin:
        async with anyio.create_task_group():  # nothing outlives the block
            stream = mediator.stream(Delivery(order_id=3))
            first = await stream.__anext__()  # Pack done, then the process "dies"
            await stream.aclose()
    assert first.response == "packed"
    saga_id = str(first.saga_id)
    done = subprocess.run(
        [sys.executable, str(Path(__file__).parent / "_recover.py"), db, anyio_backend],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["recovered"] == 1
    runs = [span for span in result["spans"] if span["name"] == "saga DeliverySaga"]
    assert len(runs) == 1
    (run,) = runs
    original = _by_name(exporter.get_finished_spans())
    started_in = original["act Pack"]  # the span the saga was created in
    assert _child_of(original["saga DeliverySaga"], original["origin"])
    assert started_in.context.trace_id == origin.get_span_context().trace_id
    origin_ids = [
        format(started_in.context.trace_id, "032x"),
        format(started_in.context.span_id, "016x"),
    ]
    assert run["links"] == [origin_ids]  # links back to where the saga started
    assert run["trace_id"] != origin_ids[0]  # a trace of its own
    assert run["attributes"]["anycqrs.saga.resumed"] is True
    assert [span["name"] for span in result["spans"]].count("act Send") == 1
    assert "act Pack" not in [span["name"] for span in result["spans"]]
    assert result["seen"] == [["send", [saga_id, "req-origin", "req-origin"]]]


async def test_failed_saga_records_the_error_and_its_compensations(traced: Any) -> None:
    import attrs

    import anycqrs.saga as saga
    from anycqrs.saga.bootstrap import bootstrap

    provider, exporter = traced

    @attrs.define
    class Trip(saga.SagaContext):
        booked: list[str] = attrs.Factory(list)

    class Hotel(saga.SagaStepHandler[Trip, None]):
        async def act(self, context: Trip) -> None:
            context.booked.append("hotel")

        async def compensate(self, context: Trip) -> None:
            context.booked.remove("hotel")

    class Flight(saga.SagaStepHandler[Trip, None]):
        async def act(self, context: Trip) -> None:
            raise LookupError("no seats")

        async def compensate(self, context: Trip) -> None:
            pass

    class TripSaga(saga.Saga[Trip]):
        steps = [Hotel, Flight]

    sagas = saga.SagaMap()
    sagas.bind(Trip, TripSaga)
    mediator = bootstrap(sagas_mapper=sagas, tracer_provider=provider)
    with pytest.raises(LookupError):
        await mediator.run(Trip())
    named = _by_name(exporter.get_finished_spans())
    run, compensate = named["saga TripSaga"], named["compensate Hotel"]
    assert run.status.status_code.name == "ERROR"
    assert run.attributes["error.type"] == "LookupError"
    assert compensate.status.status_code.name == "UNSET"
    assert compensate.context.trace_id == run.context.trace_id
    assert "compensate Flight" not in named  # the failed step is not compensated


async def test_dead_lettered_message_marks_its_process_span(traced: Any) -> None:
    import attrs

    import anycqrs
    from anycqrs.consumers import InMemoryTransport, consume

    provider, exporter = traced

    @attrs.frozen
    class Broken:
        n: int

    class Failing(anycqrs.EventHandler[anycqrs.NotificationEvent[Broken]]):
        async def handle(self, event: anycqrs.NotificationEvent[Broken]) -> None:
            raise RuntimeError("always")

    events = anycqrs.EventMap()
    events.bind(anycqrs.NotificationEvent[Broken], Failing)
    mediator = anycqrs.EventMediator(events, tracer_provider=provider)
    transport = InMemoryTransport()
    transport.put_event(anycqrs.NotificationEvent(payload=Broken(1), topic="broken"))
    transport.close()
    with anyio.fail_after(10):
        await consume(
            mediator,
            transport,
            retry=anycqrs.RetryPolicy(attempts=2, delay=0.0),
            tracer_provider=provider,
        )
    assert len(transport.dead_letters) == 1
    spans = exporter.get_finished_spans()
    (process,) = [span for span in spans if span.name == "process broken"]
    handles = [span for span in spans if span.name == "handle Broken"]
    assert process.status.status_code.name == "ERROR"
    assert process.attributes["anycqrs.dead_lettered"] is True
    assert process.attributes["messaging.system"] == "memory"
    assert len(handles) == 2  # one per attempt, each failed, each a child of the process span
    for handle in handles:
        assert handle.status.status_code.name == "ERROR"
        assert _child_of(handle, process)


GLOBAL_PROVIDER_SCRIPT = """
import anyio, attrs, anycqrs
from anycqrs.requests.bootstrap import bootstrap
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

@attrs.frozen
class Hello(anycqrs.Request[str]):
    pass

class HelloHandler(anycqrs.RequestHandler[Hello, str]):
    async def handle(self, request):
        return "hi"

requests = anycqrs.RequestMap()
requests.bind(Hello, HelloHandler)
before = bootstrap(commands_mapper=requests)        # built before any SDK: untraced
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
after = bootstrap(commands_mapper=requests)         # reads the global provider now

async def main():
    await before.send(Hello())
    await after.send(Hello())

anyio.run(main, backend="{backend}")
print([span.name for span in exporter.get_finished_spans()])
"""


def test_the_global_provider_is_read_when_a_component_is_built(anyio_backend: str) -> None:
    """In its own process (the global provider can be set once)."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", GLOBAL_PROVIDER_SCRIPT.replace("{backend}", anyio_backend)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "['send Hello']"


def test_baggage_and_trace_state_travel_with_a_message(traced: Any) -> None:
    """`Message.from_event` inside a span: `traceparent`, `tracestate` and
    `baggage` go into its headers (the configured propagators)."""
    import attrs
    from opentelemetry import baggage, context
    from opentelemetry.trace import (
        NonRecordingSpan,
        SpanContext,
        TraceFlags,
        TraceState,
        set_span_in_context,
    )

    import anycqrs
    from anycqrs.brokers import Message
    from anycqrs.observability._propagation import extract

    @attrs.frozen
    class Noted:
        n: int

    parent = SpanContext(
        trace_id=0x1234,
        span_id=0x5678,
        is_remote=True,
        trace_flags=TraceFlags(1),
        trace_state=TraceState([("vendor", "x")]),
    )
    ctx = baggage.set_baggage("tenant", "acme", set_span_in_context(NonRecordingSpan(parent)))
    token = context.attach(ctx)
    try:
        message = Message.from_event(anycqrs.NotificationEvent(payload=Noted(1), topic="t"))
    finally:
        context.detach(token)
    assert message.headers["traceparent"] == f"00-{0x1234:032x}-{0x5678:016x}-01"
    assert message.headers["tracestate"] == "vendor=x"
    assert message.headers["baggage"] == "tenant=acme"
    restored = extract({k: v.encode() for k, v in message.headers.items()})  # Kafka: bytes
    assert baggage.get_baggage("tenant", restored) == "acme"
