"""What request and event fallbacks share: options and the guarded endpoint."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import attrs

from ._breaker import CircuitBreakerLike, protected_name
from ._routing import Route, describe
from ._validate import exception_types
from .errors import BindingError

T = TypeVar("T")

Endpoint = Callable[[Any], Awaitable[T]]


def failure_types(value: Any) -> tuple[type[BaseException], ...]:
    """Normalize `failure_exceptions` (a class or an iterable of classes);
    a bad item raises `BindingError` (a `TypeError`)."""
    try:
        return exception_types(value)
    except TypeError as exc:
        raise BindingError(f"failure_exceptions: {exc}") from None


def check_breaker(value: Any) -> None:
    """Raise `BindingError` unless `value` is `None` or a `CircuitBreakerLike`."""
    if value is not None and not isinstance(value, CircuitBreakerLike):
        raise BindingError(
            "circuit_breaker must be an anycqrs.CircuitBreaker (or have its async "
            f"is_open / record_success / record_failure methods), got {value!r}"
        )


@attrs.frozen(eq=False, repr=False)
class FallbackBinding:
    """The options every fallback binding has (request, streaming, event), and
    the list of handler classes it may run. Subclasses add the checks and the
    endpoint."""

    streaming = False
    """Whether it builds a stream source (the streaming request fallback)."""

    primary: Any
    fallback: Any
    failure_exceptions: tuple[type[BaseException], ...] = attrs.field(
        default=(), converter=failure_types
    )
    circuit_breaker: CircuitBreakerLike | None = attrs.field(
        default=None, validator=lambda _self, _attribute, value: check_breaker(value)
    )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({describe(self.primary)}, {describe(self.fallback)})"

    def handler_types(self) -> Sequence[type]:
        """The primary's and the fallback's handler classes."""
        types: list[type] = []
        for target in (self.primary, self.fallback):
            types.extend(target.handler_types() if isinstance(target, Route) else (target,))
        return types


def guarded(
    primary: Endpoint[T],
    fallback: Endpoint[T],
    *,
    protected: Any,
    failure_exceptions: tuple[type[BaseException], ...],
    breaker: CircuitBreakerLike | None,
) -> Endpoint[T]:
    """An endpoint running `primary`, or `fallback` when it fails or its
    circuit is open. Cancellation is never a failure.

    The one fallback mechanism (requests, events; sagas too). `protected` is
    the primary handler class (or route): it names the circuit
    (`protected_name`). A failure is recorded with the breaker whatever its
    type (the breaker decides what counts); only `failure_exceptions` (any
    `Exception` when empty) switch to `fallback`, others propagate.
    """
    catch: tuple[type[BaseException], ...] = failure_exceptions or (Exception,)
    if breaker is None:

        async def endpoint(message: Any) -> T:
            try:
                return await primary(message)
            except catch:
                return await fallback(message)

        return endpoint

    name = protected_name(protected)

    async def protected_endpoint(message: Any) -> T:
        if await breaker.is_open(name):
            return await fallback(message)
        try:
            result = await primary(message)
        except Exception as exc:
            await breaker.record_failure(name, exc)
            if not isinstance(exc, catch):
                raise
            return await fallback(message)
        await breaker.record_success(name)
        return result

    return protected_endpoint
