"""Metrics recorded by value through OpenTelemetry's in-memory reader: the
consumer layer, the middleware, sagas, the circuit breaker; and the off
switch (no SDK: no metrics objects at all)."""

from __future__ import annotations

import anyio
import attrs
import lagom
import pytest
from opentelemetry.metrics import NoOpMeterProvider

import anycqrs
import anycqrs.requests.bootstrap
from anycqrs.consumers import InMemoryTransport, consume
from anycqrs.events import EventHandler, EventMap, EventMediator
from anycqrs.observability import MetricsMiddleware
from anycqrs.observability._metrics import ConsumerMetrics, meter
from anycqrs.saga import SagaStepHandler
from anycqrs.saga.storage import MemorySagaStorage

from .obs_helpers import Metrics

pytestmark = pytest.mark.anyio


@attrs.frozen
class OrderPaid:
    order_id: int


class Behaviour:
    def __init__(self) -> None:
        self.failing: dict[int, int] = {}  # order id -> failures left (-1: always)
        self.calls = 0


class Handle(EventHandler[anycqrs.NotificationEvent[OrderPaid]]):
    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour

    async def handle(self, event: anycqrs.NotificationEvent[OrderPaid]) -> None:
        self.behaviour.calls += 1
        left = self.behaviour.failing.get(event.payload.order_id, 0)
        if left:
            self.behaviour.failing[event.payload.order_id] = left - 1 if left > 0 else -1
            raise RuntimeError("boom")


def _mediator(behaviour: Behaviour) -> EventMediator:
    container = lagom.Container()
    container[Behaviour] = behaviour
    events = EventMap()
    events.bind(anycqrs.NotificationEvent[OrderPaid], Handle)
    return EventMediator(events, container=container)


def _paid(order_id: int) -> anycqrs.NotificationEvent[OrderPaid]:
    return anycqrs.NotificationEvent(payload=OrderPaid(order_id), topic="orders", key=str(order_id))


async def _no_sleep(_delay: float) -> None:
    await anyio.lowlevel.checkpoint()


class TestSwitch:
    """Metrics are off without a configured SDK."""

    def test_no_global_provider_means_no_meter(self) -> None:
        assert meter() is None
        assert ConsumerMetrics.create(None, "kafka") is None

    def test_noop_provider_means_no_meter(self) -> None:
        assert meter(NoOpMeterProvider()) is None

    def test_sdk_provider_gives_a_meter(self) -> None:
        assert meter(Metrics().provider) is not None

    async def test_middleware_without_sdk_passes_through(self) -> None:
        middleware = MetricsMiddleware()

        async def call_next(message: object) -> str:
            return "done"

        assert await middleware(object(), call_next) == "done"


