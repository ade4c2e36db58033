"""Forward iteration: a saga run one step per `__anext__`, persisted after each."""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast
from uuid import UUID

import anyio

from .._handlers import take_events
from ..errors import EventDispatchError
from ..events._dispatcher import EventDispatcher
from ..observability._context import _CURRENT
from ._compensation import Compensator
from ._log import (
    ACT,
    COMPLETED,
    SAGA_COMPLETED,
    STARTED,
    Entry,
    new_result,
    set_response,
    set_saga_id,
    set_step_type,
)
from ._run import Handler, Journal, Run
from ._snapshot import Dump, Snapshots
from ._start import Known
from ._steps import Step, StepFailed, Steps
from ._types import SagaStepResult

__all__ = ["NEW", "Engine", "Forward", "Start", "new_forward"]

Start = Callable[[Any, "UUID | None"], "Run | Awaitable[tuple[Run, int] | None]"]
"""Creates (or resumes) the run of a context (`Starter.begin`): the run of a
new saga (its first step to run), or an awaitable of `(run, index of the
step to run)`, or of `None` when there is nothing left to run."""

_NEW, _READY, _BUSY, _DONE = 0, 1, 2, 3
_set_current, _reset_current, _now = _CURRENT.set, _CURRENT.reset, time.time
"""Bound once: a method (or module attribute) lookup fewer per call, 3-4 per step."""
NEW = _NEW
"""The state of a `Forward` that has not run a step yet (see `new_forward`)."""


class Engine:
    """What every forward iterator of one mediator shares: the `steps`
    (their endpoints and `act`), the `compensator`, the `journal`, the
    `snapshots`, the `dispatcher` of the steps' events and `start` (see
    `Start`); `known`: `Starter.known`. Built once per mediator: a
    `Forward` holds one reference."""

    __slots__ = (
        "compensator",
        "dispatcher",
        "journal",
        "known",
        "save",
        "snapshots",
        "start",
        "steps",
    )

    def __init__(  # noqa: PLR0917 - built once, in one place
        self,
        steps: Steps,
        compensator: Compensator,
        journal: Journal,
        snapshots: Snapshots,
        dispatcher: EventDispatcher,
        start: Start,
        known: dict[type, Known],
    ) -> None:
        self.steps = steps
        self.compensator = compensator
        self.journal = journal
        self.save = journal.save  # (fixed once the journal is built)
        self.snapshots = snapshots
        self.dispatcher = dispatcher
        self.start = start
        self.known = known


