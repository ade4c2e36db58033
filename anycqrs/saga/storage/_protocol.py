"""The saga storage protocol every storage implements."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable
from uuid import UUID

from .._types import SagaState, SagaStatus, SagaStepEntry, StepRecord

__all__ = ["CreateNow", "SagaStorage", "SaveNow", "SynchronousWriters"]


@runtime_checkable
class SagaStorage(Protocol):
    """Durable state of sagas: status, context, ordered step log, version, leases.

    Every write checks the saga's version (optimistic concurrency): a writer
    whose ``expected_version`` is stale gets
    `anycqrs.errors.SagaConcurrencyError` and nothing is written. A
    write (status + context + log entries + version) is one atomic operation,
    ideally one round trip.

    Implementations: `MemorySagaStorage`, `SqliteSagaStorage`,
    `PostgresSagaStorage`.
    """

    async def create_saga(
        self,
        saga_id: UUID,
        saga_name: str,
        context: Mapping[str, Any],
        *,
        status: SagaStatus,
        entries: Sequence[StepRecord] = (),
    ) -> int:
        """Insert a new saga (version 1) with its first log entries.

        Raises:
            SagaAlreadyExistsError: ``saga_id`` exists.
        """
        ...

    async def save(
        self,
        saga_id: UUID,
        expected_version: int,
        *,
        status: SagaStatus | None = None,
        context: Mapping[str, Any] | None = None,
        entries: Sequence[StepRecord] = (),
    ) -> int:
        """Atomically append ``entries``, set ``status`` / ``context`` when given,
        and increment the version. Returns the new version.

        Raises:
            SagaConcurrencyError: the stored version is not ``expected_version``.
            SagaNotFoundError: no such saga.
        """
        ...

    async def load_saga_state(self, saga_id: UUID) -> SagaState:
        """The saga's current state.

        Raises:
            SagaNotFoundError: no such saga.
        """
        ...

    async def get_step_history(self, saga_id: UUID) -> list[SagaStepEntry]:
        """The saga's step log, oldest first (empty for an unknown saga)."""
        ...

    async def claim(
        self,
        *,
        owner: str,
        lease_seconds: float,
        saga_id: UUID | None = None,
        stale_after: float = 0.0,
        limit: int = 1,
        saga_names: Collection[str] | None = None,
        retry_compensations: int = 0,
    ) -> list[SagaState]:
        """Lease sagas to ``owner`` for recovery.

        Takes unfinished sagas (PENDING, RUNNING, COMPENSATING), and
        COMPENSATION_FAILED ones whose ``recovery_attempts`` is below
        ``retry_compensations`` (0: none), whose lease is free or expired and
        whose ``saga_name`` is in ``saga_names`` (``None``: any name; a saga
        not taken is not touched): the one ``saga_id`` if given, else up to
        ``limit`` sagas not written for ``stale_after`` seconds, oldest first.
        Each claimed saga gets its ``recovery_attempts`` and ``version``
        incremented (so a still-running stale writer is fenced off).
        Concurrent claimers never get the same saga.
        """
        ...

    async def release(self, saga_id: UUID, owner: str) -> None:
        """Drop ``owner``'s lease on ``saga_id`` (no-op if it holds none)."""
        ...


CreateNow = Callable[[UUID, str, Mapping[str, Any], SagaStatus, Sequence[StepRecord], float], int]
"""`create_saga(saga_id, saga_name, context, status, entries)` without the
coroutine, stamped with the given `time.time()`; returns the version."""

SaveNow = Callable[
    [UUID, int, "SagaStatus | None", "Mapping[str, Any] | None", Sequence[StepRecord], float], int
]
"""`save(saga_id, expected_version, status, context, entries)` without the
coroutine, stamped with the given `time.time()`; returns the new version."""


@runtime_checkable
class SynchronousWriters(Protocol):
    """A storage whose writes never await (an in-process one) may declare this.

    The saga engine then writes through the plain callables it returns (same
    effect as `create_saga` / `save`, no coroutine per write). Each writer may
    be `None`: the engine then awaits the coroutine method (a subclass that
    overrides `save`, say, must be written through it).
    """

    def synchronous_writers(self) -> tuple[CreateNow | None, SaveNow | None]:
        """`(create_now, save_now)`, either `None` when not offered."""
        ...
