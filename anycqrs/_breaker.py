"""A circuit breaker on anyio's clock, with pluggable (memory or Redis) state.

States, per protected name (one per protected handler):

* `CLOSED`: calls go through; failures are counted, a success resets the
  count. `fail_max` failures in a row open the circuit.
* `OPEN`: calls are refused (a fallback runs instead) for `reset_timeout`
  seconds.
* `HALF_OPEN`: after `reset_timeout`, calls are let through again as
  trials: the first success closes the circuit, a failure opens it again at
  once.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar, runtime_checkable

import anyio
import attrs

from ._routing import Route
from .errors import CircuitBreakerOpen
from .observability._state_metrics import BreakerMetrics

__all__ = [
    "BreakerState",
    "BreakerStore",
    "CircuitBreaker",
    "CircuitBreakerLike",
    "CircuitBreakerOpen",
    "MemoryBreakerStore",
    "RedisBreakerStore",
]

T = TypeVar("T")


class BreakerState(str, enum.Enum):
    """The state of one circuit."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


@runtime_checkable
class CircuitBreakerLike(Protocol):
    """The one breaker protocol: what a fallback (request, streaming, event or
    saga) needs from a circuit breaker.

    `CircuitBreaker` implements it; any object with these three async methods
    does too (fallbacks check with `isinstance`). `name` is the protected
    handler's circuit name: its class's `module.QualName` (see
    `protected_name`), so one breaker may guard several handlers.

    Example:
        ```python
        class AlwaysClosed:
            async def is_open(self, name: str) -> bool:
                return False

            async def record_success(self, name: str) -> None:
                pass

            async def record_failure(self, name: str, error: BaseException) -> None:
                pass
        ```
    """

    async def is_open(self, name: str, /) -> bool:
        """Whether calls protected under `name` are refused (skipped) now."""
        ...

    async def record_success(self, name: str, /) -> None:
        """A protected call of `name` succeeded."""
        ...

    async def record_failure(self, name: str, error: BaseException, /) -> Any:
        """A protected call of `name` failed with `error`."""
        ...


@runtime_checkable
class BreakerStore(Protocol):
    """Where circuit states live. Implement it to share breakers another way.

    Each method is one atomic step of the state machine for `name`; a store
    keeps its own clock (the memory store uses anyio's, the Redis store the
    Redis server's, so that every process agrees).
    """

    async def state(self, name: str) -> BreakerState:
        """The current state of `name`'s circuit."""
        ...

    async def record_failure(self, name: str, fail_max: int, reset_timeout: float) -> BreakerState:
        """Count a failure; open the circuit (for `reset_timeout` seconds) after
        `fail_max` in a row, or at once when half-open. Returns the new state."""
        ...

    async def record_success(self, name: str) -> None:
        """Reset the failure count; close a half-open circuit (an open one stays open)."""
        ...

    async def reset(self, name: str) -> None:
        """Forget everything about `name` (closed, no failures)."""
        ...


@attrs.define
class _Circuit:
    failures: int = 0
    open_until: float | None = None


class MemoryBreakerStore:
    """Circuit states in this process's memory, timed by anyio's clock.

    The default store. Under trio's `MockClock` (or any anyio-compatible
    test clock) `reset_timeout` follows the virtual time.

    Args:
        clock: returns the current time in seconds (default
            `anyio.current_time`, the event loop's monotonic clock).

    Example:
        ```python
        breaker = anycqrs.CircuitBreaker(fail_max=3, store=MemoryBreakerStore())
        ```
    """

    __slots__ = ("_circuits", "_clock")

    def __init__(self, clock: Callable[[], float] = anyio.current_time) -> None:
        self._circuits: dict[str, _Circuit] = {}
        self._clock = clock

    async def state(self, name: str) -> BreakerState:
        """The current state of `name`'s circuit."""
        circuit = self._circuits.get(name)
        if circuit is None or circuit.open_until is None:
            return BreakerState.CLOSED
        if self._clock() < circuit.open_until:
            return BreakerState.OPEN
        return BreakerState.HALF_OPEN

    async def record_failure(self, name: str, fail_max: int, reset_timeout: float) -> BreakerState:
        """Count a failure (see `BreakerStore`)."""
        circuit = self._circuits.get(name)
        if circuit is None:
            circuit = self._circuits[name] = _Circuit()
        now = self._clock()
        if circuit.open_until is not None:
            if now < circuit.open_until:
                return BreakerState.OPEN
            circuit.open_until = now + reset_timeout
            return BreakerState.OPEN
        circuit.failures += 1
        if circuit.failures >= fail_max:
            circuit.failures = 0
            circuit.open_until = now + reset_timeout
            return BreakerState.OPEN
        return BreakerState.CLOSED

    async def record_success(self, name: str) -> None:
        """Reset the count; close a half-open circuit."""
        circuit = self._circuits.get(name)
        if circuit is None:
            return
        if circuit.open_until is None or self._clock() >= circuit.open_until:
            del self._circuits[name]

    async def reset(self, name: str) -> None:
        """Forget `name`."""
        self._circuits.pop(name, None)


