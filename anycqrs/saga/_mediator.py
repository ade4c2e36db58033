"""``SagaMediator``: runs sagas, streams their step results, recovers them."""

from __future__ import annotations

import functools
import logging
import os
import socket
from collections.abc import AsyncIterator, Iterable
from typing import Any
from uuid import UUID, uuid4

import anyio

from .. import _defaults
from ..brokers import InMemoryMessageBroker, MessageBroker
from ..container import as_container
from ..errors import SagaAlreadyExistsError, SagaError, SagaStateError
from ..events._dispatcher import EventDispatcher
from ..events._map import EventMap
from ..middlewares import Middleware, MiddlewareChain
from ..serialization import from_dict
from ._engine import (
    ACT,
    STARTED,
    Run,
    SagaEngine,
    _Forward,
    describe,
    new_saga_id,
    record,
    restore,
    snapshot_of,
)
from ._map import SagaMap
from ._recovery import rebuild
from ._saga import Saga
from ._types import SagaState, SagaStatus, SagaStepResult
from .storage._memory import MemorySagaStorage
from .storage._protocol import SagaStorage

__all__ = [
    "COMPENSATION_TIMEOUT",
    "MAX_RECOVERY_ATTEMPTS",
    "RECOVERY_LEASE",
    "SagaMediator",
]

logger = logging.getLogger("anycqrs.saga")

COMPENSATION_TIMEOUT = 60.0
"""Seconds the whole compensation phase of a saga may take (its own deadline,
shielded from the caller's cancellation)."""

MAX_RECOVERY_ATTEMPTS = 5
"""Recovery claims of one saga before it is given up (marked FAILED)."""

RECOVERY_LEASE = 300.0
"""Seconds a recovery worker holds its lease on a saga."""


def _as_uuid(saga_id: UUID | str) -> UUID:
    return saga_id if isinstance(saga_id, UUID) else UUID(str(saga_id))


