"""Step execution: middlewares, fallbacks and breakers, retry policy, timeout, saga id."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import anyio
import pytest

import anycqrs.saga as saga
from anycqrs import RetryPolicy
from anycqrs.container import as_container
from anycqrs.errors import (
    SagaDefinitionError,
)
from anycqrs.middlewares import MiddlewareChain
from anycqrs.saga import SagaStatus
from anycqrs.saga._run import Journal as RunJournal
from anycqrs.saga._snapshot import Snapshots
from anycqrs.saga._steps import Steps
from anycqrs.saga.storage import MemorySagaStorage, SagaStorage

from ._sagas import (
    Boom,
    FakeSleep,
    Journal,
    OrderContext,
    Pay,
    Reserve,
    Reserved,
    Ship,
    ShipSlow,
    history,
    make_mediator,
    stored_run,
)

pytestmark = pytest.mark.anyio


async def test_middlewares_wrap_each_step() -> None:
    calls: list[str] = []

    class Recorder:
        async def __call__(self, message: Any, call_next: Any) -> Any:
            calls.append(type(message).__name__)
            result = await call_next(message)
            calls.append(f"-> {result}")
            return result

    mediator = make_mediator(Journal(), middlewares=[Recorder()])
    await mediator.run(OrderContext(order_id=13))
    assert calls == [
        "OrderContext",
        "-> reserved",
        "OrderContext",
        "-> 10",
        "OrderContext",
        "-> shipped",
    ]


async def test_several_middlewares_nest_in_order_and_can_replace_results() -> None:
    calls: list[str] = []

    class Named:
        def __init__(self, name: str) -> None:
            self.name = name

        async def __call__(self, message: Any, call_next: Any) -> Any:
            calls.append(f"{self.name}>")
            result = await call_next(message)
            calls.append(f"<{self.name}")
            return result

    class Upper:
        async def __call__(self, message: Any, call_next: Any) -> Any:
            result = await call_next(message)
            return result.upper() if isinstance(result, str) else result

    mediator = make_mediator(Journal(), middlewares=[Named("a"), Upper(), Named("b")])
    results = await mediator.run(OrderContext(order_id=14))
    assert [r.response for r in results] == ["RESERVED", 10, "SHIPPED"]
    assert calls == ["a>", "b>", "<b", "<a"] * 3


class Breaker:
    def __init__(self, open_: bool = False) -> None:
        self.open = open_
        self.events: list[str] = []

    async def is_open(self, key: str) -> bool:
        return self.open

    async def record_success(self, key: str) -> None:
        self.events.append(f"ok:{key.rsplit('.', 1)[-1]}")

    async def record_failure(self, key: str, error: BaseException) -> None:
        self.events.append(f"fail:{key.rsplit('.', 1)[-1]}:{type(error).__name__}")


async def test_fallback_restores_context_and_compensates_only_the_winner(
    storage: SagaStorage,
) -> None:
    class Dirty(Ship):
        step_name = "Ship"

        async def work(self, context: OrderContext) -> Any:
            context.paid = 999
            context.items.append("dirty")
            raise Boom("primary down")

    breaker = Breaker()

    class DirtySaga(saga.Saga[OrderContext]):
        saga_name = "DirtySaga"
        steps = [
            Reserve,
            saga.Fallback(step=Dirty, fallback=ShipSlow, circuit_breaker=breaker),
            Pay,
        ]

    journal = Journal()
    mediator = make_mediator(journal, storage, DirtySaga)
    context = OrderContext(order_id=14, fail_at="Pay")
    sid = uuid.uuid4()
    with pytest.raises(Boom, match="Pay"):
        async for result in mediator.stream(context, saga_id=sid):
            if result.step_type is ShipSlow:
                assert context.paid == 0 and context.items == ["book"]
                assert context.shipped_by == "slow"
    assert breaker.events == ["fail:Dirty:Boom"]
    assert journal.names() == [
        "act:Reserve",
        "act:Ship",
        "act:ShipSlow",
        "act:Pay",
        "compensate:ShipSlow",
        "compensate:Reserve",
    ]
    assert history(await storage.get_step_history(sid))[:6] == [
        "act:Reserve:STARTED",
        "act:Reserve:COMPLETED",
        "act:Ship:STARTED",
        "act:Ship:FAILED",
        "act:ShipSlow:STARTED",
        "act:ShipSlow:COMPLETED",
    ]


async def test_fallback_not_used_for_other_errors_and_breaker_open_skips_primary() -> None:
    class Wrong(Ship):
        step_name = "Ship"

        async def work(self, context: OrderContext) -> Any:
            raise KeyError("not a fallback case")

    class NarrowSaga(saga.Saga[OrderContext]):
        steps = [saga.Fallback(step=Wrong, fallback=ShipSlow, failure_exceptions=Boom)]

    journal = Journal()
    with pytest.raises(KeyError):
        await make_mediator(journal, saga_type=NarrowSaga).run(OrderContext(order_id=15))
    assert journal.names() == ["act:Ship"]

    breaker = Breaker(open_=True)

    class OpenSaga(saga.Saga[OrderContext]):
        steps = [saga.Fallback(step=Ship, fallback=ShipSlow, circuit_breaker=breaker)]

    journal = Journal()
    storage = MemorySagaStorage()
    results = await make_mediator(journal, storage, OpenSaga).run(OrderContext(order_id=16))
    assert [r.step_type for r in results] == [ShipSlow]
    assert journal.names() == ["act:ShipSlow"]
    entries = await storage.get_step_history(results[0].saga_id)
    assert entries[1].details == {"error": "circuit breaker open", "fallback": True}

    breaker = Breaker()

    class HealthySaga(saga.Saga[OrderContext]):
        steps = [saga.Fallback(step=Ship, fallback=ShipSlow, circuit_breaker=breaker)]

    results = await make_mediator(Journal(), saga_type=HealthySaga).run(OrderContext(order_id=17))
    assert [r.step_type for r in results] == [Ship]
    assert breaker.events == ["ok:Ship"]


async def test_fallback_failure_is_the_step_failure() -> None:
    class Down(Ship):
        step_name = "Ship"

        async def work(self, context: OrderContext) -> Any:
            raise Boom("primary down")

    class Both(saga.Saga[OrderContext]):
        steps = [Reserve, saga.Fallback(step=Down, fallback=ShipSlow)]

    journal, storage = Journal(), MemorySagaStorage()
    sid = uuid.uuid4()
    with pytest.raises(Boom, match="ShipSlow"):
        await make_mediator(journal, storage, Both).run(
            OrderContext(order_id=18, fail_at="ShipSlow"), saga_id=sid
        )
    assert journal.names() == ["act:Reserve", "act:Ship", "act:ShipSlow", "compensate:Reserve"]
    assert history(await storage.get_step_history(sid))[2:6] == [
        "act:Ship:STARTED",
        "act:Ship:FAILED",
        "act:ShipSlow:STARTED",
        "act:ShipSlow:FAILED",
    ]


class Flaky(Pay):
    step_name = "Pay"
    retry_policy = saga.RetryPolicy(attempts=3, delay=0, retry_on=(ConnectionError,))
    failures = 0

    async def work(self, context: OrderContext) -> Any:
        context.paid += 1000  # must be rolled back between attempts
        if type(self).failures:
            type(self).failures -= 1
            raise ConnectionError("flaky")
        return await super().work(context)


class FlakySaga(saga.Saga[OrderContext]):
    steps = [Reserve, Flaky]


async def test_retry_policy_restores_context_between_attempts() -> None:
    Flaky.failures = 2
    journal = Journal()
    context = OrderContext(order_id=19)
    results = await make_mediator(journal, saga_type=FlakySaga).run(context)
    assert results[-1].response == 1010
    assert context.paid == 1010
    assert journal.names().count("act:Pay") == 3

    Flaky.failures = 5
    with pytest.raises(ConnectionError):
        await make_mediator(Journal(), saga_type=FlakySaga).run(OrderContext(order_id=20))


class TooSlow(Pay):
    step_name = "Pay"
    timeout = 0.01

    async def work(self, context: OrderContext) -> Any:
        await anyio.sleep(10)


class TimeoutSaga(saga.Saga[OrderContext]):
    steps = [Reserve, TooSlow]


async def test_step_timeout_is_a_failure() -> None:
    journal, storage = Journal(), MemorySagaStorage()
    sid = uuid.uuid4()
    with anyio.fail_after(5), pytest.raises(TimeoutError):
        await make_mediator(journal, storage, TimeoutSaga).run(
            OrderContext(order_id=21), saga_id=sid
        )
    assert journal.names()[-1] == "compensate:Reserve"
    assert (await storage.load_saga_state(sid)).status is SagaStatus.FAILED


async def test_idempotency_key_and_saga_id_available_to_steps() -> None:
    keys: list[str] = []

    class Keyed(Reserve):
        step_name = "reserve-v1"

        async def work(self, context: OrderContext) -> Any:
            keys.append(self.idempotency_key)
            keys.append(str(self.saga_id))
            return None

    class KeySaga(saga.Saga[OrderContext]):
        steps = [Keyed]

    sid = uuid.uuid4()
    await make_mediator(Journal(), saga_type=KeySaga).run(
        OrderContext(order_id=22), saga_id=str(sid)
    )
    assert keys == [f"{sid}:reserve-v1", str(sid)]
    with pytest.raises(RuntimeError, match="not running inside a saga"):
        _ = Keyed(Journal()).idempotency_key


async def test_fallback_with_the_builtin_circuit_breaker() -> None:
    from anycqrs._breaker import CircuitBreaker

    class Down(Ship):
        step_name = "Ship"
        calls = 0

        async def work(self, context: OrderContext) -> Any:
            type(self).calls += 1
            raise Boom("down")

    breaker = CircuitBreaker(fail_max=1, reset_timeout=60)

    class BreakerSaga(saga.Saga[OrderContext]):
        steps = [saga.Fallback(step=Down, fallback=ShipSlow, circuit_breaker=breaker)]

    mediator = make_mediator(Journal(), saga_type=BreakerSaga)
    for n in range(3):
        results = await mediator.run(OrderContext(order_id=n))
        assert [r.step_type for r in results] == [ShipSlow]
    assert Down.calls == 1  # the open circuit skipped the primary afterwards
    with pytest.raises(SagaDefinitionError, match="circuit_breaker"):
        saga.Fallback(step=Ship, fallback=ShipSlow, circuit_breaker=object())


class Wobbly(Pay):
    """Adds to the context, then fails its first `failures` attempts."""

    step_name = "Pay"
    retry_policy = RetryPolicy(attempts=4, delay=0.2, multiplier=3.0, max_delay=1.0)

    def __init__(self, journal: Journal, failures: int) -> None:
        super().__init__(journal)
        self.failures = failures
        self.seen: list[int] = []

    async def work(self, context: OrderContext) -> Any:
        self.seen.append(context.paid)
        context.paid += 10
        self.emit(Reserved(order_id=context.order_id))
        if len(self.seen) <= self.failures:
            raise ConnectionError(f"attempt {len(self.seen)}")
        return context.paid


def steps_with(sleep: FakeSleep) -> Steps:
    return Steps(
        container=as_container(None),
        middlewares=MiddlewareChain(),
        snapshots=Snapshots(),
        journal=RunJournal(MemorySagaStorage()),
        sleep=sleep,
    )


class TestActRetry:
    """`act` retried through the one retry loop, on an injected sleep."""

    async def test_backs_off_restores_the_context_and_logs(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        sleep = FakeSleep()
        run = await stored_run(MemorySagaStorage(), OrderContext(order_id=1, paid=5))
        handler = Wobbly(Journal(), failures=3)
        steps = steps_with(sleep)
        with caplog.at_level(logging.WARNING, logger="anycqrs.saga"):
            assert await steps.attempt(run, steps.endpoint(Wobbly), handler) == 15
        assert sleep.delays == pytest.approx([0.2, 0.6, 1.0])
        assert handler.seen == [5, 5, 5, 5]  # the context put back before each retry
        assert len(handler.events) == 1  # the failed attempts' events were dropped
        assert [r.getMessage().split(": ", 1)[1] for r in caplog.records] == [
            "Pay act attempt 1/4 failed: ConnectionError: attempt 1",
            "Pay act attempt 2/4 failed: ConnectionError: attempt 2",
            "Pay act attempt 3/4 failed: ConnectionError: attempt 3",
        ]

    async def test_the_last_error_comes_out_unchanged(self) -> None:
        sleep = FakeSleep()
        run = await stored_run(MemorySagaStorage(), OrderContext(order_id=2))
        steps = steps_with(sleep)
        with pytest.raises(ConnectionError, match="attempt 4"):
            await steps.attempt(run, steps.endpoint(Wobbly), Wobbly(Journal(), failures=9))
        assert len(sleep.delays) == 3


async def test_fallback_takes_any_breaker_of_the_one_protocol() -> None:
    from anycqrs._breaker import CircuitBreakerLike

    class AlwaysOpen:
        def __init__(self) -> None:
            self.asked: list[str] = []

        async def is_open(self, name: str) -> bool:
            self.asked.append(name)
            return True

        async def record_success(self, name: str) -> None:
            raise AssertionError("the primary never ran")

        async def record_failure(self, name: str, error: BaseException) -> None:
            raise AssertionError("the primary never ran")

    assert saga.CircuitBreakerLike is CircuitBreakerLike
    breaker = AlwaysOpen()

    class OpenSaga(saga.Saga[OrderContext]):
        steps = [saga.Fallback(step=Ship, fallback=ShipSlow, circuit_breaker=breaker)]

    storage = MemorySagaStorage()
    sid = uuid.uuid4()
    results = await make_mediator(Journal(), storage, OpenSaga).run(
        OrderContext(order_id=1), saga_id=sid
    )
    assert [r.step_type for r in results] == [ShipSlow]
    assert breaker.asked == [f"{Ship.__module__}.{Ship.__qualname__}"]
    switched = (await storage.get_step_history(sid))[1]
    assert switched.details == {"error": "circuit breaker open", "fallback": True}
