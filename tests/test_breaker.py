from __future__ import annotations

import sys
import textwrap
from typing import Any

import anyio
import pytest

from anycqrs._breaker import (
    BreakerState,
    BreakerStore,
    CircuitBreaker,
    CircuitBreakerOpen,
    MemoryBreakerStore,
    RedisBreakerStore,
    protected_name,
)
from anycqrs.errors import AnyCQRSError
from anycqrs.requests import CORRequestHandler

pytestmark = pytest.mark.anyio


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def redis_store(redis_url: str, unique: str) -> Any:
    store = RedisBreakerStore(redis_url, prefix=f"test:{unique}:")
    yield store
    keys = store.client.keys(f"test:{unique}:*")
    if keys:
        store.client.delete(*keys)
    store.client.close()


async def fail(breaker: CircuitBreaker, name: str, times: int, error: Exception) -> None:
    async def broken() -> None:
        raise error

    for _ in range(times):
        with pytest.raises(type(error)):
            await breaker.call(name, broken)


async def ok() -> str:
    return "ok"


async def test_memory_state_machine() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(fail_max=3, reset_timeout=30, store=MemoryBreakerStore(clock))
    assert await breaker.state("h") is BreakerState.CLOSED
    await fail(breaker, "h", 2, ConnectionError("down"))
    assert await breaker.state("h") is BreakerState.CLOSED
    assert await breaker.call("h", ok) == "ok"  # a success resets the count
    await fail(breaker, "h", 2, ConnectionError("down"))
    assert await breaker.state("h") is BreakerState.CLOSED
    await fail(breaker, "h", 1, ConnectionError("down"))
    assert await breaker.state("h") is BreakerState.OPEN

    with pytest.raises(CircuitBreakerOpen) as caught:
        await breaker.call("h", ok)
    assert caught.value.name == "h"
    assert isinstance(caught.value, AnyCQRSError)
    # a late success of a call that started before the circuit opened changes nothing
    await breaker.record_success("h")
    assert await breaker.state("h") is BreakerState.OPEN
    # a late failure while open does not extend the timeout
    await breaker.record_failure("h", ConnectionError())
    clock.now += 30
    assert await breaker.state("h") is BreakerState.HALF_OPEN

    # half-open: a failure opens it again at once
    await fail(breaker, "h", 1, ConnectionError("still down"))
    assert await breaker.state("h") is BreakerState.OPEN
    clock.now += 29.9
    assert await breaker.state("h") is BreakerState.OPEN
    clock.now += 0.1
    assert await breaker.state("h") is BreakerState.HALF_OPEN
    # half-open: a success closes it
    assert await breaker.call("h", ok) == "ok"
    assert await breaker.state("h") is BreakerState.CLOSED


async def test_excluded_errors_do_not_count() -> None:
    breaker = CircuitBreaker(fail_max=1, exclude=ValueError)
    assert breaker.exclude == (ValueError,)
    await fail(breaker, "h", 3, ValueError("bad input"))
    assert await breaker.state("h") is BreakerState.CLOSED
    assert not breaker.counts(ValueError())
    assert not breaker.counts(KeyboardInterrupt())
    assert breaker.counts(KeyError())
    await fail(breaker, "h", 1, KeyError("boom"))
    assert await breaker.is_open("h")


async def test_one_state_per_name_and_reset() -> None:
    breaker = CircuitBreaker(fail_max=1)
    await fail(breaker, "a", 1, RuntimeError())
    assert await breaker.state("a") is BreakerState.OPEN
    assert await breaker.state("b") is BreakerState.CLOSED
    await breaker.reset("a")
    assert await breaker.state("a") is BreakerState.CLOSED
    await breaker.record_success("never-seen")
    assert await breaker.state("never-seen") is BreakerState.CLOSED


async def test_default_store_uses_anyio_clock() -> None:
    breaker = CircuitBreaker(fail_max=1, reset_timeout=0)
    assert isinstance(breaker.store, MemoryBreakerStore)
    assert isinstance(breaker.store, BreakerStore)
    await fail(breaker, "h", 1, RuntimeError())
    assert await breaker.state("h") is BreakerState.HALF_OPEN


def test_settings_validated() -> None:
    with pytest.raises(ValueError, match="fail_max"):
        CircuitBreaker(fail_max=0)
    with pytest.raises(ValueError, match="reset_timeout"):
        CircuitBreaker(reset_timeout=-1)


def test_protected_names() -> None:
    from anycqrs.requests._chain import chain_route

    class A(CORRequestHandler[Any, Any]):
        async def handle(self, request: Any) -> Any:
            return None

    class B(A):
        pass

    assert protected_name(CircuitBreaker) == "anycqrs._breaker.CircuitBreaker"
    assert (
        protected_name(chain_route([A, B]))
        == f"{__name__}.{A.__qualname__}+{__name__}.{B.__qualname__}"
    )
    assert protected_name("x") == "'x'"