class SagaMediator:
    """Runs sagas step by step, persisting after every step, and recovers them.

    Build one with :func:`anycqrs.saga.bootstrap.bootstrap`.

    Middlewares wrap each step's ``act`` (the message is the context). Each
    step's events are dispatched (domain events to their handlers,
    notification events also to the broker) before its result is yielded.

    Example::

        mediator = anycqrs.saga.bootstrap.bootstrap(
            sagas_mapper=lambda sagas: sagas.bind(OrderContext, OrderSaga),
            saga_storage=SqliteSagaStorage("sagas.db"),
        )
        async for result in mediator.stream(OrderContext(order_id=1)):
            print(result.step_type.__name__, result.response)
        await mediator.recover_pending(limit=100, stale_after=60)
    """

    __slots__ = ("_engine", "_lease", "_map", "_max_attempts", "_owner")

    def __init__(
        self,
        saga_map: SagaMap,
        *,
        container: Any = None,
        storage: SagaStorage | None = None,
        message_broker: MessageBroker | None = None,
        event_map: EventMap | None = None,
        middlewares: Iterable[Middleware] = (),
        max_concurrent_event_handlers: int = _defaults.MAX_CONCURRENT_EVENT_HANDLERS,
        concurrent_event_handle_enable: bool = _defaults.CONCURRENT_EVENT_HANDLE_ENABLE,
        compensation_retry_count: int = _defaults.COMPENSATION_RETRY_COUNT,
        compensation_retry_delay: float = _defaults.COMPENSATION_RETRY_DELAY,
        compensation_retry_backoff: float = _defaults.COMPENSATION_RETRY_BACKOFF,
        compensation_timeout: float = COMPENSATION_TIMEOUT,
        max_recovery_attempts: int = MAX_RECOVERY_ATTEMPTS,
        recovery_lease: float = RECOVERY_LEASE,
        worker_id: str | None = None,
    ) -> None:
        resolved = as_container(container)
        self._map = saga_map
        self._engine = SagaEngine(
            container=resolved,
            storage=storage if storage is not None else MemorySagaStorage(),
            dispatcher=EventDispatcher(
                event_map if event_map is not None else EventMap(),
                resolved,
                message_broker if message_broker is not None else InMemoryMessageBroker(),
                MiddlewareChain(),
                concurrent=concurrent_event_handle_enable,
                max_concurrent=max_concurrent_event_handlers,
            ),
            middlewares=(
                middlewares
                if isinstance(middlewares, MiddlewareChain)
                else MiddlewareChain(middlewares)
            ),
            compensation_retry_count=compensation_retry_count,
            compensation_retry_delay=compensation_retry_delay,
            compensation_retry_backoff=compensation_retry_backoff,
            compensation_timeout=compensation_timeout,
        )
        self._max_attempts = max_recovery_attempts
        self._lease = recovery_lease
        self._owner = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid4().hex[:8]}"

    @property
    def saga_map(self) -> SagaMap:
        """The saga bindings."""
        return self._map

    @property
    def storage(self) -> SagaStorage:
        """Where saga state lives."""
        return self._engine.storage

    @property
    def message_broker(self) -> MessageBroker:
        """Where the steps' notification events are published."""
        return self._engine.dispatcher.message_broker

    @property
    def worker_id(self) -> str:
        """This mediator's identity as a recovery lease owner."""
        return self._owner

    # -- running ----------------------------------------------------------

    def stream(
        self, context: Any, saga_id: UUID | str | None = None
    ) -> AsyncIterator[SagaStepResult[Any]]:
        """Run the saga bound to ``type(context)``, yielding a
        :class:`SagaStepResult` after each step is persisted and its events
        dispatched.

        With ``saga_id`` of an existing RUNNING saga, the saga resumes from
        its first step not completed, with the stored context copied into
        ``context``; a COMPLETED saga yields nothing.

        Stopping early (``break``, cancellation, a timeout in the consumer)
        leaves the saga RUNNING, resumable with ``stream(context, saga_id)`` or
        :meth:`recover`. A failing step makes the completed steps compensate
        (in reverse order, shielded from cancellation), marks the saga FAILED
        and re-raises the step's error.

        Raises:
            SagaError: no saga is bound to the context's type.
            SagaStateError: ``saga_id`` names a saga that is compensating.
            Exception: the failing step's error, unchanged.
        """
        if saga_id is None:
            return _Forward(self._engine, None, context, self._saga_for)
        return self._engine.forward(functools.partial(self._begin, context, saga_id))

    async def run(
        self, context: Any, saga_id: UUID | str | None = None
    ) -> list[SagaStepResult[Any]]:
        """Run the saga to its end; return every step result (see :meth:`stream`)."""
        return [result async for result in self.stream(context, saga_id)]

    def _saga_for(self, context_type: type) -> type[Saga[Any]]:
        saga = self._map.get(context_type)
        if saga is None:
            raise SagaError(
                f"No saga bound for {context_type.__qualname__}; bind one in a SagaMap "
                "(sagas_mapper)"
            )
        return saga

    async def _begin(self, context: Any, saga_id: UUID | str | None) -> tuple[Run, int] | None:
        saga = self._saga_for(type(context))
        sid = new_saga_id() if saga_id is None else _as_uuid(saga_id)
        snapshot = snapshot_of(context)
        try:
            version = await self._engine.storage.create_saga(
                sid,
                saga.saga_name,
                snapshot,
                status=SagaStatus.RUNNING,
                entries=(record(saga.slots[0].primary.step_name, ACT, STARTED),),
            )
        except SagaAlreadyExistsError:
            if saga_id is None:  # pragma: no cover - uuid4 collision
                raise
            return await self._resume(context, sid, saga)
        return Run(sid, saga, context, version, snapshot), 0

    async def _resume(
        self, context: Any, saga_id: UUID, saga: type[Saga[Any]]
    ) -> tuple[Run, int] | None:
        state = await self._engine.storage.load_saga_state(saga_id)
        if state.saga_name != saga.saga_name:
            raise SagaStateError(f"Saga {saga_id} is a {state.saga_name}, not a {saga.saga_name}")
        if state.status is SagaStatus.COMPLETED:
            return None
        if state.status not in (SagaStatus.PENDING, SagaStatus.RUNNING):
            raise SagaStateError(
                f"Saga {saga_id} is {state.status.value}; only a RUNNING saga can be "
                "resumed by stream() (use recover())"
            )
        restore(context, state.context)
        run = Run(saga_id, saga, context, state.version, state.context)
        start = await rebuild(
            self._engine, run, await self._engine.storage.get_step_history(saga_id)
        )
        return await self._restart(run, start)

    async def _restart(self, run: Run, start: int) -> tuple[Run, int] | None:
        slots = run.saga.slots
        storage = self._engine.storage
        if start >= len(slots):
            run.version = await storage.save(run.saga_id, run.version, status=SagaStatus.COMPLETED)
            run.status = SagaStatus.COMPLETED
            return None
        run.version = await storage.save(
            run.saga_id,
            run.version,
            status=SagaStatus.RUNNING,
            entries=(record(slots[start].primary.step_name, ACT, STARTED, {"resumed": True}),),
        )
        return run, start

    # -- recovery ---------------------------------------------------------

    async def recover(self, saga_id: UUID | str) -> int:
        """Recover one saga: resume a RUNNING (or PENDING) saga from its first
        step not completed, finish compensating a COMPENSATING one; leave
        finished sagas alone. Returns 1 if this call handled the saga, 0 if
        there was nothing to do or another worker holds it.
        """
        claimed = await self._engine.storage.claim(
            owner=self._owner, lease_seconds=self._lease, saga_id=_as_uuid(saga_id)
        )
        for state in claimed:
            await self._recover_claimed(state)
        return len(claimed)

    async def recover_pending(self, limit: int = 100, stale_after: float = 60.0) -> int:
        """Recover up to ``limit`` unfinished sagas not written for
        ``stale_after`` seconds (oldest first). Several workers (processes)
        may call this at once: each saga is claimed by one of them.

        Returns:
            How many sagas this call handled (recovered, failed or given up).
        """
        claimed = await self._engine.storage.claim(
            owner=self._owner,
            lease_seconds=self._lease,
            stale_after=stale_after,
            limit=limit,
        )
        for state in claimed:
            await self._recover_claimed(state)
        return len(claimed)

    async def _recover_claimed(self, state: SagaState) -> None:
        storage = self._engine.storage
        try:
            if state.recovery_attempts > self._max_attempts:
                await self._give_up(state.saga_id, state.version, "too many recovery attempts")
                return
            try:
                await self._recover_state(state)
            except Exception as error:  # noqa: BLE001 - counted as a failed attempt, logged
                logger.error(
                    "saga %s: recovery attempt %d failed: %s",
                    state.saga_id,
                    state.recovery_attempts,
                    describe(error),
                )
                if state.recovery_attempts >= self._max_attempts:
                    current = await storage.load_saga_state(state.saga_id)
                    if not current.status.terminal:
                        await self._give_up(state.saga_id, current.version, describe(error))
        finally:
            with anyio.CancelScope(shield=True):
                await storage.release(state.saga_id, self._owner)

    async def _give_up(self, saga_id: UUID, version: int, reason: str) -> None:
        logger.error(
            "saga %s: giving up after %d recovery attempts (%s); marked FAILED",
            saga_id,
            self._max_attempts,
            reason,
        )
        await self._engine.storage.save(saga_id, version, status=SagaStatus.FAILED)

    async def _recover_state(self, state: SagaState) -> None:
        saga = self._map.by_name(state.saga_name)
        if saga is None:
            raise SagaError(
                f"No saga named {state.saga_name!r} is bound; bind it in the SagaMap to recover it"
            )
        engine = self._engine
        context: Any = from_dict(saga.context_type, state.context)
        run = Run(state.saga_id, saga, context, state.version, state.context)
        run.status = state.status
        start = await rebuild(engine, run, await engine.storage.get_step_history(state.saga_id))
        if state.status is SagaStatus.COMPENSATING:
            await engine.compensate(run)
            return
        try:
            async for _ in engine.forward(functools.partial(self._restart, run, start)):
                pass
        except Exception as error:
            if run.status is not SagaStatus.FAILED:
                raise
            logger.info(
                "saga %s: failed during recovery and was compensated: %s",
                state.saga_id,
                describe(error),
            )
