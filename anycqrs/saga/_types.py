"""Plain data of the saga machinery: statuses, results, states, log entries."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Generic, NamedTuple
from uuid import UUID

import attrs
from typing_extensions import TypeVar

__all__ = [
    "SagaState",
    "SagaStatus",
    "SagaStepEntry",
    "SagaStepResult",
    "SagaStepStatus",
    "StepAction",
    "StepRecord",
]

RespT = TypeVar("RespT", default=Any, covariant=True)


class SagaStatus(str, enum.Enum):
    """Where a saga is in its life.

    ``PENDING``: created, no step started. ``RUNNING``: steps are acting.
    ``COMPENSATING``: a step failed and completed steps are being undone.
    ``COMPLETED``: every step acted. ``FAILED``: a step failed and every step
    that acted was compensated (or recovery gave up on a run that never
    started compensating). ``COMPENSATION_FAILED``: a step failed and at least
    one compensation failed all its retries, so the steps logged
    ``compensate FAILED`` are not undone; `recover_pending` retries them
    (within `max_recovery_attempts`), `recover(saga_id)` retries them
    whatever the count (see docs/saga-recovery.md).

    Example:
        ```python
        state = await storage.load_saga_state(saga_id)
        assert state.status is SagaStatus.COMPLETED
        ```
    """

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPENSATING = "COMPENSATING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    COMPENSATION_FAILED = "COMPENSATION_FAILED"

    @property
    def terminal(self) -> bool:
        """Whether the saga's run is over: ``COMPLETED``, ``FAILED`` or
        ``COMPENSATION_FAILED`` (nothing runs forward again; only recovery
        retries a ``COMPENSATION_FAILED`` saga's compensations)."""
        return self in _TERMINAL


_TERMINAL = frozenset((SagaStatus.COMPLETED, SagaStatus.FAILED, SagaStatus.COMPENSATION_FAILED))


class SagaStepStatus(str, enum.Enum):
    """Status of one step-log entry (``act`` or ``compensate``).

    Example:
        ```python
        [e.status for e in await storage.get_step_history(saga_id)]
        # [SagaStepStatus.STARTED, SagaStepStatus.COMPLETED, ...]
        ```
    """

    STARTED = "STARTED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


class StepAction(str, enum.Enum):
    """What a step-log entry is about: the step's ``act`` or its ``compensate``.

    Compares equal to the plain strings ``"act"`` and ``"compensate"``.
    """

    ACT = "act"
    COMPENSATE = "compensate"


class StepRecord(NamedTuple):
    """A step-log entry as written to a storage (storage implementers' type).

    Attributes:
        step_name: the step's identity (``SagaStepHandler.step_name``).
        action: ``"act"`` or ``"compensate"``.
        status: the entry's status.
        details: JSON-ready details (the error, attempts...) or ``None``.
        at: wall-clock time of the entry (``time.time()``).
    """

    step_name: str
    action: StepAction
    status: SagaStepStatus
    details: Mapping[str, Any] | None
    at: float


@attrs.frozen
class SagaStepEntry:
    """One entry of a saga's step log, as read back from a storage.

    Attributes:
        step_name: the step's identity (class name unless overridden).
        action: ``"act"`` or ``"compensate"`` (a `StepAction`).
        status: ``STARTED``, ``COMPLETED`` or ``FAILED``.
        details: what the engine recorded (``{"error": ..., "attempts": ...}``) or ``None``.
        created_at: when the entry was written (aware UTC).

    Example:
        ```python
        history = await storage.get_step_history(saga_id)
        assert (history[0].step_name, history[0].action) == ("ReserveStep", "act")
        ```
    """

    step_name: str
    action: StepAction
    status: SagaStepStatus
    details: Mapping[str, Any] | None
    created_at: datetime


@attrs.frozen
class SagaState:
    """A saga's row in a storage.

    Attributes:
        saga_id: the saga's id.
        saga_name: the saga class's identity (``Saga.saga_name``).
        status: the saga's `SagaStatus`.
        context: the context as plain data (``to_dict`` of the last persisted context).
        version: optimistic-concurrency version, incremented by every write.
        recovery_attempts: how many times recovery claimed the saga.
        created_at: creation time (aware UTC).
        updated_at: time of the last write (aware UTC).

    Example:
        ```python
        state = await storage.load_saga_state(saga_id)
        print(state.status, state.context["order_id"], state.version)
        ```
    """

    saga_id: UUID
    saga_name: str
    status: SagaStatus
    context: dict[str, Any]
    version: int
    recovery_attempts: int
    created_at: datetime
    updated_at: datetime


@attrs.frozen(slots=True)
class SagaStepResult(Generic[RespT]):
    """What `SagaMediator.stream` yields after each completed step.

    Attributes:
        step_type: the handler class that acted (the fallback's, if it ran).
        response: what its ``act`` returned.
        saga_id: the saga's id.

    Example:
        ```python
        async for result in mediator.stream(OrderContext(order_id=1)):
            print(result.step_type.__name__, result.response)
        ```
    """

    step_type: type[Any]
    response: RespT | None
    saga_id: UUID
