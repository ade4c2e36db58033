"""What the SQL saga storages share beyond `anycqrs._persistence` (JSON, table
names, time, transactions, connections): the columns, how rows become states
and log entries, and what a failed version check means. Each storage keeps its
own SQL text."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from ..._persistence import dumps, utc
from ...errors import SagaConcurrencyError, SagaError, SagaNotFoundError
from .._types import SagaState, SagaStatus, SagaStepEntry, SagaStepStatus, StepAction, StepRecord

__all__ = [
    "COLUMNS",
    "COMPENSATION_FAILED",
    "UNFINISHED",
    "claimable",
    "log_values",
    "stale_write",
    "state",
    "step_entries",
    "utc",  # for the memory storage
]

COLUMNS = "saga_id, saga_name, status, context, version, recovery_attempts, created_at, updated_at"
"""The columns of a `SagaState`, in the order `state` reads them."""

UNFINISHED = "status IN ('PENDING', 'RUNNING', 'COMPENSATING')"
"""Sagas recovery may claim."""

COMPENSATION_FAILED = "status = 'COMPENSATION_FAILED'"
"""Sagas recovery may claim again to retry their failed compensations."""


def claimable(
    saga_names: Collection[str] | None, retry_compensations: int, mark: str
) -> tuple[str, list[Any]]:
    """The condition (and its parameters) on the sagas a claim may take:
    unfinished, or COMPENSATION_FAILED claimed fewer than
    `retry_compensations` times, named in `saga_names` (`None`: any);
    `mark` is the driver's placeholder."""
    where, params = UNFINISHED, list[Any]()
    if retry_compensations > 0:
        where = f"({UNFINISHED} OR ({COMPENSATION_FAILED} AND recovery_attempts < {mark}))"
        params.append(retry_compensations)
    if saga_names is not None:
        where += f" AND saga_name IN ({', '.join([mark] * len(saga_names)) or 'NULL'})"
        params.extend(saga_names)
    return where, params


def log_values(records: Sequence[StepRecord], *prefix: Any) -> list[tuple[Any, ...]]:
    """``(*prefix, step_name, action, status, details JSON, at)`` per log entry."""
    return [
        (
            *prefix,
            e.step_name,
            e.action.value,
            e.status.value,
            None if e.details is None else dumps(e.details),
            e.at,
        )
        for e in records
    ]


def state(
    row: Sequence[Any],
    saga_id: Callable[[Any], UUID],
    json_data: Callable[[Any], Any],
    moment: Callable[[Any], datetime],
) -> SagaState:
    """A `SagaState` from a row of `COLUMNS`, the id, context and
    times converted by the given functions."""
    return SagaState(
        saga_id=saga_id(row[0]),
        saga_name=row[1],
        status=SagaStatus(row[2]),
        context=json_data(row[3]),
        version=row[4],
        recovery_attempts=row[5],
        created_at=moment(row[6]),
        updated_at=moment(row[7]),
    )


def step_entries(
    rows: Iterable[Sequence[Any]],
    json_data: Callable[[Any], Any],
    moment: Callable[[Any], datetime],
) -> list[SagaStepEntry]:
    """Step-log entries from ``(step_name, action, status, details, created_at)`` rows."""
    return [
        SagaStepEntry(
            step_name=name,
            action=StepAction(action),
            status=SagaStepStatus(status),
            details=None if details is None else json_data(details),
            created_at=moment(at),
        )
        for name, action, status, details, at in rows
    ]


def stale_write(saga_id: UUID, expected_version: int, *, exists: bool) -> SagaError:
    """The error of a write whose version check failed: the saga moved on
    (`SagaConcurrencyError`) or is not there (`SagaNotFoundError`)."""
    if exists:
        return SagaConcurrencyError(saga_id, expected_version)
    return SagaNotFoundError(saga_id)
