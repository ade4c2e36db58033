"""Talking to the circuit breaker of a saga ``Fallback``.

Any object with ``is_open(key)``, ``record_success(key)`` and
``record_failure(key, error)`` works (see :class:`CircuitBreakerLike`); the
key is the primary step's ``step_name``, so one breaker may guard several steps.
"""

from __future__ import annotations

from typing import Any


def _key(step: type) -> str:
    return str(getattr(step, "step_name", step.__name__))


def breaker_allows(breaker: Any, step: type) -> bool:
    """Whether ``breaker`` lets ``step`` run now."""
    return not breaker.is_open(_key(step))


def breaker_success(breaker: Any, step: type) -> None:
    """Tell ``breaker`` that ``step`` succeeded."""
    breaker.record_success(_key(step))


def breaker_failure(breaker: Any, step: type, error: BaseException) -> None:
    """Tell ``breaker`` that ``step`` failed with ``error``."""
    breaker.record_failure(_key(step), error)