class TestConsumerLayer:
    """`consume` with `ConsumerMetrics`: counts, outcomes, retries, dead letters."""

    async def test_counts_by_outcome(self) -> None:
        metrics = Metrics()
        behaviour = Behaviour()
        behaviour.failing = {2: 1, 3: -1}  # 2 succeeds on its retry, 3 never
        transport = InMemoryTransport()
        for order_id in range(1, 6):
            transport.put_event(_paid(order_id))
        transport.put(b"{not json", event_name="OrderPaid", topic="orders")
        transport.close()
        with anyio.fail_after(10):
            await consume(
                _mediator(behaviour),
                transport,
                concurrency=2,
                retry=anycqrs.RetryPolicy(attempts=3, delay=0.01),
                sleep=_no_sleep,
                metrics=ConsumerMetrics.create(metrics.provider, "memory", "group-1"),
            )
        assert len(transport.settled) == 6
        assert metrics.value("messaging.client.consumed.messages") == 6
        assert (
            metrics.value(
                "messaging.client.consumed.messages",
                **{
                    "messaging.destination.name": "orders",
                    "messaging.consumer.group.name": "group-1",
                    "messaging.system": "memory",
                },
            )
            == 5
        )  # the poison message has no decoded topic
        outcomes = metrics.by("messaging.process.duration", "anycqrs.outcome")
        assert outcomes == {"success": 4, "dead_lettered": 1, "poison": 1}
        assert metrics.value("anycqrs.consumer.retries") == 1 + 2
        assert metrics.value("anycqrs.consumer.failed") == 1
        assert metrics.by("anycqrs.consumer.dead_lettered", "anycqrs.dead_letter.reason") == {
            "failed": 1,
            "poison": 1,
        }
        assert metrics.value("anycqrs.consumer.in_flight") == 0
        assert (
            metrics.value("messaging.process.duration", **{"anycqrs.message.type": "OrderPaid"})
            == 5
        )

    async def test_in_flight_while_a_handler_blocks(self) -> None:
        metrics = Metrics()
        started, release = anyio.Event(), anyio.Event()

        class Blocking:
            event_map = _mediator(Behaviour()).event_map

            async def send(self, event: object) -> None:
                started.set()
                await release.wait()

        transport = InMemoryTransport()
        transport.put_event(_paid(1))
        transport.put_event(_paid(1))
        transport.close()
        consumer_metrics = ConsumerMetrics.create(metrics.provider, "memory")
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: consume(Blocking(), transport, metrics=consumer_metrics))
            with anyio.fail_after(10):
                await started.wait()
            assert metrics.value("anycqrs.consumer.in_flight") == 2
            release.set()
        assert metrics.value("anycqrs.consumer.in_flight") == 0
        assert metrics.value("messaging.client.consumed.messages") == 2

    async def test_cancelled_with_queued_chunks_leaves_nothing_in_flight(self) -> None:
        metrics = Metrics()
        started = anyio.Event()

        class Stuck:
            event_map = _mediator(Behaviour()).event_map

            async def send(self, event: object) -> None:
                started.set()
                await anyio.sleep_forever()

        transport = InMemoryTransport(batch_size=1)  # one chunk per message
        for _ in range(4):
            transport.put_event(_paid(1))
        consumer_metrics = ConsumerMetrics.create(metrics.provider, "memory")
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(
                    lambda: consume(Stuck(), transport, concurrency=1, metrics=consumer_metrics)
                )
                await started.wait()
                while metrics.value("anycqrs.consumer.in_flight") < 3:
                    await anyio.sleep(0.01)  # the lane's buffer fills up
                tg.cancel_scope.cancel()
        assert metrics.value("anycqrs.consumer.in_flight") == 0
        assert metrics.value("messaging.client.consumed.messages") == 0

    async def test_a_consumer_that_stops_counts_the_failure(self) -> None:
        metrics = Metrics()
        behaviour = Behaviour()
        behaviour.failing = {1: -1}
        transport = InMemoryTransport(dead_letter_destination=False)
        transport.put_event(_paid(1))
        transport.close()
        with pytest.raises(anycqrs.errors.MessageHandlingError), anyio.fail_after(10):
            await consume(
                _mediator(behaviour),
                transport,
                retry=anycqrs.RetryPolicy(attempts=2, delay=0.01),
                sleep=_no_sleep,
                metrics=ConsumerMetrics.create(metrics.provider, "memory"),
            )
        assert metrics.by("messaging.process.duration", "anycqrs.outcome") == {"failed": 1}
        assert metrics.value("anycqrs.consumer.failed") == 1
        assert metrics.points("messaging.process.duration")[0].attributes["error.type"] == (
            "RuntimeError"
        )


@attrs.frozen
class Ping(anycqrs.Request):
    fail: bool = False


class PingHandler(anycqrs.RequestHandler[Ping, str]):
    async def handle(self, request: Ping) -> str:
        if request.fail:
            raise ValueError("no")
        return "pong"


