"""The saga engine: runs steps forward, persists after each, compensates."""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, cast
from uuid import UUID, SafeUUID

import anyio
import attrs

from .._handlers import keeps_events_list, take_events
from ..container import Container, factory_for, is_sync
from ..errors import EventDispatchError
from ..events._dispatcher import EventDispatcher
from ..middlewares import Middleware, MiddlewareChain
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
RUNNING = SagaStatus.RUNNING

Handler = SagaStepHandler[Any, Any]
_SaveNow = Callable[
    [UUID, int, "SagaStatus | None", "Mapping[str, Any] | None", Sequence[StepRecord], float], int
]
_CreateNow = Callable[[UUID, str, Mapping[str, Any], SagaStatus, Sequence[StepRecord], float], int]


_record = cast(
    "Callable[[tuple[str, StepAction, SagaStepStatus, Any, float]], StepRecord]",
    functools.partial(tuple.__new__, StepRecord),
)
"""A :class:`StepRecord` from a tuple of its fields, built in C (the
namedtuple's own ``__new__`` is a Python function)."""

# SagaStepResult(step_type, response, saga_id) without its Python-level
# __init__ (frozen attrs, slots, no validators): the hot path sets the three
# slots directly.
_new_result = functools.partial(object.__new__, SagaStepResult)
_set_step_type = SagaStepResult.__dict__["step_type"].__set__
_set_response = SagaStepResult.__dict__["response"].__set__
_set_saga_id = SagaStepResult.__dict__["saga_id"].__set__


def record(
    name: str,
    action: StepAction,
    status: SagaStepStatus,
    details: Mapping[str, Any] | None = None,
) -> StepRecord:
    """A step-log entry stamped now."""
    return _record((name, action, status, details, time.time()))


def new_saga_id() -> UUID:
    """A random (version 4) UUID, built without ``UUID.__init__``'s checks
    (``uuid.uuid4()`` costs several microseconds, most of a saga's budget)."""
    value = int.from_bytes(os.urandom(16), "big") & _UUID_CLEAR | _UUID_V4
    saga_id = object.__new__(UUID)
    object.__setattr__(saga_id, "int", value)
    object.__setattr__(saga_id, "is_safe", _UNKNOWN)
    return saga_id


_UNKNOWN = SafeUUID.unknown  # an enum.property lookup on every access otherwise


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
    for name in _field_names(type(context)) or tuple(vars(fresh)):
        object.__setattr__(context, name, getattr(fresh, name))


def _field_names(cls: type) -> tuple[str, ...]:
    """The fields of an attrs class or a dataclass (``()`` for anything else)."""
    if attrs.has(cls):
        return tuple(f.name for f in attrs.fields(cls))
    if dataclasses.is_dataclass(cls):
        return tuple(f.name for f in dataclasses.fields(cls))
    return ()  # pragma: no cover - contexts are attrs classes or dataclasses


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


class _Step:
    """One slot of a saga, prepared for running (internal)."""

    __slots__ = ("maker", "name", "plain", "primary", "slot")

    def __init__(
        self,
        slot: Slot,
        primary: type[Handler],
        name: str,
        maker: Callable[[], Any],
        plain: bool,
    ) -> None:
        self.slot = slot
        self.primary = primary
        self.name = name
        self.maker = maker
        # no fallback, no timeout, no retry policy, and the stock ``events``
        # property (so the events list can be read directly)
        self.plain = plain


def unstructure_hook(context_type: type) -> Callable[[Any], Any]:
    """The converter's unstructure hook for ``context_type`` (``to_dict`` if
    the converter cannot say)."""
    try:
        return converter.get_unstructure_hook(context_type)
    except Exception:  # noqa: BLE001 - to_dict names the problem when called
        return to_dict


_NEW, _READY, _BUSY, _DONE = 0, 1, 2, 3