_FAILURE_SCRIPT = """
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 'open'
end
if redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
  return 'open'
end
local failures = redis.call('INCR', KEYS[1])
if failures >= tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
  redis.call('SET', KEYS[3], '1')
  return 'open'
end
return 'closed'
"""

_SUCCESS_SCRIPT = """
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('DEL', KEYS[1], KEYS[3])
end
return 0
"""


class RedisBreakerStore:
    """Circuit states in Redis, so that several processes share one breaker.

    Timing uses key expiry on the Redis server (`SET ... PX`), so processes
    on different hosts agree on when a circuit half-opens. The blocking
    `redis` client runs in worker threads (one thread hop per step), which
    works under asyncio and trio alike. Requires the `redis` extra.

    Keys, for a protected name `n`: `{prefix}{n}:failures` (the count),
    `{prefix}{n}:open` (exists while open, expires after `reset_timeout`),
    `{prefix}{n}:tripped` (exists from opening until the next success: open
    or half-open).

    Args:
        client: a `redis.Redis` client, or a URL (`redis://host:6379/0`).
        prefix: prefix of every key (default `"anycqrs:breaker:"`).
        limiter: bounds the worker threads used (default: anyio's default).

    Example:
        ```python
        store = RedisBreakerStore("redis://127.0.0.1:6379/0")
        breaker = anycqrs.CircuitBreaker(fail_max=5, reset_timeout=30, store=store)
        ```
    """

    __slots__ = ("_client", "_failure", "_limiter", "_prefix", "_success")

    def __init__(
        self,
        client: Any,
        *,
        prefix: str = "anycqrs:breaker:",
        limiter: anyio.CapacityLimiter | None = None,
    ) -> None:
        if isinstance(client, str):
            import redis

            client = redis.Redis.from_url(client)
        self._client = client
        self._prefix = prefix
        self._limiter = limiter
        self._failure = client.register_script(_FAILURE_SCRIPT)
        self._success = client.register_script(_SUCCESS_SCRIPT)

    @property
    def client(self) -> Any:
        """The `redis.Redis` client."""
        return self._client

    def _keys(self, name: str) -> list[str]:
        base = self._prefix + name
        return [base + ":failures", base + ":open", base + ":tripped"]

    async def _run(self, fn: Callable[[], T]) -> T:
        return await anyio.to_thread.run_sync(fn, limiter=self._limiter)

    async def state(self, name: str) -> BreakerState:
        """The current state of `name`'s circuit (one round trip)."""
        _, open_key, tripped_key = self._keys(name)
        client = self._client

        def read() -> Any:
            return client.exists(open_key), client.exists(tripped_key)

        is_open, tripped = await self._run(read)
        if is_open:
            return BreakerState.OPEN
        return BreakerState.HALF_OPEN if tripped else BreakerState.CLOSED

    async def record_failure(self, name: str, fail_max: int, reset_timeout: float) -> BreakerState:
        """Count a failure atomically (a Lua script)."""
        keys = self._keys(name)
        millis = max(1, round(reset_timeout * 1000))
        script = self._failure
        result = await self._run(lambda: script(keys=keys, args=[fail_max, millis]))
        text = result.decode() if isinstance(result, bytes) else str(result)
        return BreakerState(text)

    async def record_success(self, name: str) -> None:
        """Reset the count; close a half-open circuit (atomically)."""
        keys = self._keys(name)
        script = self._success
        await self._run(lambda: script(keys=keys))

    async def reset(self, name: str) -> None:
        """Delete `name`'s keys."""
        keys = self._keys(name)
        client = self._client
        await self._run(lambda: client.delete(*keys))


def _exceptions(value: Any) -> tuple[type[BaseException], ...]:
    if isinstance(value, type):
        return (value,)
    return tuple(value)