class TestMiddleware:
    """`MetricsMiddleware`: handler durations per message type and outcome."""

    async def test_requests_and_events(self) -> None:
        metrics = Metrics()
        middleware = MetricsMiddleware(meter_provider=metrics.provider)
        mediator = anycqrs.requests.bootstrap.bootstrap(
            commands_mapper=lambda m: m.bind(Ping, PingHandler), middlewares=[middleware]
        )
        assert await mediator.send(Ping()) == "pong"
        assert await mediator.send(Ping()) == "pong"
        with pytest.raises(ValueError, match="no"):
            await mediator.send(Ping(fail=True))
        events = EventMediator(
            _mediator(Behaviour()).event_map,
            container=_container(),
            middlewares=[middleware],
        )
        await events.send(_paid(1))
        by_type = metrics.by("anycqrs.handler.duration", "anycqrs.message.type")
        assert by_type == {"Ping": 3, "OrderPaid": 1}
        assert metrics.value("anycqrs.handler.duration", **{"anycqrs.outcome": "failure"}) == 1
        assert metrics.value("anycqrs.handler.duration", **{"error.type": "ValueError"}) == 1


def _container() -> lagom.Container:
    container = lagom.Container()
    container[Behaviour] = Behaviour()
    return container


@attrs.define
class Order(anycqrs.SagaContext):
    order_id: int
    fail: bool = False


class Reserve(SagaStepHandler[Order, None]):
    async def act(self, context: Order) -> None:
        return None

    async def compensate(self, context: Order) -> None:
        return None


class Pay(SagaStepHandler[Order, None]):
    async def act(self, context: Order) -> None:
        if context.fail:
            raise RuntimeError("card declined")

    async def compensate(self, context: Order) -> None:
        return None


class OrderSaga(anycqrs.Saga[Order]):
    steps = [Reserve, Pay]


class TestSagas:
    """Saga status changes, step durations and recoveries."""

    async def test_counts_by_status_and_steps(self) -> None:
        metrics = Metrics()
        mediator = anycqrs.saga.SagaMediator(
            _saga_map(), storage=MemorySagaStorage(), meter_provider=metrics.provider
        )
        for order_id in range(3):
            await mediator.run(Order(order_id))
        with pytest.raises(RuntimeError, match="declined"):
            await mediator.run(Order(9, fail=True))
        statuses = metrics.by("anycqrs.saga.status_changes", "anycqrs.saga.status")
        assert statuses["RUNNING"] == 4
        assert statuses["COMPLETED"] == 3
        assert statuses["FAILED"] == 1
        steps = metrics.points("anycqrs.saga.step.duration")
        acts = {
            (p.attributes["anycqrs.saga.step"], p.attributes["anycqrs.outcome"]): p.count
            for p in steps
            if p.attributes["anycqrs.saga.action"] == "act"
        }
        assert acts[("Reserve", "COMPLETED")] == 4
        assert acts[("Pay", "COMPLETED")] == 3
        assert acts[("Pay", "FAILED")] == 1
        compensations = metrics.value(
            "anycqrs.saga.step.duration", **{"anycqrs.saga.action": "compensate"}
        )
        assert compensations == 1  # Reserve, compensated once

    async def test_recovery(self) -> None:
        metrics = Metrics()
        storage = MemorySagaStorage()
        first = anycqrs.saga.SagaMediator(_saga_map(), storage=storage)
        stream = first.stream(Order(1))
        await stream.__anext__()  # Reserve done, then the caller walks away
        await stream.aclose()
        second = anycqrs.saga.SagaMediator(
            _saga_map(), storage=storage, meter_provider=metrics.provider
        )
        assert await second.recover_pending(stale_after=0) == 1
        assert metrics.value("anycqrs.saga.recoveries") == 1
        assert (
            metrics.value(
                "anycqrs.saga.recovery.attempts", **{"anycqrs.saga.recovery.outcome": "recovered"}
            )
            == 1
        )
        assert (
            metrics.value("anycqrs.saga.status_changes", **{"anycqrs.saga.status": "COMPLETED"})
            == 1
        )


def _saga_map() -> anycqrs.SagaMap:
    sagas = anycqrs.SagaMap()
    sagas.bind(Order, OrderSaga)
    return sagas


