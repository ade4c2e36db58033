"""Helpers shared by the SQL saga storages: identifiers, JSON, the columns and
how rows become states and log entries, and what a failed version check means.
Each storage keeps its own connections, locking and SQL text."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import datetime, timezone
from typing import Any, TypeVar
from uuid import UUID

from ...errors import SagaConcurrencyError, SagaError, SagaNotFoundError
from .._types import SagaState, SagaStatus, SagaStepEntry, SagaStepStatus, StepAction, StepRecord

__all__ = [
    "COLUMNS",
    "COMPENSATION_FAILED",
    "UNFINISHED",
    "as_is",
    "claimable",
    "dumps",
    "identifier",
    "loads",
    "log_values",
    "stale_write",
    "state",
    "step_entries",
    "utc",
]

T = TypeVar("T")

COLUMNS = "saga_id, saga_name, status, context, version, recovery_attempts, created_at, updated_at"
"""The columns of a :class:`SagaState`, in the order :func:`state` reads them."""

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


_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$")

try:  # pragma: no cover - depends on the environment
    import orjson

    def dumps(data: Any) -> str:
        """JSON text of ``data``."""
        return orjson.dumps(data).decode()

    loads: Callable[[str | bytes], Any] = orjson.loads
except ImportError:  # pragma: no cover

    def dumps(data: Any) -> str:
        """JSON text of ``data``."""
        return json.dumps(data, separators=(",", ":"))

    loads = json.loads


def identifier(name: str, what: str) -> str:
    """Check a table name given by argument (``name`` or ``schema.name``)."""
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        raise ValueError(
            f"{what} must be a plain SQL identifier (letters, digits, underscores, "
            f"optionally schema-qualified), got {name!r}"
        )
    return name


def utc(at: float) -> datetime:
    """An aware UTC datetime from epoch seconds."""
    return datetime.fromtimestamp(at, timezone.utc)


def as_is(value: T) -> T:
    """A value the driver already returns as wanted."""
    return value


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
    """A :class:`SagaState` from a row of :data:`COLUMNS`, the id, context and
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
    (:class:`SagaConcurrencyError`) or is not there (:class:`SagaNotFoundError`)."""
    if exists:
        return SagaConcurrencyError(saga_id, expected_version)
    return SagaNotFoundError(saga_id)
