"""The saga engine: runs steps forward, persists after each, compensates."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any
from uuid import UUID, SafeUUID

import anyio
import attrs

from .._handlers import take_events
from ..container import Container, factory_for, is_sync
from ..errors import EventDispatchError
from ..events._dispatcher import EventDispatcher
from ..middlewares import MiddlewareChain
from ..serialization import converter, from_dict, to_dict
from ._breakers import breaker_allows, breaker_failure, breaker_success
from ._saga import Saga, SagaStepHandler, Slot
from ._types import SagaStatus, SagaStepResult, SagaStepStatus, StepAction, StepRecord
from .storage._protocol import SagaStorage

__all__ = ["Run", "SagaEngine", "describe", "new_saga_id", "record", "restore", "snapshot_of"]

logger = logging.getLogger("anycqrs.saga")

ACT = StepAction.ACT
COMPENSATE = StepAction.COMPENSATE
STARTED = SagaStepStatus.STARTED
COMPLETED = SagaStepStatus.COMPLETED
FAILED = SagaStepStatus.FAILED

Handler = SagaStepHandler[Any, Any]


def record(
    name: str,
    action: StepAction,
    status: SagaStepStatus,
    details: Mapping[str, Any] | None = None,
) -> StepRecord:
    """A step-log entry stamped now."""
    return StepRecord(name, action, status, details, time.time())


def new_saga_id() -> UUID:
    """A random (version 4) UUID, built without ``UUID.__init__``'s checks
    (``uuid.uuid4()`` costs several microseconds, most of a saga's budget)."""
    value = int.from_bytes(os.urandom(16), "big") & _UUID_CLEAR | _UUID_V4
    saga_id = object.__new__(UUID)
    object.__setattr__(saga_id, "int", value)
    object.__setattr__(saga_id, "is_safe", SafeUUID.unknown)
    return saga_id


_UUID_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))
_UUID_V4 = (0x8000 << 48) | (0x4000 << 64)


def snapshot_of(context: Any) -> Any:
    """``to_dict(context)`` through the converter's cached hook for its class."""
    try:
        return converter.get_unstructure_hook(type(context))(context)
    except Exception:  # noqa: BLE001 - the slow path names the problem
        return to_dict(context)


def describe(error: BaseException) -> str:
    """``"Type: message"`` for logs and step details."""
    return f"{type(error).__qualname__}: {error}"


def restore(context: Any, data: Any) -> None:
    """Put ``context`` (in place) back to the persisted ``data``."""
    fresh: Any = from_dict(type(context), data)
    cls = type(context)
    if attrs.has(cls):
        names = [f.name for f in attrs.fields(cls)]
    elif dataclasses.is_dataclass(cls):
        names = [f.name for f in dataclasses.fields(cls)]
    else:  # pragma: no cover - contexts are attrs classes or dataclasses
        names = list(vars(fresh))
    for name in names:
        object.__setattr__(context, name, getattr(fresh, name))


class Run:
    """One execution of a saga (internal): its id, context, version and the
    handlers that acted (to compensate them on the same instances)."""

    __slots__ = ("context", "done", "saga", "saga_id", "snapshot", "status", "version")

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


class _StepFailed(Exception):
    """Internal: ``act`` of ``name`` failed with ``error``."""

    def __init__(self, name: str, error: Exception) -> None:
        self.name = name
        self.error = error