async def until(store: BreakerStore, name: str, state: BreakerState) -> None:
    """Wait (bounded) for the Redis server's clock to expire a key."""
    with anyio.fail_after(5):
        while await store.state(name) is not state:
            await anyio.sleep(0.01)


async def test_redis_state_machine(redis_store: RedisBreakerStore) -> None:
    breaker = CircuitBreaker(fail_max=3, reset_timeout=0.2, store=redis_store)
    assert await breaker.state("h") is BreakerState.CLOSED
    await fail(breaker, "h", 2, ConnectionError())
    assert await breaker.call("h", ok) == "ok"
    await fail(breaker, "h", 2, ConnectionError())
    assert await breaker.state("h") is BreakerState.CLOSED
    await fail(breaker, "h", 1, ConnectionError())
    assert await breaker.state("h") is BreakerState.OPEN
    await breaker.record_success("h")  # late success: stays open
    assert await breaker.record_failure("h", ConnectionError()) is BreakerState.OPEN
    with pytest.raises(CircuitBreakerOpen):
        await breaker.call("h", ok)
    await until(redis_store, "h", BreakerState.HALF_OPEN)
    await fail(breaker, "h", 1, ConnectionError())
    assert await breaker.state("h") is BreakerState.OPEN
    await until(redis_store, "h", BreakerState.HALF_OPEN)
    assert await breaker.call("h", ok) == "ok"
    assert await breaker.state("h") is BreakerState.CLOSED
    await fail(breaker, "h", 1, ConnectionError())
    await breaker.reset("h")
    await fail(breaker, "h", 2, ConnectionError())
    assert await breaker.state("h") is BreakerState.CLOSED


async def test_redis_store_accepts_a_client(redis_url: str, unique: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        store = RedisBreakerStore(
            client, prefix=f"test:{unique}:", limiter=anyio.CapacityLimiter(2)
        )
        assert store.client is client
        breaker = CircuitBreaker(fail_max=1, reset_timeout=60, store=store)
        await fail(breaker, "x", 1, RuntimeError())
        assert await breaker.is_open("x")
        await breaker.reset("x")
        assert not await breaker.is_open("x")
    finally:
        client.close()


async def test_several_processes_share_one_breaker(
    redis_store: RedisBreakerStore, redis_url: str, unique: str
) -> None:
    """One failure here plus one in another process open a fail_max=2 circuit."""
    script = textwrap.dedent(
        f"""
        import anyio
        from anycqrs._breaker import CircuitBreaker, RedisBreakerStore

        async def main():
            store = RedisBreakerStore({redis_url!r}, prefix={f"test:{unique}:"!r})
            breaker = CircuitBreaker(fail_max=2, reset_timeout=60, store=store)
            await breaker.record_failure("shared", RuntimeError("down"))
            print((await breaker.state("shared")).value)

        anyio.run(main)
        """
    )
    breaker = CircuitBreaker(fail_max=2, reset_timeout=60, store=redis_store)
    await breaker.record_failure("shared", RuntimeError("one failure here"))
    assert await breaker.state("shared") is BreakerState.CLOSED
    with anyio.fail_after(60):
        result = await anyio.run_process([sys.executable, "-c", script])
    assert result.stdout.decode().strip() == "open"
    assert await breaker.state("shared") is BreakerState.OPEN


class TestProtocol:
    """One breaker protocol: `CircuitBreaker` implements it, fallbacks accept any implementation."""

    def test_circuit_breaker_is_a_circuit_breaker_like(self) -> None:
        from anycqrs._breaker import CircuitBreakerLike

        assert isinstance(CircuitBreaker(), CircuitBreakerLike)
        assert not isinstance(object(), CircuitBreakerLike)

    def test_fallbacks_accept_any_implementation_and_reject_others(self) -> None:
        import anycqrs
        from anycqrs.errors import BindingError

        class Custom:
            async def is_open(self, name: str) -> bool:
                return False

            async def record_success(self, name: str) -> None:
                pass

            async def record_failure(self, name: str, error: BaseException) -> None:
                pass

        class A(anycqrs.EventHandler[anycqrs.DomainEvent]):
            async def handle(self, event: anycqrs.DomainEvent) -> None:
                pass

        class B(A):
            pass

        fallback = anycqrs.EventHandlerFallback(A, B, circuit_breaker=Custom())
        assert isinstance(fallback.circuit_breaker, Custom)
        with pytest.raises(BindingError, match="circuit_breaker"):
            anycqrs.EventHandlerFallback(A, B, circuit_breaker=object())
