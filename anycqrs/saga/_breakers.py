"""Talking to the circuit breaker of a saga ``Fallback``.

:class:`anycqrs.CircuitBreaker` is the built-in one; any object with its
async ``is_open(name)``, ``record_success(name)`` and
``record_failure(name, error)`` works. The circuit is named after the primary
step class (``module.QualName``, as for request fallbacks), so one breaker may
guard several steps.
"""

from __future__ import annotations

from typing import Any

from .._breaker import protected_name


async def breaker_allows(breaker: Any, step: type) -> bool:
    """Whether ``breaker`` lets ``step`` run now."""
    return not await breaker.is_open(protected_name(step))


async def breaker_success(breaker: Any, step: type) -> None:
    """Tell ``breaker`` that ``step`` succeeded."""
    await breaker.record_success(protected_name(step))


async def breaker_failure(breaker: Any, step: type, error: BaseException) -> None:
    """Tell ``breaker`` that ``step`` failed with ``error``."""
    await breaker.record_failure(protected_name(step), error)
