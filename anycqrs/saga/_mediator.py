"""`SagaMediator`: runs sagas, streams their step results, recovers them."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Iterable
from typing import Any
from uuid import UUID, uuid4

from .. import _defaults
from .._retry import RetryPolicy
from ..brokers import InMemoryMessageBroker, MessageBroker
from ..container import as_container
from ..errors import SagaError
from ..events._dispatcher import EventDispatcher
from ..events._map import EventMap
from ..middlewares import Middleware, MiddlewareChain
from ..observability import _tracing
from ..observability._state_metrics import SagaMetrics
from ._compensation import Compensator, compensation_policy
from ._forward import NEW, Engine, Forward, new_forward
from ._map import SagaMap
from ._observed import TracedForward
from ._recovery import Recovery
from ._run import Journal, Run
from ._snapshot import Snapshots
from ._start import Starter
from ._steps import Steps
from ._types import SagaStepResult
from .storage._memory import MemorySagaStorage
from .storage._protocol import SagaStorage

__all__ = [
    "COMPENSATION_TIMEOUT",
    "MAX_RECOVERY_ATTEMPTS",
    "RECOVERY_LEASE",
    "SagaMediator",
]

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

    Build one with `anycqrs.saga.bootstrap.bootstrap`. The mediator is a thin
    façade: it wires the engine's parts (`Steps`, `Compensator`, `Starter`,
    `Recovery`, the `Forward` iterator, over one `Journal` and one
    `Snapshots`) and hands each call to them.

    Middlewares wrap each step's `act` (the message is the context). Each
    step's events are dispatched (domain events to their handlers,
    notification events also to the broker) before its result is yielded.

    Compensations are retried under one `RetryPolicy`: `compensation_retry`
    when given, else one built from `compensation_retry_count` (attempts,
    default 3), `compensation_retry_delay` (first delay, default 0.5 s) and
    `compensation_retry_backoff` (multiplier, default 2.0), without a
    maximum delay. Giving `compensation_retry` and any of the three is a
    `ValueError`. A saga whose compensation fails all its retries ends
    `COMPENSATION_FAILED`; `recover_pending` retries its compensations
    (unless `retry_failed_compensations=False`) until it has been claimed
    `max_recovery_attempts` times.

    `meter_provider` (default: the global OpenTelemetry one, read here)
    receives the saga metrics: status changes, step durations, recoveries
    and recovery attempts (see docs/metrics.md).

    Example:
        ```python
        mediator = anycqrs.saga.bootstrap.bootstrap(
            sagas_mapper=lambda sagas: sagas.bind(OrderContext, OrderSaga),
            saga_storage=SqliteSagaStorage("sagas.db"),
        )
        async for result in mediator.stream(OrderContext(order_id=1)):
            print(result.step_type.__name__, result.response)
        await mediator.recover_pending(limit=100, stale_after=60)
        ```
    """

    __slots__ = (
        "_dispatcher",
        "_engine",
        "_journal",
        "_map",
        "_recovery",
        "_starter",
        "_tracer",
    )

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
        compensation_retry_count: int | None = None,
        compensation_retry_delay: float | None = None,
        compensation_retry_backoff: float | None = None,
        compensation_retry: RetryPolicy | None = None,
        compensation_timeout: float = COMPENSATION_TIMEOUT,
        max_recovery_attempts: int = MAX_RECOVERY_ATTEMPTS,
        recovery_lease: float = RECOVERY_LEASE,
        retry_failed_compensations: bool = True,
        worker_id: str | None = None,
        meter_provider: Any = None,
        tracer_provider: Any = None,
    ) -> None:
        self._tracer = tracer = _tracing.tracer(tracer_provider)
        policy = compensation_policy(
            compensation_retry_count,
            compensation_retry_delay,
            compensation_retry_backoff,
            compensation_retry,
        )
        resolved = as_container(container)
        self._map = saga_map
        snapshots = Snapshots()
        self._journal = journal = Journal(
            storage if storage is not None else MemorySagaStorage(),
            SagaMetrics.create(meter_provider),
        )
        self._dispatcher = dispatcher = EventDispatcher(
            event_map if event_map is not None else EventMap(),
            resolved,
            message_broker if message_broker is not None else InMemoryMessageBroker(),
            MiddlewareChain(),
            concurrent=concurrent_event_handle_enable,
            max_concurrent=max_concurrent_event_handlers,
            tracer=tracer,
        )
        steps = Steps(
            container=resolved,
            middlewares=(
                middlewares
                if isinstance(middlewares, MiddlewareChain)
                else MiddlewareChain(middlewares)
            ),
            snapshots=snapshots,
            journal=journal,
        )
        compensator = Compensator(
            journal=journal,
            snapshots=snapshots,
            dispatcher=dispatcher,
            policy=policy,
            timeout=compensation_timeout,
            scope=steps.endpoints.scope,
            make=steps.make,
            tracer=tracer,
        )
        self._starter = starter = Starter(
            saga_map=saga_map, journal=journal, snapshots=snapshots, steps=steps
        )
        # what every forward iterator is given (see `Forward`)
        self._engine = Engine(
            steps, compensator, journal, snapshots, dispatcher, starter.begin, starter.known
        )
        self._recovery = Recovery(
            journal=journal,
            starter=starter,
            snapshots=snapshots,
            compensator=compensator,
            resume=self._resume,
            owner=worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid4().hex[:8]}",
            lease=recovery_lease,
            max_attempts=max_recovery_attempts,
            retry_compensations=retry_failed_compensations,
        )

    @property
    def saga_map(self) -> SagaMap:
        """The saga bindings."""
        return self._map

    @property
    def storage(self) -> SagaStorage:
        """Where saga state lives."""
        return self._journal.storage

    @property
    def message_broker(self) -> MessageBroker:
        """Where the steps' notification events are published."""
        return self._dispatcher.message_broker

    @property
    def worker_id(self) -> str:
        """This mediator's identity as a recovery lease owner."""
        return self._recovery.owner

    # -- running ----------------------------------------------------------

    def stream(
        self, context: Any, saga_id: UUID | str | None = None
    ) -> AsyncIterator[SagaStepResult[Any]]:
        """Run the saga bound to `type(context)`, yielding a `SagaStepResult`
        after each step is persisted and its events dispatched.

        With `saga_id` of an existing RUNNING saga, the saga resumes from its
        first step not completed, with the stored context copied into
        `context`; a finished saga (COMPLETED, FAILED or COMPENSATION_FAILED)
        yields nothing and runs nothing, so a redelivered start is harmless.

        Stopping early (`break`, cancellation, a timeout in the consumer)
        leaves the saga RUNNING, resumable with `stream(context, saga_id)` or
        `recover`. A failing step makes the completed steps compensate (in
        reverse order, shielded from cancellation), marks the saga FAILED
        (COMPENSATION_FAILED when a compensation failed all its retries) and
        re-raises the step's error.

        Raises:
            SagaError: no saga is bound to the context's type.
            SagaStateError: `saga_id` names a saga that is compensating, or
                a saga of another class.
            Exception: the failing step's error, unchanged.
        """
        # Forward(self._engine, context, saga_id), inline (see new_forward)
        forward = new_forward()
        forward._engine = self._engine
        forward._context = context
        forward._saga_id = None if saga_id is None else _as_uuid(saga_id)
        forward._run = None
        forward._index = 0
        forward._state = NEW
        if self._tracer is None:
            return forward
        try:
            name = self._starter.saga_for(type(context)).saga_name
        except SagaError:  # raised by the first step, as without tracing
            name = type(context).__qualname__
        return TracedForward(forward, self._tracer, name)

    async def run(
        self, context: Any, saga_id: UUID | str | None = None
    ) -> list[SagaStepResult[Any]]:
        """Run the saga to its end; return every step result (see `stream`)."""
        return [result async for result in self.stream(context, saga_id)]

    def _resume(self, run: Run, index: int) -> AsyncIterator[SagaStepResult[Any]]:
        forward = Forward(self._engine, run=run, index=index)
        if self._tracer is None:
            return forward
        return TracedForward(forward, self._tracer, run.saga.saga_name, run.origin or {})

    # -- recovery ---------------------------------------------------------

    async def recover(self, saga_id: UUID | str) -> int:
        """Recover one saga: resume a RUNNING (or PENDING) saga from its first
        step not completed, finish compensating a COMPENSATING one, retry the
        failed compensations of a COMPENSATION_FAILED one (whatever its
        recovery attempts: the operator's retry once the cause is fixed);
        leave finished sagas alone. Returns 1 if this call handled the saga,
        0 if there was nothing to do, another worker holds it, or its saga is
        not bound in this mediator's `SagaMap` (then it is left untouched).
        """
        return await self._recovery.recover(_as_uuid(saga_id))

    async def recover_pending(self, limit: int = 100, stale_after: float = 60.0) -> int:
        """Recover up to `limit` unfinished sagas not written for
        `stale_after` seconds (oldest first). Several workers (processes)
        may call this at once: each saga is claimed by one of them. Only
        sagas bound in this mediator's `SagaMap` are claimed (others are
        left untouched, no attempt counted); COMPENSATION_FAILED sagas are
        retried while claimed fewer than `max_recovery_attempts` times
        (unless `retry_failed_compensations=False`).

        Returns:
            How many sagas this call handled (recovered, failed or given up).
        """
        return await self._recovery.recover_pending(limit, stale_after)