class _Endpoint:
    """The innermost link of a run's middleware chain: the current step's
    ``act`` (internal). It holds no reference back to the run's iterator,
    so a finished run is freed at once, not by the cycle collector."""

    __slots__ = ("handler",)

    def __init__(self) -> None:
        self.handler: Any = None

    def __call__(self, context: Any) -> Awaitable[Any]:
        return self.handler.act(context)  # type: ignore[no-any-return]


class _Forward:
    """What :meth:`SagaEngine.forward` returns: an async iterator running one
    step per ``__anext__`` (internal).

    Not an async generator: no per-run generator hooks, nothing to finalize
    when a consumer stops early (the saga simply stays RUNNING), and nothing
    ever awaits between a step's result and the consumer.
    """

    __slots__ = (
        "_begin",
        "_cell",
        "_chained",
        "_context",
        "_dump",
        "_engine",
        "_index",
        "_plan",
        "_run",
        "_saga_for",
        "_state",
    )

    def __init__(
        self,
        engine: SagaEngine,
        begin: Callable[[], Awaitable[tuple[Run, int] | None]] | None,
        context: Any = None,
        saga_for: Callable[[type], type[Saga[Any]]] | None = None,
    ) -> None:
        self._engine = engine
        self._begin = begin  # None: a new saga of ``saga_for(type(context))``
        self._context = context
        self._saga_for = saga_for
        self._state = _NEW
        self._run: Run | None = None
        self._index = 0
        self._plan: tuple[_Step, ...] = ()
        self._cell: _Endpoint | None = None
        self._chained: Callable[[Any], Awaitable[Any]] | None = None
        self._dump: Callable[[Any], Any] = to_dict

    def __aiter__(self) -> _Forward:
        return self

    async def aclose(self) -> None:
        """Stop iterating; an unfinished saga stays RUNNING (resumable)."""
        if self._state == _BUSY:
            raise RuntimeError("aclose(): the saga stream is running a step")
        self._state = _DONE

    async def _create(self) -> Run:
        """Store a new saga (RUNNING, its first step STARTED)."""
        context = self._context
        assert self._saga_for is not None
        saga = self._saga_for(type(context))
        self._dump = dump = unstructure_hook(type(context))
        try:
            snapshot = dump(context)
        except Exception:  # noqa: BLE001 - the slow path names the problem
            snapshot = to_dict(context)
        saga_id = new_saga_id()
        now = time.time()
        entries = (_record((saga.slots[0].primary.step_name, ACT, STARTED, None, now)),)
        engine = self._engine
        create_now = engine._create_now
        if create_now is None:
            version = await engine.storage.create_saga(
                saga_id, saga.saga_name, snapshot, status=RUNNING, entries=entries
            )
        else:
            version = create_now(saga_id, saga.saga_name, snapshot, RUNNING, entries, now)
        self._context = None
        return Run(saga_id, saga, context, version, snapshot)

    async def __anext__(self) -> SagaStepResult[Any]:
        state = self._state
        if state != _READY:
            if state == _DONE:
                raise StopAsyncIteration
            if state == _BUSY:
                raise RuntimeError("anext(): the saga stream is already running a step")
        self._state = _BUSY
        try:
            run = self._run
            engine = self._engine
            if run is None:
                begin = self._begin
                if begin is None:
                    run = await self._create()
                else:
                    started = await begin()
                    if started is None:
                        raise StopAsyncIteration
                    run, self._index = started
                    self._dump = unstructure_hook(type(run.context))
                self._run = run
                self._plan = engine.plan(run.saga)
                if engine._inner is not None:
                    self._cell = cell = _Endpoint()
                    self._chained = engine._inner.wrap(cell)
            plan = self._plan
            index = self._index
            count = len(plan)
            if index >= count:
                raise StopAsyncIteration
            step = plan[index]
            saga_id = run.saga_id
            context = run.context
            handler: Handler = step.maker() if engine._sync else await step.maker()
            handler._anycqrs_saga_id = saga_id
            try:
                if step.plain:
                    # the middleware chain, its outermost link called directly:
                    # outer(context, inner links around act)
                    outer = engine._outer
                    if outer is None:
                        response = await handler.act(context)
                    elif self._chained is None:
                        response = await outer(context, handler.act)
                    else:
                        endpoint = self._cell
                        assert endpoint is not None
                        endpoint.handler = handler
                        response = await outer(context, self._chained)
                elif step.slot.fallback is not None:
                    handler, response = await engine._act_fallback(run, step.slot, handler)
                else:
                    response = await engine._act(run, handler)
            except _StepFailed as failure:
                logged, saved = engine.failed(run, failure.name, failure.error, acted=False)
                await engine.compensate(run, logged, context=saved)
                raise failure.error from None
            except Exception as error:
                logged, saved = engine.failed(run, step.name, error, acted=False)
                await engine.compensate(run, logged, context=saved)
                raise
            run.done.append(handler)
            events = handler._anycqrs_events if step.plain else handler.events
            if events:
                events = take_events(handler)
                try:
                    await engine.dispatcher.dispatch(events)
                except Exception as error:
                    wrapped = EventDispatchError(
                        response,
                        error.exceptions if isinstance(error, EventDispatchError) else (error,),
                    )
                    await engine.fail(run, handler.step_name, wrapped, acted=True)
                    raise wrapped from error
            try:
                snapshot = self._dump(context)
            except Exception:  # noqa: BLE001 - the slow path names the problem
                snapshot = to_dict(context)
            run.snapshot = snapshot
            now = time.time()
            name = handler.step_name
            if index + 1 < count:
                entries: tuple[StepRecord, ...] = (
                    _record((name, ACT, COMPLETED, None, now)),
                    _record((plan[index + 1].name, ACT, STARTED, None, now)),
                )
                status = None
            else:
                entries = (_record((name, ACT, COMPLETED, None, now)),)
                status = SagaStatus.COMPLETED
            save_now = engine._save_now
            if save_now is None:
                run.version = await engine.storage.save(
                    saga_id, run.version, status=status, context=snapshot, entries=entries
                )
            else:
                run.version = save_now(saga_id, run.version, status, snapshot, entries, now)
        except BaseException:
            self._state = _DONE
            raise
        if status is None:
            self._index = index + 1
            self._state = _READY
        else:
            run.status = status
            self._state = _DONE
        result = _new_result()
        _set_step_type(result, type(handler))
        _set_response(result, response)
        _set_saga_id(result, saga_id)
        return result


