"""An in-process saga storage (the default; state is lost with the process)."""

from __future__ import annotations

import copy
import time
from collections import deque
from collections.abc import Collection, Mapping, Sequence
from typing import Any
from uuid import UUID

from ...errors import SagaAlreadyExistsError, SagaConcurrencyError, SagaNotFoundError
from .._log import Entry
from .._types import SagaState, SagaStatus, SagaStepEntry, StepRecord
from ._protocol import CreateNow, SaveNow
from ._sql import utc

__all__ = ["MemorySagaStorage"]

_UNFINISHED = (SagaStatus.PENDING, SagaStatus.RUNNING, SagaStatus.COMPENSATING)
_COMPLETED, _FAILED = SagaStatus.COMPLETED, SagaStatus.FAILED
"""What the retention policy may drop (`COMPENSATION_FAILED` stays: recovery
retries it); compared by identity (`Enum.__hash__` is a Python call)."""

DEFAULT_KEEP_FINISHED = 1_000
"""How many finished sagas a `MemorySagaStorage` keeps by default."""


class _Row:
    """One saga: `MemorySagaStorage._create_now` sets every slot (no
    `__init__`: `_Row()` is a class call in C, one per saga)."""

    __slots__ = (
        "attempts",
        "context",
        "created",
        "lease_owner",
        "lease_until",
        "log",
        "name",
        "status",
        "updated",
        "version",
    )

    name: str
    status: SagaStatus
    context: Mapping[str, Any]
    version: int
    attempts: int
    lease_owner: str | None
    lease_until: float
    created: float
    updated: float
    log: list[Entry]
    """`Entry` tuples (`StepRecord`s among them), read back by position."""

    def state(self, saga_id: UUID) -> SagaState:
        return SagaState(
            saga_id=saga_id,
            saga_name=self.name,
            status=self.status,
            context=copy.deepcopy(dict(self.context)),
            version=self.version,
            recovery_attempts=self.attempts,
            created_at=utc(self.created),
            updated_at=utc(self.updated),
        )