class Forward:
    """An async iterator running one step per `__anext__` and yielding its
    `SagaStepResult` once the step is persisted and its events dispatched.

    It starts from `engine.start(context, saga_id)` (the one create-or-resume
    path), or from a `run` already positioned at `index` (recovery); the
    `engine` holds its collaborators.

    Not an async generator: no per-run generator hooks, nothing to finalize
    when a consumer stops early (the saga simply stays RUNNING), and nothing
    is awaited between a step's result and the consumer.
    """

    __slots__ = (
        "_context",
        "_dump",
        "_engine",
        "_index",
        "_plan",
        "_run",
        "_saga_id",
        "_state",
    )

    # set by the first step (a per-saga store fewer for each one here)
    _plan: tuple[Step, ...]
    _dump: Dump

    def __init__(
        self,
        engine: Engine,
        context: Any = None,
        saga_id: UUID | None = None,
        run: Run | None = None,
        index: int = 0,
    ) -> None:
        self._engine = engine
        self._context = context
        self._saga_id = saga_id
        self._run = run
        self._index = index
        self._state = _NEW

    def __aiter__(self) -> Forward:
        return self

    @property
    def finished(self) -> bool:
        """Whether iterating is over (the next step raises `StopAsyncIteration`)."""
        return self._state == _DONE

    async def aclose(self) -> None:
        """Stop iterating; an unfinished saga stays RUNNING (resumable)."""
        if self._state == _BUSY:
            raise RuntimeError("aclose(): the saga stream is running a step")
        self._state = _DONE

    async def __anext__(self) -> SagaStepResult[Any]:
        state = self._state
        if state != _READY:
            if state == _DONE:
                raise StopAsyncIteration
            if state == _BUSY:
                raise RuntimeError("anext(): the saga stream is already running a step")
        self._state = _BUSY
        token = None
        try:
            run = self._run
            if state == _NEW:
                engine = self._engine
                if run is None:
                    start = engine.start  # (a slot's callable: see below)
                    begun = start(self._context, self._saga_id)
                    self._context = None
                    if isinstance(begun, Run):  # created at once: from its first step
                        run = begun
                    else:
                        started = await begun
                        if started is None:
                            raise StopAsyncIteration
                        run, self._index = started
                self._run = run
                known = engine.known.get(type(run.context))
                if known is not None and known[0] is run.saga:
                    _, self._dump, self._plan = known
                else:  # a recovered run (or a context class not started here yet)
                    self._plan = engine.steps.plan(run.saga)
                    self._dump = engine.snapshots.dumper(type(run.context))
            assert run is not None
            token = _set_current(run)  # (Run.resolve) the steps' events: in the saga's conversation
            plan = self._plan
            index = self._index
            if index >= len(plan):
                raise StopAsyncIteration
            step = plan[index]
            saga_id = run.saga_id
            context = run.context
            # the endpoint's fast path inline (see anycqrs._endpoint): the
            # handler built, ``act`` awaited and its events list read here
            fast = step.fast
            handler: Handler
            if step.scoped:  # a scope (unit of work) per step
                handler, response = await self._scoped(run, step)
            else:
                handler = fast() if fast is not None else await step.endpoint.resolve()
                handler._anycqrs_saga_id = saga_id
                try:
                    if fast is not None:
                        response = await handler.act(context)
                    elif step.plain:
                        response = await step.endpoint.invoke(handler, context)
                    else:
                        handler, response = await self._engine.steps.act(run, step, handler)
                # (two clauses, no local naming the error: a failed saga must not
                # leave a frame <-> traceback cycle for the collector)
                except StepFailed as failure:
                    take_events(handler)  # a failed act's events are never dispatched
                    compensator = self._engine.compensator
                    logged, _ = compensator.failed(run, failure.name, failure.error, acted=False)
                    await compensator.compensate(run, logged)
                    raise failure.error from None
                except Exception as error:
                    take_events(handler)
                    compensator = self._engine.compensator
                    logged, _ = compensator.failed(run, step.name, error, acted=False)
                    await compensator.compensate(run, logged)
                    raise
                # last: evaluated only for what the clauses above let through
                except anyio.get_cancelled_exc_class():
                    take_events(handler)  # cancelled: the step runs again, its events with it
                    raise
            run.done.append(handler)
            events = handler._anycqrs_events if fast is not None else handler.events
            if events:
                await self._dispatch(run, handler, response)
            # (callables held in slots are read into locals before the call:
            # `self._dump(...)` compiles to a method lookup CPython 3.11 can't
            # specialize for a slot: ≈ 0.2k instructions per step, the two)
            dump, save = self._dump, self._engine.save
            try:
                snapshot = dump(context)
            except Exception:  # noqa: BLE001 - the slow path names the problem
                snapshot = self._engine.snapshots.dump(context)
            run.snapshot = snapshot
            now = _now()
            name = handler.step_name
            following = step.following
            if following is not None:
                entries: tuple[Entry, ...] = (
                    (name, ACT, COMPLETED, None, now),
                    (following, ACT, STARTED, None, now),
                )
                status = None
            else:
                entries = ((name, ACT, COMPLETED, None, now),)
                status = SAGA_COMPLETED
            written = save(saga_id, run.version, status, snapshot, entries, now)
            run.version = written if isinstance(written, int) else await written
        except BaseException:
            self._state = _DONE
            if token is not None:
                _reset_current(token)
            raise
        _reset_current(token)
        if status is None:
            self._index = index + 1
            self._state = _READY
        else:
            run.status = status
            self._state = _DONE
        result: SagaStepResult[Any] = new_result()  # step_result(), inline
        set_step_type(result, type(handler))
        set_response(result, response)
        set_saga_id(result, saga_id)
        return result

    async def _scoped(self, run: Run, step: Step) -> tuple[Handler, Any]:
        """Run `step` in a scope of its own (`Steps.scoped`); the scope has
        closed (rolled back) before the steps done are compensated."""
        try:
            return await self._engine.steps.scoped(run, step)
        except StepFailed as failure:
            compensator = self._engine.compensator
            logged, _ = compensator.failed(run, failure.name, failure.error, acted=False)
            await compensator.compensate(run, logged)
            raise failure.error from None
        except Exception as error:
            compensator = self._engine.compensator
            logged, _ = compensator.failed(run, step.name, error, acted=False)
            await compensator.compensate(run, logged)
            raise

    async def _dispatch(self, run: Run, handler: Handler, response: Any) -> None:
        """Dispatch the events the step emitted; a failure compensates the
        step too and raises `EventDispatchError`."""
        try:
            await self._engine.dispatcher.dispatch(take_events(handler))
        except Exception as error:
            wrapped = EventDispatchError(
                response,
                error.exceptions if isinstance(error, EventDispatchError) else (error,),
            )
            await self._engine.compensator.fail(run, handler.step_name, wrapped, acted=True)
            raise wrapped from error


new_forward = cast("Callable[[], Forward]", functools.partial(object.__new__, Forward))
"""An empty `Forward` (its slots unset): `SagaMediator.stream` fills the
slots `Forward(engine, context, saga_id)` sets, with `NEW` as its state,
inline (one per saga: a class call with a Python `__init__` costs ~0.2 µs
more, a function doing it one frame)."""
