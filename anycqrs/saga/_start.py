"""The one way a run begins: create a saga, or resume a stored one."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Sequence
from typing import Any, TypeAlias
from uuid import UUID, uuid5

from ..errors import SagaAlreadyExistsError, SagaError, SagaStateError
from ..messages import NotificationEvent
from ..observability._context import _CURRENT
from ._log import (
    ACT,
    COMPENSATE,
    COMPLETED,
    FAILED,
    RUNNING,
    STARTED,
    Entry,
    SagaIds,
    record,
)
from ._map import SagaMap
from ._observed import ORIGIN, origin_headers, origin_of, otel_current
from ._run import Journal, Run, _new_run
from ._saga import Saga
from ._snapshot import Dump, Snapshots
from ._steps import Step, Steps
from ._types import SagaStatus, SagaStepEntry

__all__ = ["SAGA_ID_NAMESPACE", "Begun", "Known", "Starter", "saga_id_for"]

_current, _now = _CURRENT.get, time.time
"""Bound once: a method (or module attribute) lookup fewer, per saga."""

SAGA_ID_NAMESPACE = UUID("0b5f5c1e-7a3d-5c2b-8e4f-6d9a1b2c3e4f")
"""The uuid5 namespace of `saga_id_for`."""


def saga_id_for(event: Any, saga: type[Saga[Any]] | str) -> UUID:
    """The id of the saga that `event` starts: ``uuid5`` of the saga's
    name and the event's ``event_id``, the same for every delivery of the
    event, so starting a saga from a consumed event is idempotent:
    `SagaMediator.stream(context, saga_id=saga_id_for(event, OrderSaga))`
    creates the saga on the first delivery and, on a redelivery, resumes it
    where it stopped (RUNNING) or runs nothing (finished).

    Args:
        event: a `NotificationEvent`, or its event id.
        saga: the `Saga` class (its ``saga_name``) or a saga name.

    Raises:
        TypeError: `event` is neither (or its id is not a UUID).

    Example:
        ```python
        async def handle(self, event: anycqrs.NotificationEvent[OrderPlaced]) -> None:
            context = OrderContext(order_id=event.payload.order_id)
            async for _ in self.sagas.stream(context, saga_id=saga_id_for(event, OrderSaga)):
                pass
        ```
    """
    event_id = event.event_id if isinstance(event, NotificationEvent) else event
    if not isinstance(event_id, UUID):
        raise TypeError(
            f"saga_id_for needs a NotificationEvent with a UUID event_id (or a UUID), got {event!r}"
        )
    name = saga if isinstance(saga, str) else saga.saga_name
    return uuid5(SAGA_ID_NAMESPACE, f"{name}\n{event_id}")


Begun: TypeAlias = "Run | Awaitable[tuple[Run, int] | None]"
"""What `Starter.begin` returns: the run of a new saga, written at once
(its first step to run), or an awaitable of `(run, index of the step to
run)` (`None`: nothing left to run)."""


Known: TypeAlias = "tuple[type[Saga[Any]], Dump, tuple[Step, ...]]"
"""What a `Starter` knows of a context class (see `Starter.know`)."""


def _acted(logged: SagaStepEntry) -> bool:
    """Whether an `act` entry says the step acted: COMPLETED, or FAILED after
    its `act` succeeded (its events failed: compensated like the others)."""
    if logged.status is COMPLETED:
        return True
    details = logged.details
    return logged.status is FAILED and details is not None and details.get("stage") == "events"


class Starter:
    """Creates runs and rebuilds them from storage (internal).

    Collaborators: the `saga_map` (which saga runs a context), the `journal`
    written through, the `snapshots` of contexts and the `steps` (to rebuild
    the handlers of a resumed run).
    """

    __slots__ = ("_ready", "journal", "known", "new_saga_id", "saga_map", "snapshots", "steps")

    def __init__(
        self, *, saga_map: SagaMap, journal: Journal, snapshots: Snapshots, steps: Steps
    ) -> None:
        self.saga_map = saga_map
        self.journal = journal
        self.snapshots = snapshots
        self.steps = steps
        self.new_saga_id = SagaIds()
        self._ready = self.new_saga_id.ready.pop  # (its IndexError: refill)
        self.known: dict[type, Known] = {}
        """Per context class: its saga, snapshot hook and plan (see `know`)."""

    def saga_for(self, context_type: type) -> type[Saga[Any]]:
        """The saga bound to `context_type`.

        Raises:
            SagaError: none is bound.
        """
        saga = self.saga_map.get(context_type)
        if saga is None:
            raise SagaError(
                f"No saga bound for {context_type.__qualname__}; bind one in a SagaMap "
                "(sagas_mapper)"
            )
        return saga

    async def start(self, context: Any, saga_id: UUID | None) -> tuple[Run, int] | None:
        """Store a new saga of `context` (RUNNING, its first step STARTED),
        or, when `saga_id` exists already, resume it: `(run, first step to
        run)`, or `None` when it has finished (COMPLETED, FAILED or
        COMPENSATION_FAILED alike: nothing runs).

        Raises:
            SagaStateError: `saga_id` is a saga of another class, or COMPENSATING.
        """
        begun = self.begin(context, saga_id)
        return (begun, 0) if isinstance(begun, Run) else await begun

    def begin(self, context: Any, saga_id: UUID | None) -> Begun:
        """`start` without its coroutine where nothing has to be awaited
        (a new saga in a storage written synchronously: the run of `start`'s
        `(run, 0)`); else an awaitable of what `start` returns."""
        cls = type(context)
        known = self.known.get(cls) or self.know(cls)
        saga, dump, plan = known
        if saga_id is None:
            ready = self._ready  # (a slot's callable: see Forward.__anext__)
            try:
                sid = ready()  # SagaIds(), inline
            except IndexError:
                sid = self.new_saga_id.refill()
        else:
            sid = saga_id
        try:
            snapshot = dump(context)
        except Exception:  # noqa: BLE001 - the slow path names the problem
            snapshot = self.snapshots.dump(context)
        now = _now()
        # origin_headers()'s first test, inline: most sagas start with nothing to keep
        origin = None if _current() is None and not otel_current() else origin_headers()
        details = None if origin is None else {ORIGIN: origin}
        first: tuple[Entry, ...] = ((plan[0].name, ACT, STARTED, details, now),)
        try:
            create = self.journal.create
            written = create(sid, saga.saga_name, snapshot, RUNNING, first, now)
        except SagaAlreadyExistsError:
            if saga_id is None:  # pragma: no cover - a random 122-bit id collided
                raise
            return self._resume(context, sid, saga)
        # Run(sid, saga, context, written, snapshot) with its origin, without
        # type.__call__ (one per saga: a class call with a Python __init__ costs ~0.2 µs)
        run = _new_run()
        run.saga_id = sid
        run.saga = saga
        run.context = context
        run.snapshot = snapshot
        run.done = []
        run.status = RUNNING
        run.origin = origin
        run._message = None
        if not isinstance(written, int):
            run.version = 0
            return self._created(written, run, resumable=saga_id is not None)
        run.version = written
        return run

    async def _created(
        self, written: Awaitable[int], run: Run, *, resumable: bool
    ) -> tuple[Run, int] | None:
        """`begin` once an awaited `create` has written (or found the saga)."""
        try:
            run.version = await written
        except SagaAlreadyExistsError:
            if not resumable:  # pragma: no cover - a random 122-bit id collided
                raise
            return await self._resume(run.context, run.saga_id, run.saga)
        return run, 0

    def know(self, context_type: type) -> Known:
        """The saga of `context_type`, its snapshot hook and the saga's
        steps (`Steps.plan`), looked up once per context class.

        Raises:
            SagaError: no saga is bound to `context_type`.
        """
        saga = self.saga_for(context_type)
        known = self.known[context_type] = (
            saga,
            self.snapshots.dumper(context_type),
            self.steps.plan(saga),
        )
        return known

    async def _resume(
        self, context: Any, saga_id: UUID, saga: type[Saga[Any]]
    ) -> tuple[Run, int] | None:
        storage = self.journal.storage
        state = await storage.load_saga_state(saga_id)
        if state.saga_name != saga.saga_name:
            raise SagaStateError(f"Saga {saga_id} is a {state.saga_name}, not a {saga.saga_name}")
        if state.status.terminal:  # finished: a redelivered start runs nothing
            return None
        if state.status is SagaStatus.COMPENSATING:
            raise SagaStateError(
                f"Saga {saga_id} is COMPENSATING; only a RUNNING saga can be "
                "resumed by stream() (recover() finishes its compensation)"
            )
        self.snapshots.restore(context, state.context)
        run = Run(saga_id, saga, context, state.version, state.context)
        start = await self.rebuild(run, await storage.get_step_history(saga_id))
        if await self.restart(run, start):
            return run, start
        return None

    async def rebuild(self, run: Run, history: Sequence[SagaStepEntry]) -> int:
        """Fill `run.done` with the handlers whose `act` was logged COMPLETED
        and whose compensation was not (one logged FAILED is due again);
        return the index of the first slot that did not complete
        (`len(slots)` if all did)."""
        run.origin = origin_of(history)
        acted = {e.step_name for e in history if e.action == ACT and _acted(e)}
        compensated = {
            e.step_name for e in history if e.action == COMPENSATE and e.status is COMPLETED
        }
        slots = run.saga.slots
        for slot in slots:
            handler_type: Any = next((h for h in slot.handlers if h.step_name in acted), None)
            if handler_type is None:
                return slot.index
            if handler_type.step_name not in compensated:
                run.done.append(await self.steps.revive(handler_type, run.saga_id))
        return len(slots)

    async def restart(self, run: Run, start: int) -> bool:
        """Log that `run` goes on from step `start` (RUNNING); or mark it
        COMPLETED when every step acted. Returns whether steps are left."""
        slots = run.saga.slots
        if start >= len(slots):
            await self.journal.write(run, status=SagaStatus.COMPLETED)
            run.status = SagaStatus.COMPLETED
            return False
        await self.journal.write(
            run,
            status=SagaStatus.RUNNING,
            entries=(record(slots[start].primary.step_name, ACT, STARTED, {"resumed": True}),),
        )
        return True