@attrs.define(eq=False)
class CircuitBreaker:
    """Stops calling a failing handler for a while, so a fallback takes over.

    The built-in `CircuitBreakerLike`.

    One breaker may protect several handlers: it keeps one circuit per
    protected name (a fallback uses its primary handler's qualified name).

    Attributes:
        fail_max: failures in a row that open a circuit (default 5).
        reset_timeout: seconds a circuit stays open before letting a trial
            call through (half-open; default 60).
        exclude: exception types that are not failures (business errors such
            as validation): they propagate without being counted.
        store: where circuits live (default: a new `MemoryBreakerStore`;
            use `RedisBreakerStore` to share circuits between processes).
        meter_provider: where state changes are counted
            (`anycqrs.circuit_breaker.state_changes`; default: the global
            OpenTelemetry provider, read when the breaker is built). With
            metrics on, recording a call reads the state first (one more
            store read).

    Example:
        ```python
        breaker = anycqrs.CircuitBreaker(fail_max=3, reset_timeout=30, exclude=(ValueError,))
        requests.bind(
            GetRates,
            anycqrs.RequestHandlerFallback(LiveRates, CachedRates, circuit_breaker=breaker),
        )
        ```
    """

    fail_max: int = attrs.field(default=5)
    reset_timeout: float = attrs.field(default=60.0)
    exclude: tuple[type[BaseException], ...] = attrs.field(default=(), converter=_exceptions)
    store: BreakerStore = attrs.field(factory=MemoryBreakerStore, kw_only=True)
    meter_provider: Any = attrs.field(default=None, kw_only=True, eq=False, repr=False)
    _metrics: BreakerMetrics | None = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self._metrics = BreakerMetrics.create(self.meter_provider)

    @fail_max.validator
    def _check_fail_max(self, _attribute: Any, value: int) -> None:
        if value < 1:
            raise ValueError(f"fail_max must be >= 1, got {value}")

    @reset_timeout.validator
    def _check_reset_timeout(self, _attribute: Any, value: float) -> None:
        if value < 0:
            raise ValueError(f"reset_timeout must be >= 0, got {value}")

    async def state(self, name: str) -> BreakerState:
        """The state of `name`'s circuit."""
        return await self.store.state(name)

    async def is_open(self, name: str) -> bool:
        """Whether calls to `name` are refused right now."""
        return await self.store.state(name) is BreakerState.OPEN

    def counts(self, error: BaseException) -> bool:
        """Whether `error` counts as a failure (an `Exception` not excluded)."""
        return isinstance(error, Exception) and not isinstance(error, self.exclude)

    async def record_failure(self, name: str, error: BaseException) -> BreakerState:
        """Count `error` against `name` unless it is excluded; the new state."""
        if not self.counts(error):
            return await self.store.state(name)
        metrics = self._metrics
        if metrics is None:
            return await self.store.record_failure(name, self.fail_max, self.reset_timeout)
        before = await self.store.state(name)
        after = await self.store.record_failure(name, self.fail_max, self.reset_timeout)
        if after is BreakerState.OPEN and before is not BreakerState.OPEN:
            metrics.changed(name, after.value)
        return after

    async def record_success(self, name: str) -> None:
        """Record a successful call of `name`."""
        metrics = self._metrics
        if metrics is None:
            await self.store.record_success(name)
            return
        before = await self.store.state(name)
        await self.store.record_success(name)
        if before is BreakerState.HALF_OPEN:
            metrics.changed(name, BreakerState.CLOSED.value)

    async def reset(self, name: str) -> None:
        """Close `name`'s circuit and forget its failures."""
        await self.store.reset(name)

    async def call(self, name: str, fn: Callable[[], Awaitable[T]]) -> T:
        """Run `await fn()` under `name`'s circuit.

        Raises:
            CircuitBreakerOpen: the circuit is open (`fn` is not called).
            Exception: what `fn` raised (counted unless excluded).
        """
        if await self.is_open(name):
            raise CircuitBreakerOpen(name)
        try:
            result = await fn()
        except Exception as exc:
            await self.record_failure(name, exc)
            raise
        await self.record_success(name)
        return result


def protected_name(target: Any) -> str:
    """The circuit name of a handler class (`module.QualName`) or a route."""
    if isinstance(target, type):
        return f"{target.__module__}.{target.__qualname__}"
    if isinstance(target, Route):
        return "+".join(protected_name(t) for t in target.handler_types())
    return repr(target)