class MemorySagaStorage:
    """Keeps sagas in a dict: fast, for tests, demos and sagas that need not
    survive the process. Writes are atomic because they never await.

    Retention: the storage keeps every unfinished saga, and the most recent
    `keep_finished` finished ones (`COMPLETED` or `FAILED`, by the time they
    finished); older finished sagas are dropped, so a long-running process
    does not grow without bound (nor does the garbage collector's work).
    A dropped saga is gone: `load_saga_state` raises `SagaNotFoundError`,
    `get_step_history` returns `[]`, and its id may be created again.
    `COMPENSATION_FAILED` sagas are never dropped (recovery retries them).

    Args:
        keep_finished: how many finished sagas to keep (default
            `DEFAULT_KEEP_FINISHED`, 1,000); `None` keeps them all.

    Example:
        ```python
        storage = MemorySagaStorage()                     # the last 1,000 finished sagas
        everything = MemorySagaStorage(keep_finished=None)
        mediator = anycqrs.saga.bootstrap.bootstrap(sagas_mapper=..., saga_storage=storage)
        ```
    """

    __slots__ = ("_finished", "_keep", "_last_id", "_last_row", "_rows")

    def __init__(self, *, keep_finished: int | None = DEFAULT_KEEP_FINISHED) -> None:
        if keep_finished is not None and keep_finished < 0:
            raise ValueError(f"keep_finished must be >= 0 or None, got {keep_finished}")
        self._rows: dict[int, _Row] = {}  # keyed by UUID.int: hashing a UUID is slow
        self._last_id: UUID | None = None
        self._last_row: _Row | None = None
        """The saga created last and its row: the engine saves a new saga
        with the same `UUID` object, found by identity (no hash, no lookup);
        forgotten when its row is dropped."""
        self._keep = keep_finished
        self._finished: deque[int] = deque()
        """Keys of finished sagas, oldest first (may hold keys already dropped)."""

    @property
    def keep_finished(self) -> int | None:
        """How many finished sagas this storage keeps (`None`: all)."""
        return self._keep

    def _finish(self, key: int) -> None:
        """A saga finished: remember it, drop the oldest beyond `keep_finished`."""
        keep = self._keep
        if keep is None:
            return
        finished, rows = self._finished, self._rows
        finished.append(key)
        while len(finished) > keep:
            old = finished.popleft()
            row = rows.get(old)
            if row is not None and (row.status is _COMPLETED or row.status is _FAILED):
                del rows[old]
                if row is self._last_row:
                    self._last_id = self._last_row = None

    def synchronous_writers(self) -> tuple[CreateNow | None, SaveNow | None]:
        """`(create_now, save_now)`: `create_saga` and `save` without their
        coroutines (each `None` where a subclass overrides the public method),
        see `SynchronousWriters`. The saga engine writes through them: this
        storage never awaits."""
        cls = type(self)
        return (
            self._create_now if cls.create_saga is MemorySagaStorage.create_saga else None,
            self._save_now if cls.save is MemorySagaStorage.save else None,
        )

    async def create_saga(
        self,
        saga_id: UUID,
        saga_name: str,
        context: Mapping[str, Any],
        *,
        status: SagaStatus,
        entries: Sequence[StepRecord] = (),
    ) -> int:
        """Insert a new saga (see `SagaStorage`)."""
        return self._create_now(saga_id, saga_name, context, status, entries, time.time())

    def _create_now(  # noqa: PLR0917 - positional: the engine's hot path
        self,
        saga_id: UUID,
        saga_name: str,
        context: Mapping[str, Any],
        status: SagaStatus,
        entries: Sequence[Entry],
        now: float,
    ) -> int:
        """`create_saga` without the coroutine, stamped ``now`` (the
        engine's fast path: this storage never awaits)."""
        key = saga_id.int
        rows = self._rows
        if key in rows:
            raise SagaAlreadyExistsError(saga_id)
        row = rows[key] = _Row()
        row.name = saga_name
        row.status = status
        row.context = context
        row.version = 1
        row.attempts = 0
        row.lease_owner = None
        row.lease_until = 0.0
        row.created = now
        row.updated = now
        row.log = []
        self._last_id, self._last_row = saga_id, row
        if entries:
            row.log.extend(entries)
        if status is _COMPLETED or status is _FAILED:
            self._finish(key)
        return 1

    async def save(
        self,
        saga_id: UUID,
        expected_version: int,
        *,
        status: SagaStatus | None = None,
        context: Mapping[str, Any] | None = None,
        entries: Sequence[StepRecord] = (),
    ) -> int:
        """Write atomically with a version check (see `SagaStorage`)."""
        return self._save_now(saga_id, expected_version, status, context, entries, time.time())

    def _save_now(  # noqa: PLR0917 - positional: the engine's hot path
        self,
        saga_id: UUID,
        expected_version: int,
        status: SagaStatus | None,
        context: Mapping[str, Any] | None,
        entries: Sequence[Entry],
        now: float,
    ) -> int:
        """`save` without the coroutine, stamped ``now`` (the engine's
        fast path: this storage never awaits)."""
        row = self._last_row if saga_id is self._last_id else self._rows.get(saga_id.int)
        if row is None:
            raise SagaNotFoundError(saga_id)
        if row.version != expected_version:
            raise SagaConcurrencyError(saga_id, expected_version)
        if status is not None and status is not row.status:
            row.status = status
            if (status is _COMPLETED or status is _FAILED) and (keep := self._keep) is not None:
                # self._finish(saga_id.int), inline: once per saga
                finished, rows = self._finished, self._rows
                finished.append(saga_id.int)
                while len(finished) > keep:
                    old = finished.popleft()
                    dropped = rows.get(old)
                    if dropped is not None and (
                        dropped.status is _COMPLETED or dropped.status is _FAILED
                    ):
                        del rows[old]
                        if dropped is self._last_row:
                            self._last_id = self._last_row = None
        if context is not None:
            row.context = context
        if entries:
            row.log.extend(entries)
        row.updated = now
        row.version = version = expected_version + 1
        return version

    async def load_saga_state(self, saga_id: UUID) -> SagaState:
        """The saga's state (see `SagaStorage`)."""
        row = self._rows.get(saga_id.int)
        if row is None:
            raise SagaNotFoundError(saga_id)
        return row.state(saga_id)

    async def get_step_history(self, saga_id: UUID) -> list[SagaStepEntry]:
        """The step log, oldest first (see `SagaStorage`)."""
        row = self._rows.get(saga_id.int)
        if row is None:
            return []
        return [
            SagaStepEntry(
                step_name=name,
                action=action,
                status=status,
                details=copy.deepcopy(dict(details)) if details is not None else None,
                created_at=utc(at),
            )
            for name, action, status, details, at in row.log
        ]

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
        """Lease sagas for recovery (see `SagaStorage`)."""
        now = time.time()
        if saga_id is not None:
            row = self._rows.get(saga_id.int)
            candidates = [] if row is None else [(saga_id.int, row)]
        else:
            candidates = sorted(
                ((key, row) for key, row in self._rows.items() if row.updated <= now - stale_after),
                key=lambda item: item[1].updated,
            )
        claimed: list[SagaState] = []
        for key, row in candidates:
            if len(claimed) >= limit:
                break
            if row.status not in _UNFINISHED and not (
                row.status is SagaStatus.COMPENSATION_FAILED and row.attempts < retry_compensations
            ):
                continue
            if saga_names is not None and row.name not in saga_names:
                continue
            if row.lease_owner is not None and row.lease_until > now:
                continue
            row.lease_owner = owner
            row.lease_until = now + lease_seconds
            row.attempts += 1
            row.version += 1
            claimed.append(row.state(UUID(int=key)))
        return claimed

    async def release(self, saga_id: UUID, owner: str) -> None:
        """Drop ``owner``'s lease (see `SagaStorage`)."""
        row = self._rows.get(saga_id.int)
        if row is not None and row.lease_owner == owner:
            row.lease_owner = None
            row.lease_until = 0.0