class SagaEngine:
    """Runs sagas against a storage (internal; the public face is SagaMediator)."""

    __slots__ = (
        "_chain",
        "_makers",
        "_sync",
        "compensation_retry_backoff",
        "compensation_retry_count",
        "compensation_retry_delay",
        "compensation_timeout",
        "container",
        "dispatcher",
        "storage",
    )

    def __init__(
        self,
        *,
        container: Container,
        storage: SagaStorage,
        dispatcher: EventDispatcher,
        middlewares: MiddlewareChain,
        compensation_retry_count: int,
        compensation_retry_delay: float,
        compensation_retry_backoff: float,
        compensation_timeout: float,
    ) -> None:
        if compensation_retry_count < 1:
            raise ValueError(
                f"compensation_retry_count must be >= 1, got {compensation_retry_count}"
            )
        self.container = container
        self.storage = storage
        self.dispatcher = dispatcher
        self._chain = middlewares
        self.compensation_retry_count = compensation_retry_count
        self.compensation_retry_delay = compensation_retry_delay
        self.compensation_retry_backoff = compensation_retry_backoff
        self.compensation_timeout = compensation_timeout
        self._sync = is_sync(container)
        self._makers: dict[type, Callable[[], Any]] = {}

    # -- handlers ---------------------------------------------------------

    async def make(self, handler_type: type[Handler], saga_id: UUID) -> Handler:
        """A fresh handler instance bound to ``saga_id``."""
        maker = self._makers.get(handler_type)
        if maker is None:
            maker = self._makers[handler_type] = factory_for(self.container, handler_type)
        handler: Handler = maker() if self._sync else await maker()
        handler._anycqrs_saga_id = saga_id
        return handler

    # -- forward ----------------------------------------------------------

    async def forward(
        self, begin: Callable[[], Awaitable[tuple[Run, int] | None]]
    ) -> AsyncIterator[SagaStepResult[Any]]:
        """Run the steps from the one ``begin`` says (its STARTED entry is
        already logged), yielding a result after each one is persisted.

        Nothing is awaited around the ``yield``: a consumer may stop at any
        result, leaving the saga RUNNING and resumable.
        """
        started = await begin()
        if started is None:
            return
        run, start = started
        slots = run.saga.slots
        count = len(slots)
        storage = self.storage
        saga_id = run.saga_id
        context = run.context
        plain = not len(self._chain)
        makers = self._makers
        sync = self._sync
        save = storage.save
        for index in range(start, count):
            slot = slots[index]
            primary = slot.primary
            maker = makers.get(primary)
            if sync and maker is not None:
                handler = maker()
                handler._anycqrs_saga_id = saga_id
            else:
                handler = await self.make(primary, saga_id)
            try:
                if slot.fallback is not None:
                    handler, response = await self._act_fallback(run, slot, handler)
                elif primary.timeout is None and primary.retry_policy is None:
                    if plain:
                        response = await handler.act(context)
                    else:
                        response = await self._chain.wrap(handler.act)(context)
                else:
                    response = await self._act(run, handler)
            except _StepFailed as failed:
                await self.fail(run, failed.name, failed.error, acted=False)
                raise failed.error from None
            except Exception as error:
                await self.fail(run, primary.step_name, error, acted=False)
                raise
            run.done.append(handler)
            if handler.events:
                events = take_events(handler)
                try:
                    await self.dispatcher.dispatch(events)
                except Exception as error:
                    wrapped = EventDispatchError(
                        response,
                        error.exceptions if isinstance(error, EventDispatchError) else (error,),
                    )
                    await self.fail(run, handler.step_name, wrapped, acted=True)
                    raise wrapped from error
            run.snapshot = snapshot = snapshot_of(context)
            now = time.time()
            if index + 1 < count:
                entries: tuple[StepRecord, ...] = (
                    StepRecord(handler.step_name, ACT, COMPLETED, None, now),
                    StepRecord(slots[index + 1].primary.step_name, ACT, STARTED, None, now),
                )
                status = None
            else:
                entries = (StepRecord(handler.step_name, ACT, COMPLETED, None, now),)
                status = SagaStatus.COMPLETED
            run.version = await save(
                saga_id, run.version, status=status, context=snapshot, entries=entries
            )
            if status is not None:
                run.status = status
            yield SagaStepResult(type(handler), response, saga_id)

    async def _act(self, run: Run, handler: Handler) -> Any:
        """``act`` with the middlewares, the step's timeout and retry policy."""
        step = type(handler)
        act: Callable[[Any], Awaitable[Any]] = handler.act
        if len(self._chain):
            act = self._chain.wrap(act)
        policy = step.retry_policy
        timeout = step.timeout
        attempts = policy.attempts if policy is not None else 1
        delay = policy.delay if policy is not None else 0.0
        attempt = 1
        while True:
            try:
                if timeout is None:
                    return await act(run.context)
                with anyio.fail_after(timeout):
                    return await act(run.context)
            except Exception as error:
                if policy is None or attempt >= attempts or not isinstance(error, policy.retry_on):
                    raise
                logger.warning(
                    "saga %s: %s act attempt %d/%d failed: %s",
                    run.saga_id,
                    step.step_name,
                    attempt,
                    attempts,
                    describe(error),
                )
            restore(run.context, run.snapshot)
            take_events(handler)
            await anyio.sleep(delay)
            delay *= policy.backoff
            attempt += 1

    async def _act_fallback(self, run: Run, slot: Slot, handler: Handler) -> tuple[Handler, Any]:
        fallback = slot.fallback
        assert fallback is not None
        breaker = fallback.circuit_breaker
        name = handler.step_name
        if breaker is None or await breaker_allows(breaker, slot.primary):
            try:
                response = await self._act(run, handler)
            except Exception as error:
                if breaker is not None:
                    await breaker_failure(breaker, slot.primary, error)
                if fallback.failure_exceptions and not isinstance(
                    error, fallback.failure_exceptions
                ):
                    raise _StepFailed(name, error) from error
                details: dict[str, Any] = {"error": describe(error), "fallback": True}
            else:
                if breaker is not None:
                    await breaker_success(breaker, slot.primary)
                return handler, response
        else:
            details = {"error": "circuit breaker open", "fallback": True}
        take_events(handler)
        restore(run.context, run.snapshot)
        other = fallback.fallback
        run.version = await self.storage.save(
            run.saga_id,
            run.version,
            entries=(record(name, ACT, FAILED, details), record(other.step_name, ACT, STARTED)),
        )
        replacement = await self.make(other, run.saga_id)
        try:
            return replacement, await self._act(run, replacement)
        except Exception as error:
            raise _StepFailed(other.step_name, error) from error

    # -- failure and compensation ---------------------------------------

    async def fail(self, run: Run, name: str, error: Exception, *, acted: bool) -> None:
        """Log the failed step, then compensate every step that acted
        (shielded from cancellation). ``acted``: the failing step's ``act``
        succeeded (its events failed), so it is compensated too."""
        details: dict[str, Any] = {"error": describe(error)}
        if acted:
            details["stage"] = "events"
            run.snapshot = snapshot_of(run.context)
        else:
            restore(run.context, run.snapshot)
        logger.info("saga %s: step %s failed: %s", run.saga_id, name, details["error"])
        await self.compensate(
            run,
            (record(name, ACT, FAILED, details),),
            context=run.snapshot if acted else None,
        )

    async def compensate(
        self,
        run: Run,
        entries: Sequence[StepRecord] = (),
        *,
        context: Any = None,
    ) -> None:
        """Compensate ``run.done`` in reverse order, each with retries, then
        mark the saga FAILED.

        Runs in a cancel scope shielded from the caller's cancellation, with
        its own deadline (``compensation_timeout`` for the whole phase). If
        the deadline passes, the saga stays COMPENSATING for recovery to finish.
        """
        pending = list(reversed(run.done))
        run.done = []
        deadline = anyio.current_time() + self.compensation_timeout
        with anyio.CancelScope(shield=True, deadline=deadline) as scope:
            await self._compensate_all(run, pending, entries, context)
        if scope.cancelled_caught:
            logger.error(
                "saga %s: compensation did not finish within %s s; the saga stays "
                "COMPENSATING and recovery will finish it",
                run.saga_id,
                self.compensation_timeout,
            )

    async def _compensate_all(
        self,
        run: Run,
        pending: list[Handler],
        entries: Sequence[StepRecord],
        context: Any,
    ) -> None:
        storage = self.storage
        first: tuple[StepRecord, ...] = tuple(entries)
        if pending:
            first += (record(pending[0].step_name, COMPENSATE, STARTED),)
        run.version = await storage.save(
            run.saga_id,
            run.version,
            status=SagaStatus.COMPENSATING if pending else SagaStatus.FAILED,
            context=context,
            entries=first,
        )
        run.status = SagaStatus.COMPENSATING
        for position, handler in enumerate(pending):
            ok, details = await self._compensate_one(run, handler)
            done = record(handler.step_name, COMPENSATE, COMPLETED if ok else FAILED, details)
            if position + 1 < len(pending):
                following = pending[position + 1].step_name
                batch: tuple[StepRecord, ...] = (done, record(following, COMPENSATE, STARTED))
                status = None
            else:
                batch = (done,)
                status = SagaStatus.FAILED
            run.version = await storage.save(run.saga_id, run.version, status=status, entries=batch)
        run.status = SagaStatus.FAILED

    async def _compensate_one(self, run: Run, handler: Handler) -> tuple[bool, dict[str, Any]]:
        delay = self.compensation_retry_delay
        count = self.compensation_retry_count
        error: Exception | None = None
        for attempt in range(1, count + 1):
            timeout = handler.timeout
            try:
                if timeout is None:
                    await handler.compensate(run.context)
                else:
                    with anyio.fail_after(timeout):
                        await handler.compensate(run.context)
            except Exception as exc:  # noqa: BLE001 - logged, retried, recorded FAILED
                error = exc
                take_events(handler)
                logger.warning(
                    "saga %s: compensation of %s, attempt %d/%d failed: %s",
                    run.saga_id,
                    handler.step_name,
                    attempt,
                    count,
                    describe(exc),
                )
                if attempt < count:
                    await anyio.sleep(delay)
                    delay *= self.compensation_retry_backoff
                continue
            if handler.events:
                try:
                    await self.dispatcher.dispatch(take_events(handler))
                except Exception as exc:  # noqa: BLE001 - compensation stands; logged
                    logger.error(
                        "saga %s: events of the compensation of %s failed: %s",
                        run.saga_id,
                        handler.step_name,
                        describe(exc),
                    )
            return True, {"attempts": attempt}
        assert error is not None
        logger.error(
            "saga %s: compensation of %s failed after %d attempts: %s",
            run.saga_id,
            handler.step_name,
            count,
            describe(error),
        )
        return False, {"attempts": count, "error": describe(error)}