class SagaEngine:
    """Runs sagas against a storage (internal; the public face is SagaMediator)."""

    __slots__ = (
        "_chain",
        "_create_now",
        "_inner",
        "_makers",
        "_outer",
        "_plans",
        "_restorers",
        "_save_now",
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
        links = tuple(middlewares)
        # The outermost middleware and the chain inside it: the hot path calls
        # ``outer(context, inner_chain_around_act)``, which is what
        # ``middlewares.wrap(act)(context)`` does, minus one closure call.
        self._outer: Middleware | None = links[0] if links else None
        self._inner = MiddlewareChain(links[1:]) if len(links) > 1 else None
        self.compensation_retry_count = compensation_retry_count
        self.compensation_retry_delay = compensation_retry_delay
        self.compensation_retry_backoff = compensation_retry_backoff
        self.compensation_timeout = compensation_timeout
        self._sync = is_sync(container)
        self._makers: dict[type, Callable[[], Any]] = {}
        self._plans: dict[type, tuple[_Step, ...]] = {}
        self._restorers: dict[type, tuple[Callable[[Any, Any], Any], tuple[str, ...]]] = {}
        # A storage that never awaits may offer synchronous writers (same
        # effect, no coroutine per write); see MemorySagaStorage.
        self._create_now: _CreateNow | None = None
        self._save_now: _SaveNow | None = None
        writers = getattr(storage, "synchronous_writers", None)
        if writers is not None:
            self._create_now, self._save_now = writers()

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

    def plan(self, saga: type[Saga[Any]]) -> tuple[_Step, ...]:
        """The saga's steps, prepared once per saga class: handler factory,
        step name, whether the plain fast path applies."""
        plan = self._plans.get(saga)
        if plan is None:
            steps: list[_Step] = []
            for slot in saga.slots:
                primary = slot.primary
                maker = self._makers.get(primary)
                if maker is None:
                    maker = self._makers[primary] = factory_for(self.container, primary)
                plain = (
                    slot.fallback is None
                    and primary.timeout is None
                    and primary.retry_policy is None
                    and keeps_events_list(primary)
                )
                steps.append(_Step(slot, primary, primary.step_name, maker, plain))
            plan = self._plans[saga] = tuple(steps)
        return plan

    def forward(
        self, begin: Callable[[], Awaitable[tuple[Run, int] | None]]
    ) -> AsyncIterator[SagaStepResult[Any]]:
        """Run the steps from the one ``begin`` says (its STARTED entry is
        already logged), yielding a result after each one is persisted.

        Nothing is awaited between a result and the consumer: a consumer may
        stop at any result, leaving the saga RUNNING and resumable.
        """
        return _Forward(self, begin)

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
            self.restore(run.context, run.snapshot)
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
        self.restore(run.context, run.snapshot)
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

    def failed(
        self, run: Run, name: str, error: Exception, *, acted: bool
    ) -> tuple[tuple[StepRecord, ...], Any]:
        """Log the failed step and get its compensation ready: returns the
        log entries and the context (``None``: unchanged) that
        :meth:`compensate` writes first. ``acted``: the failing step's
        ``act`` succeeded (its events failed), so it is compensated too and
        the context it left is persisted; otherwise the context is put back
        to its state before the step."""
        details: dict[str, Any] = {"error": describe(error)}
        if acted:
            details["stage"] = "events"
            run.snapshot = snapshot_of(run.context)
        else:
            self.restore(run.context, run.snapshot)
        logger.info("saga %s: step %s failed: %s", run.saga_id, name, details["error"])
        entry = _record((name, ACT, FAILED, details, time.time()))
        return (entry,), run.snapshot if acted else None

    async def fail(self, run: Run, name: str, error: Exception, *, acted: bool) -> None:
        """Log the failed step, then compensate every step that acted
        (shielded from cancellation); see :meth:`failed`."""
        entries, context = self.failed(run, name, error, acted=acted)
        await self.compensate(run, entries, context=context)

    def restore(self, context: Any, data: Any) -> None:
        """Put ``context`` (in place) back to the persisted ``data``."""
        cls = type(context)
        cached = self._restorers.get(cls)
        if cached is None:
            cached = self._restorers[cls] = (converter.get_structure_hook(cls), _field_names(cls))
        hook, names = cached
        try:
            fresh = hook(data, cls)
        except Exception:  # noqa: BLE001 - from_dict raises the descriptive error
            fresh = from_dict(cls, data)
        for name in names:
            object.__setattr__(context, name, getattr(fresh, name))

    async def compensate(
        self,
        run: Run,
        entries: Sequence[StepRecord] = (),
        *,
        context: Any = None,
    ) -> None:
        """Compensate ``run.done`` in reverse order, each with retries, then
        mark the saga FAILED. ``entries`` and ``context`` go with the first
        write (status COMPENSATING).

        Runs in a cancel scope shielded from the caller's cancellation, with
        its own deadline (``compensation_timeout`` for the whole phase). If
        the deadline passes, the saga stays COMPENSATING for recovery to finish.
        """
        pending = run.done[::-1]
        run.done = []
        saga_id = run.saga_id
        storage = self.storage
        save_now = self._save_now
        with anyio.move_on_after(self.compensation_timeout, shield=True) as scope:
            now = time.time()
            first: tuple[StepRecord, ...] = tuple(entries)
            if pending:
                first += (_record((pending[0].step_name, COMPENSATE, STARTED, None, now)),)
                status: SagaStatus | None = SagaStatus.COMPENSATING
            else:
                status = SagaStatus.FAILED
            if save_now is None:
                run.version = await storage.save(
                    saga_id, run.version, status=status, context=context, entries=first
                )
            else:
                run.version = save_now(saga_id, run.version, status, context, first, now)
            run.status = SagaStatus.COMPENSATING
            last = len(pending) - 1
            target = run.context
            for position, handler in enumerate(pending):
                # the common case inline: no timeout, the first attempt succeeds
                if handler.timeout is None:
                    try:
                        await handler.compensate(target)
                    except Exception as error:  # noqa: BLE001 - retried, logged, recorded
                        ok, details = await self._compensate_one(run, handler, error)
                    else:
                        ok, details = True, {"attempts": 1}
                        if handler.events:
                            await self._compensation_events(run, handler)
                else:
                    ok, details = await self._compensate_one(run, handler, None)
                now = time.time()
                done = _record(
                    (handler.step_name, COMPENSATE, COMPLETED if ok else FAILED, details, now)
                )
                if position < last:
                    following = pending[position + 1].step_name
                    batch: tuple[StepRecord, ...] = (
                        done,
                        _record((following, COMPENSATE, STARTED, None, now)),
                    )
                    status = None
                else:
                    batch = (done,)
                    status = SagaStatus.FAILED
                if save_now is None:
                    run.version = await storage.save(
                        saga_id, run.version, status=status, entries=batch
                    )
                else:
                    run.version = save_now(saga_id, run.version, status, None, batch, now)
            run.status = SagaStatus.FAILED
        if scope.cancelled_caught:
            logger.error(
                "saga %s: compensation did not finish within %s s; the saga stays "
                "COMPENSATING and recovery will finish it",
                run.saga_id,
                self.compensation_timeout,
            )

    async def _compensate_one(
        self, run: Run, handler: Handler, failed: Exception | None
    ) -> tuple[bool, dict[str, Any]]:
        """Compensate ``handler`` with retries (``failed``: its first attempt
        already failed with this error)."""
        delay = self.compensation_retry_delay
        count = self.compensation_retry_count
        error = failed
        attempt = 1
        while True:
            if error is None:
                timeout = handler.timeout
                try:
                    if timeout is None:
                        await handler.compensate(run.context)
                    else:
                        with anyio.fail_after(timeout):
                            await handler.compensate(run.context)
                except Exception as exc:  # noqa: BLE001 - logged, retried, recorded FAILED
                    error = exc
                else:
                    if handler.events:
                        await self._compensation_events(run, handler)
                    return True, {"attempts": attempt}
            take_events(handler)
            logger.warning(
                "saga %s: compensation of %s, attempt %d/%d failed: %s",
                run.saga_id,
                handler.step_name,
                attempt,
                count,
                describe(error),
            )
            if attempt >= count:
                break
            await anyio.sleep(delay)
            delay *= self.compensation_retry_backoff
            attempt += 1
            error = None
        logger.error(
            "saga %s: compensation of %s failed after %d attempts: %s",
            run.saga_id,
            handler.step_name,
            count,
            describe(error),
        )
        return False, {"attempts": count, "error": describe(error)}

    async def _compensation_events(self, run: Run, handler: Handler) -> None:
        """Dispatch the events a compensation emitted (a failure is logged:
        the compensation stands)."""
        try:
            await self.dispatcher.dispatch(take_events(handler))
        except Exception as exc:  # noqa: BLE001 - compensation stands; logged
            logger.error(
                "saga %s: events of the compensation of %s failed: %s",
                run.saga_id,
                handler.step_name,
                describe(exc),
            )
