"""One execution of a saga (`Run`) and where its writes go (`Journal`)."""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, cast
from uuid import UUID

from ..observability._context import MessageContext
from ..observability._state_metrics import SagaMetrics
from ._log import Entry, entry
from ._observed import saga_message
from ._saga import Saga, SagaStepHandler
from ._types import SagaStatus, StepRecord
from .storage._memory import MemorySagaStorage
from .storage._protocol import SagaStorage, SynchronousWriters

__all__ = ["Handler", "Journal", "Run", "Written", "records"]

Handler = SagaStepHandler[Any, Any]


Written = int | Awaitable[int]
"""What a `Journal` writer returns: the new version, or an awaitable of it
when the storage has to await (check with `isinstance(written, int)`)."""


def records(entries: Sequence[Entry]) -> list[StepRecord]:
    """The engine's entries as `StepRecord`s (what storages other than the
    memory one are given)."""
    return [entry(e) for e in entries]


_Create = Callable[[UUID, str, Mapping[str, Any], SagaStatus, Sequence[Entry], float], Written]
_Save = Callable[
    [UUID, int, "SagaStatus | None", "Mapping[str, Any] | None", Sequence[Entry], float], Written
]


class Run:
    """One execution of a saga: its id, context, the stored version and
    context snapshot, and the handlers that acted (to compensate them on the
    same instances).

    A run is also the current message while its steps run (see
    `current_message`): `resolve` builds the saga's `MessageContext` when
    first read (most steps never read it), so starting a saga builds no
    message holder of its own.
    """

    __slots__ = (
        "_message",
        "context",
        "done",
        "origin",
        "saga",
        "saga_id",
        "snapshot",
        "status",
        "version",
    )

    def __init__(
        self,
        saga_id: UUID,
        saga: type[Saga[Any]],
        context: Any,
        version: int,
        snapshot: Any,
    ) -> None:
        self.saga_id = saga_id
        self.saga = saga
        self.context = context
        self.version = version
        self.snapshot = snapshot
        self.done: list[Handler] = []
        self.status = SagaStatus.RUNNING
        self.origin: dict[str, str] | None = None
        """Correlation and trace headers of where the saga started."""
        self._message: MessageContext | None = None

    def resolve(self) -> MessageContext:
        """The current message while the saga's steps run: the saga itself,
        in its origin's conversation (`saga_message`), built once."""
        message = self._message
        if message is None:
            message = self._message = saga_message(self.saga_id, self.origin)
        return message


_new_run = functools.partial(object.__new__, Run)
"""An empty `Run` (its slots unset): `Starter.begin` fills it inline."""


class Journal:
    """The engine's writes to a storage, one way for every kind of storage.

    `create` and `save` take their arguments positionally, with the entries'
    time stamp last, and return a `Written`: a storage that declares
    `SynchronousWriters` is written without a coroutine per write (the memory
    storage of a 3-step saga: four coroutines fewer), any other is awaited.
    The entries are `Entry` tuples: the memory storage keeps them as they
    are, every other storage is given `StepRecord`s. With `metrics`, every
    write is also shown to them (statuses, step times).

    `synchronous`: `save` never returns an awaitable (the storage declares
    a synchronous save): a write through it can't wait.
    """

    __slots__ = ("create", "metrics", "save", "storage", "synchronous")

    def __init__(self, storage: SagaStorage, metrics: SagaMetrics | None = None) -> None:
        self.storage = storage
        self.metrics = metrics
        create: Callable[
            [UUID, str, Mapping[str, Any], SagaStatus, Sequence[Entry], float], Written
        ]
        save: Callable[
            [UUID, int, SagaStatus | None, Mapping[str, Any] | None, Sequence[Entry], float],
            Written,
        ]
        create, save = self._create_awaited, self._save_awaited
        if isinstance(storage, SynchronousWriters):
            create_now, save_now = storage.synchronous_writers()
            if isinstance(storage, MemorySagaStorage):  # keeps plain entries
                create = cast("Any", create_now) or create
                save = cast("Any", save_now) or save
            else:
                if create_now is not None:
                    create = self._converting_create(create_now)
                if save_now is not None:
                    save = self._converting_save(save_now)
        self.create = create
        self.save = save
        self.synchronous = save != self._save_awaited  # (a bound method: equal, not identical)
        if metrics is not None:
            self._observe(metrics)

    @staticmethod
    def _converting_create(create_now: Any) -> Any:
        def create(  # noqa: PLR0917 - the writer signature
            saga_id: UUID,
            saga_name: str,
            context: Mapping[str, Any],
            status: SagaStatus,
            entries: Sequence[Entry],
            now: float,
        ) -> int:
            return int(create_now(saga_id, saga_name, context, status, records(entries), now))

        return create

    @staticmethod
    def _converting_save(save_now: Any) -> Any:
        def save(  # noqa: PLR0917 - the writer signature
            saga_id: UUID,
            expected_version: int,
            status: SagaStatus | None,
            context: Mapping[str, Any] | None,
            entries: Sequence[Entry],
            now: float,
        ) -> int:
            return int(save_now(saga_id, expected_version, status, context, records(entries), now))

        return save

    def _observe(self, metrics: SagaMetrics) -> None:
        create, save, written = self.create, self.save, metrics.written

        def observed_create(  # noqa: PLR0917 - the writer signature
            saga_id: UUID,
            saga_name: str,
            context: Mapping[str, Any],
            status: SagaStatus,
            entries: Sequence[Entry],
            now: float,
        ) -> Written:
            result = create(saga_id, saga_name, context, status, entries, now)
            written(saga_id, status, records(entries))
            return result

        def observed_save(  # noqa: PLR0917 - the writer signature
            saga_id: UUID,
            expected_version: int,
            status: SagaStatus | None,
            context: Mapping[str, Any] | None,
            entries: Sequence[Entry],
            now: float,
        ) -> Written:
            result = save(saga_id, expected_version, status, context, entries, now)
            written(saga_id, status, records(entries))
            return result

        self.create, self.save = observed_create, observed_save

    async def write(
        self,
        run: Run,
        *,
        status: SagaStatus | None = None,
        context: Mapping[str, Any] | None = None,
        entries: Sequence[Entry] = (),
    ) -> None:
        """`save` for the paths where a coroutine does not matter: sets
        `run.version`."""
        written = self.save(run.saga_id, run.version, status, context, entries, time.time())
        run.version = written if isinstance(written, int) else await written

    def _create_awaited(
        self,
        saga_id: UUID,
        saga_name: str,
        context: Mapping[str, Any],
        status: SagaStatus,
        entries: Sequence[Entry],
        _now: float,
    ) -> Awaitable[int]:
        return self.storage.create_saga(
            saga_id, saga_name, context, status=status, entries=records(entries)
        )

    def _save_awaited(
        self,
        saga_id: UUID,
        expected_version: int,
        status: SagaStatus | None,
        context: Mapping[str, Any] | None,
        entries: Sequence[Entry],
        _now: float,
    ) -> Awaitable[int]:
        return self.storage.save(
            saga_id, expected_version, status=status, context=context, entries=records(entries)
        )