class TestBreaker:
    """Circuit-breaker state changes."""

    async def test_open_and_close(self) -> None:
        metrics = Metrics()
        now = [0.0]
        breaker = anycqrs.CircuitBreaker(
            fail_max=2,
            reset_timeout=5,
            store=anycqrs.MemoryBreakerStore(clock=lambda: now[0]),
            meter_provider=metrics.provider,
        )

        async def fail() -> None:
            raise RuntimeError("down")

        async def ok() -> str:
            return "ok"

        for _ in range(2):
            with pytest.raises(RuntimeError):
                await breaker.call("svc", fail)
        assert metrics.value("anycqrs.circuit_breaker.state_changes") == 1
        now[0] = 10.0  # half-open: a trial call goes through
        assert await breaker.call("svc", ok) == "ok"
        changes = metrics.by(
            "anycqrs.circuit_breaker.state_changes", "anycqrs.circuit_breaker.state"
        )
        assert changes == {"open": 1, "closed": 1}
        assert await breaker.call("svc", ok) == "ok"  # closed stays closed: no change
        assert metrics.value("anycqrs.circuit_breaker.state_changes") == 2


class TestPrometheus:
    """The documented Prometheus export shows anycqrs metrics."""

    async def test_text_exposition(self) -> None:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from opentelemetry.sdk.metrics import MeterProvider
        from prometheus_client import CollectorRegistry, generate_latest

        registry = CollectorRegistry()
        reader = PrometheusMetricReader(registry=registry)
        provider = MeterProvider(metric_readers=[reader])
        transport = InMemoryTransport()
        transport.put_event(_paid(1))
        transport.close()
        await consume(
            _mediator(Behaviour()),
            transport,
            metrics=ConsumerMetrics.create(provider, "memory"),
        )
        text = generate_latest(registry).decode()
        assert "messaging_client_consumed_messages_total" in text
        assert 'messaging_destination_name="orders"' in text
        assert "messaging_process_duration_seconds_bucket" in text


class TestKafkaStatistics:
    """librdkafka's statistics and errors, as the Kafka consumer reads them."""

    def _stats(self, state: str, lag: int) -> str:
        import json

        return json.dumps(
            {
                "brokers": {
                    "127.0.0.1:9092/1": {"nodeid": 1, "state": state},
                    "GroupCoordinator": {"nodeid": -1, "state": "UP"},
                },
                "topics": {
                    "orders": {
                        "partitions": {
                            "0": {"consumer_lag": lag},
                            "1": {"consumer_lag": -1},  # not assigned here
                            "-1": {"consumer_lag": -1},
                        }
                    }
                },
            }
        )

    def test_lag_and_broker_state(self) -> None:
        from anycqrs.brokers.kafka._stats import Observer
        from anycqrs.observability import ConsumerProbe

        metrics = Metrics()
        probe = ConsumerProbe("c")
        probe.started()
        seen: list[str] = []
        observer = Observer(probe, ConsumerMetrics.create(metrics.provider, "kafka", "g"))
        config = observer.install(
            {"statistics.interval.ms": 100, "stats_cb": seen.append, "group.id": "g"}
        )
        assert config["stats_cb"] == observer.on_stats
        observer.on_stats(self._stats("UP", 42))
        assert seen and probe.is_connected
        assert metrics.by("anycqrs.consumer.lag", "messaging.destination.partition.id") == {"0": 42}
        observer.on_stats(self._stats("TRY_CONNECT", 40))
        assert not probe.is_connected
        assert "no broker connection is up: TRY_CONNECT" in probe.check().reasons[0]
        observer.on_stats(self._stats("UP", 7))
        assert probe.is_connected
        assert metrics.value("anycqrs.consumer.lag") == 7

    def test_all_brokers_down(self) -> None:
        from confluent_kafka import KafkaError

        from anycqrs.brokers.kafka._stats import Observer
        from anycqrs.observability import ConsumerProbe

        probe = ConsumerProbe("c")
        probe.started()
        errors: list[KafkaError] = []
        observer = Observer(probe, None)
        config = observer.install({"error_cb": errors.append})
        assert "stats_cb" not in config  # no statistics asked for
        observer.on_error(KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"))
        assert not probe.is_connected and len(errors) == 1
