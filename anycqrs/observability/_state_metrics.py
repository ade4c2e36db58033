"""The instruments of the stateful parts: the outbox (set by
`OutboxMonitor`), the saga engine (fed by its journal and recovery) and the
circuit breaker. Same rules as `_metrics`: `create` gives `None` when metrics
are off."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any

from ._metrics import Attributes, histogram, meter

__all__ = ["BreakerMetrics", "OutboxMetrics", "SagaMetrics"]


class OutboxMetrics:
    """The gauges `anycqrs.observability.OutboxMonitor` sets."""

    __slots__ = ("_age", "_attrs", "_backlog", "_dead")

    def __init__(self, m: Any, table: str) -> None:
        self._attrs = {"anycqrs.outbox.table": table}
        self._backlog = m.create_gauge(
            "anycqrs.outbox.backlog", unit="{row}", description="Pending outbox rows."
        )
        self._age = m.create_gauge(
            "anycqrs.outbox.oldest_age",
            unit="s",
            description="Age of the oldest pending outbox row (0 when none).",
        )
        self._dead = m.create_gauge(
            "anycqrs.outbox.dead", unit="{row}", description="Dead-lettered outbox rows."
        )

    @classmethod
    def create(cls, meter_provider: Any, table: str) -> OutboxMetrics | None:
        """The metrics of an outbox table, or `None` when metrics are off."""
        m = meter(meter_provider)
        return None if m is None else cls(m, table)

    def observed(self, pending: int, dead: int, oldest_age: float) -> None:
        """One monitor query's result."""
        self._backlog.set(pending, self._attrs)
        self._dead.set(dead, self._attrs)
        self._age.set(oldest_age, self._attrs)


class SagaMetrics:
    """The instruments of one `SagaMediator` (fed by its journal and recovery)."""

    __slots__ = (
        "_attempts",
        "_recoveries",
        "_started",
        "_status",
        "_status_attrs",
        "_step",
        "_step_attrs",
    )

    _LIMIT = 10_000
    """Most step starts remembered (sagas abandoned mid-step are forgotten)."""

    def __init__(self, m: Any) -> None:
        self._status = m.create_counter(
            "anycqrs.saga.status_changes",
            unit="{saga}",
            description="Sagas entering a status (RUNNING when created).",
        )
        self._step = histogram(
            m, "anycqrs.saga.step.duration", "s", "Time of one step's act or compensate."
        )
        self._recoveries = m.create_counter(
            "anycqrs.saga.recoveries", unit="{saga}", description="Sagas recovered."
        )
        self._attempts = m.create_counter(
            "anycqrs.saga.recovery.attempts",
            unit="{attempt}",
            description="Recovery attempts (one per claimed saga), by outcome.",
        )
        self._status_attrs = Attributes({}, lambda status: {"anycqrs.saga.status": status})
        self._step_attrs = Attributes(
            {},
            lambda step, action, status: {
                "anycqrs.saga.step": step,
                "anycqrs.saga.action": action,
                "anycqrs.outcome": status,
            },
        )
        self._started: dict[tuple[Any, str, str], float] = {}

    @classmethod
    def create(cls, meter_provider: Any) -> SagaMetrics | None:
        """The metrics of a saga mediator, or `None` when metrics are off."""
        m = meter(meter_provider)
        return None if m is None else cls(m)

    def written(self, saga_id: Any, status: Any, entries: Sequence[Any]) -> None:
        """A journal write: a status change and step-log entries
        (`StepRecord`s) whose STARTED / COMPLETED / FAILED pairs time steps."""
        if status is not None:
            self._status.add(1, self._status_attrs(_text(status)))
        started = self._started
        for entry in entries:
            key = (saga_id, entry.step_name, _text(entry.action))
            state = _text(entry.status)
            if state == "STARTED":
                if len(started) >= self._LIMIT:
                    started.clear()
                started[key] = entry.at
                continue
            begun = started.pop(key, None)
            if begun is not None:
                self._step.record(
                    max(0.0, entry.at - begun), self._step_attrs(key[1], key[2], state)
                )

    def recovery(self, outcome: str) -> None:
        """One claimed saga was recovered (`recovered`), failed again
        (`failed`) or given up (`given_up`)."""
        self._attempts.add(1, {"anycqrs.saga.recovery.outcome": outcome})
        if outcome == "recovered":
            self._recoveries.add(1)


def _text(value: Any) -> str:
    """An enum member's value (`"act"`, `"COMPLETED"`), else `str(value)`."""
    return str(value.value) if isinstance(value, enum.Enum) else str(value)


class BreakerMetrics:
    """The state changes of one `CircuitBreaker`."""

    __slots__ = ("_attrs", "_changes")

    def __init__(self, m: Any) -> None:
        self._changes = m.create_counter(
            "anycqrs.circuit_breaker.state_changes",
            unit="{change}",
            description="Circuits opening (after failures) and closing (a trial call succeeded).",
        )
        self._attrs = Attributes(
            {},
            lambda name, state: {
                "anycqrs.circuit_breaker.name": name,
                "anycqrs.circuit_breaker.state": state,
            },
        )

    @classmethod
    def create(cls, meter_provider: Any) -> BreakerMetrics | None:
        """The metrics of a breaker, or `None` when metrics are off."""
        m = meter(meter_provider)
        return None if m is None else cls(m)

    def changed(self, name: str, state: str) -> None:
        """Circuit `name` entered `state` (`open` or `closed`)."""
        self._changes.add(1, self._attrs(name, state))
