"""Compensation: undo the steps of a failed run, in reverse order, each with
retries, shielded from the caller's cancellation and bounded by a deadline."""

from __future__ import annotations

import logging
import math
import time
import types
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from uuid import UUID

import anyio

from .. import _defaults
from .._containers._scope import in_scope
from .._handlers import take_events
from .._retry import RetryPolicy, Sleep, retry_call
from ..container import ScopedContainer
from ..events._dispatcher import EventDispatcher
from ..observability import _tracing
from ._log import (
    ACT,
    COMPENSATE,
    COMPLETED,
    FAILED,
    SAGA_COMPENSATING,
    SAGA_FAILED,
    STARTED,
    Entry,
    describe,
)
from ._run import Handler, Journal, Run, Written
from ._shielded import cannot_wait, shielded
from ._snapshot import Snapshots
from ._types import SagaStatus

__all__ = ["Compensator", "compensation_policy"]

logger = logging.getLogger("anycqrs.saga")

_TODO = object()
"""What the unshielded part of a phase leaves of a compensation: all of it."""
_EVENTS = object()
"""... the dispatch of its events (it succeeded)."""
_BEGUN = object()
"""The `context` of a phase whose first write is done."""


def compensation_policy(
    count: int | None, delay: float | None, backoff: float | None, policy: RetryPolicy | None
) -> RetryPolicy:
    """The one retry policy of compensations, from the bootstrap's keywords.

    Precedence: `policy` (the `compensation_retry` keyword) is used as is
    and takes the place of the scalar `compensation_retry_count` / `_delay` /
    `_backoff` keywords, so giving it with any of them is an error; without
    it, the scalars build the policy (`None`: that scalar's default, 3 /
    0.5 s / 2.0), with no maximum delay, retrying any `Exception`.

    Raises:
        ValueError: `policy` and a scalar keyword are both given, or a scalar is invalid.
    """
    if policy is not None:
        if (count, delay, backoff) != (None, None, None):
            raise ValueError(
                "give compensation_retry or the compensation_retry_count / _delay / "
                "_backoff keywords, not both"
            )
        return policy
    count = _defaults.COMPENSATION_RETRY_COUNT if count is None else count
    if count < 1:
        raise ValueError(f"compensation_retry_count must be >= 1, got {count}")
    return RetryPolicy(
        attempts=count,
        delay=_defaults.COMPENSATION_RETRY_DELAY if delay is None else delay,
        multiplier=_defaults.COMPENSATION_RETRY_BACKOFF if backoff is None else backoff,
        max_delay=math.inf,
    )


class Compensator:
    """Compensates the handlers of a run that acted (internal).

    Collaborators: the `journal` it writes the log through, the `snapshots`
    that put a context back, the `dispatcher` of the compensations' events,
    the `policy` every compensation is retried with, the `timeout` of the
    whole phase and the `sleep` between attempts.

    With a `scope` (the container is a `ScopedContainer`), every attempt of
    a compensation runs in a scope of its own, on a step instance freshly
    built in it by `make` (the act's instance and its scope are gone), as
    python-cqrs does under its HANDLER scope strategy.
    """

    __slots__ = (
        "_quiet",
        "dispatcher",
        "journal",
        "make",
        "policy",
        "scope",
        "sleep",
        "snapshots",
        "timeout",
        "tracer",
    )

    def __init__(
        self,
        *,
        journal: Journal,
        snapshots: Snapshots,
        dispatcher: EventDispatcher,
        policy: RetryPolicy,
        timeout: float,
        sleep: Sleep = anyio.sleep,
        scope: ScopedContainer | None = None,
        make: Callable[[type[Handler], UUID], Awaitable[Handler]] | None = None,
        tracer: Any = None,
    ) -> None:
        self.scope = scope
        self.make = make
        self.tracer = tracer
        self.journal = journal
        self.snapshots = snapshots
        self.dispatcher = dispatcher
        self.policy = policy
        self.timeout = timeout
        self.sleep = sleep
        self._quiet: dict[Any, bool] = {}
        """`cannot_wait` of each compensate function met."""

    def failed(
        self, run: Run, name: str, error: Exception, *, acted: bool
    ) -> tuple[tuple[Entry, ...], Any]:
        """Log the failed step and get its compensation ready: returns the
        log entries and the context (`None`: unchanged) that `compensate`
        writes first. `acted`: the failing step's `act` succeeded (its events
        failed), so it is compensated too and the context it left is
        persisted; otherwise the context is put back to its state before the
        step."""
        details: dict[str, Any] = {"error": describe(error)}
        if acted:
            details["stage"] = "events"
            run.snapshot = self.snapshots.dump(run.context)
        else:
            self.snapshots.put_back(run.context, run.snapshot)
        logger.info("saga %s: step %s failed: %s", run.saga_id, name, details["error"])
        return ((name, ACT, FAILED, details, time.time()),), (run.snapshot if acted else None)

    async def fail(self, run: Run, name: str, error: Exception, *, acted: bool) -> None:
        """Log the failed step, then compensate every step that acted; see `failed`."""
        entries, context = self.failed(run, name, error, acted=acted)
        await self.compensate(run, entries, context=context)

    async def compensate(
        self,
        run: Run,
        entries: Sequence[Entry] = (),
        *,
        context: Any = None,
    ) -> None:
        """Compensate `run.done` in reverse order, each with retries, then
        mark the saga FAILED, or COMPENSATION_FAILED when a compensation
        failed all its retries (the others still run). `entries` and
        `context` go with the first write (status COMPENSATING).

        Runs in a cancel scope shielded from the caller's cancellation, with
        its own deadline (`timeout` for the whole phase, counted from its
        first wait; see `shielded`). If the deadline passes, the saga stays
        COMPENSATING for recovery to finish.

        What of the phase cannot wait runs before the scope, and costs none:
        with a storage that writes synchronously (the memory one), the
        writes and the compensations whose coroutine can never suspend (no
        `await` in it, no timeout; see `cannot_wait`) up to the first one
        that may wait, fail or emit events. Nothing can cancel code that
        does not wait, so the shield changes nothing there; the scope is
        entered between two compensations, where the phase holds no scope
        of its own, and covers the rest of the phase.
        """
        pending = run.done[::-1]
        run.done = []
        position, carried = 0, _TODO
        if self.journal.synchronous and self.scope is None and self.tracer is None:
            position, carried = await self._unshielded(run, pending, entries, context)
            if position < 0:
                return
            entries, context = (), _BEGUN
        if await shielded(
            self._phase(run, pending, entries, context, position, carried), self.timeout
        ):
            logger.error(
                "saga %s: compensation did not finish within %s s; the saga stays "
                "COMPENSATING and recovery will finish it",
                run.saga_id,
                self.timeout,
            )

    def _begin(
        self, run: Run, pending: list[Handler], entries: Sequence[Entry], context: Any
    ) -> Written:
        """The phase's first write: the entries given, the first
        compensation STARTED and status COMPENSATING (FAILED when there is
        nothing to compensate)."""
        now = time.time()
        batch: tuple[Entry, ...] = tuple(entries)
        if pending:
            batch += ((pending[0].step_name, COMPENSATE, STARTED, None, now),)
            status: SagaStatus | None = SAGA_COMPENSATING
        else:
            status = SAGA_FAILED
        return self.journal.save(run.saga_id, run.version, status, context, batch, now)

    def _done(  # noqa: PLR0917 - internal
        self,
        run: Run,
        pending: list[Handler],
        position: int,
        ok: bool,
        details: dict[str, Any],
        ended: SagaStatus,
    ) -> Written:
        """Log the compensation at `position` ended (`ok` or not), with the
        next one STARTED, or, after the last, the saga's final status `ended`."""
        now = time.time()
        done: Entry = (
            pending[position].step_name,
            COMPENSATE,
            COMPLETED if ok else FAILED,
            details,
            now,
        )
        if position < len(pending) - 1:
            following = pending[position + 1].step_name
            batch: tuple[Entry, ...] = (done, (following, COMPENSATE, STARTED, None, now))
            status = None
        else:
            batch = (done,)
            status = ended
        return self.journal.save(run.saga_id, run.version, status, None, batch, now)

    async def _unshielded(
        self, run: Run, pending: list[Handler], entries: Sequence[Entry], context: Any
    ) -> tuple[int, Any]:
        """The prefix of the phase that cannot wait (the journal writes
        synchronously; see `compensate`): returns `(-1, None)` when it ran
        the whole phase, else where the shielded rest goes on: the position
        of the next compensation and what is left of it (`_TODO`: all of it;
        an exception: its first attempt failed with it; `_EVENTS`: it
        succeeded, its events are due)."""
        # (the writes are synchronous here: ints, no `cast` call on the hot path)
        run.version = self._begin(run, pending, entries, context)  # type: ignore[assignment]
        run.status = SAGA_COMPENSATING
        target = run.context
        quiet = self._quiet
        for position, handler in enumerate(pending):
            compensate = handler.compensate
            function = compensate.__func__ if isinstance(compensate, types.MethodType) else None
            silent = quiet.get(function)
            if silent is None:
                silent = quiet[function] = cannot_wait(function)
            if not silent or handler.timeout is not None:
                return position, _TODO
            try:
                await compensate(target)  # never suspends
            except Exception as error:  # noqa: BLE001 - retried (shielded), logged, recorded
                return position, error
            if handler.events:
                return position, _EVENTS
            written = self._done(run, pending, position, True, {"attempts": 1}, SAGA_FAILED)
            run.version = written  # type: ignore[assignment]  # synchronous: an int
        run.status = SAGA_FAILED
        return -1, None

    async def _phase(  # noqa: PLR0917 - internal
        self,
        run: Run,
        pending: list[Handler],
        entries: Sequence[Entry],
        context: Any,
        start: int,
        carried: Any,
    ) -> None:
        """The compensation phase (see `compensate`), run by `shielded`, from
        the compensation at `start` on (what is left of it: `carried`, see
        `_unshielded`; its first write done already when `context` is `_BEGUN`)."""
        saga_id = run.saga_id
        if context is not _BEGUN:
            written = self._begin(run, pending, entries, context)
            run.version = written if isinstance(written, int) else await written
            run.status = SagaStatus.COMPENSATING
        target = run.context
        ended = SagaStatus.FAILED
        tracer = self.tracer
        for position in range(start, len(pending)):
            handler = pending[position]
            if carried is not _TODO:  # left by the unshielded part
                if carried is _EVENTS:
                    await self._events(run, handler)
                    ok, details = True, {"attempts": 1}
                else:
                    ok, details = await self._retry(run, handler, carried)
                carried = _TODO
            elif tracer is not None:
                span = _tracing.start_span(
                    tracer,
                    f"compensate {handler.step_name}",
                    _tracing.INTERNAL,
                    {"anycqrs.saga.step": handler.step_name, "anycqrs.saga.id": str(saga_id)},
                )
                with _tracing.otel_trace.use_span(span, end_on_exit=True):
                    ok, details = await self._compensate_one(run, handler, target)
                    if not ok:
                        span.set_status(_tracing.Status(_tracing.StatusCode.ERROR))
            elif self.scope is not None:
                ok, details = await self._retry(run, handler, None)
            # the common case inline: no timeout, the first attempt succeeds
            elif handler.timeout is None:
                try:
                    await handler.compensate(target)
                except Exception as error:  # noqa: BLE001 - retried, logged, recorded
                    ok, details = await self._retry(run, handler, error)
                else:
                    ok, details = True, {"attempts": 1}
                    if handler.events:
                        await self._events(run, handler)
            else:
                ok, details = await self._retry(run, handler, None)
            if not ok:
                ended = SagaStatus.COMPENSATION_FAILED
            written = self._done(run, pending, position, ok, details, ended)
            run.version = written if isinstance(written, int) else await written
        run.status = ended
        if ended is SagaStatus.COMPENSATION_FAILED:
            logger.error(
                "saga %s: marked COMPENSATION_FAILED: a compensation failed all its "
                "retries; recovery retries it (see docs/saga-recovery.md)",
                saga_id,
            )

    async def _compensate_one(
        self, run: Run, handler: Handler, target: Any
    ) -> tuple[bool, dict[str, Any]]:
        """One handler's compensation with its retries (the traced path)."""
        if handler.timeout is None and self.scope is None:
            try:
                await handler.compensate(target)
            except Exception as error:  # noqa: BLE001 - retried, logged, recorded
                return await self._retry(run, handler, error)
            if handler.events:
                await self._events(run, handler)
            return True, {"attempts": 1}
        return await self._retry(run, handler, None)

    async def _retry(
        self, run: Run, handler: Handler, failed: Exception | None
    ) -> tuple[bool, dict[str, Any]]:
        """Compensate `handler` under the retry policy (`failed`: its first
        attempt already failed with this error). Every failed attempt is
        logged; returns whether it succeeded and the entry's details."""
        policy = self.policy
        limit = policy.attempts or "unlimited"
        timeout = handler.timeout
        context = run.context
        attempts = 0 if failed is None else 1
        scope = self.scope
        latest = [handler]  # the instance of the latest attempt (fresh ones when scoped)

        async def call(target: Handler) -> None:
            if timeout is None:
                await target.compensate(context)
            else:
                with anyio.fail_after(timeout):
                    await target.compensate(context)

        async def fresh(step: type[Handler]) -> None:
            assert self.make is not None
            latest[0] = made = await self.make(step, run.saga_id)
            await call(made)

        async def once() -> None:
            nonlocal attempts
            attempts += 1
            if scope is None:
                await call(handler)
            else:
                await in_scope(scope, fresh, type(handler))

        def logged(error: BaseException, *_: Any) -> None:
            take_events(latest[0])
            logger.warning(
                "saga %s: compensation of %s, attempt %d/%s failed: %s",
                run.saga_id,
                handler.step_name,
                attempts,
                limit,
                describe(error),
            )

        try:
            await retry_call(
                policy,
                once,
                failures=attempts,
                error=failed,
                on_retry=logged,
                sleep=self.sleep,
            )
        except Exception as error:  # noqa: BLE001 - logged, recorded FAILED
            logged(error)
            logger.error(
                "saga %s: compensation of %s failed after %d attempts: %s",
                run.saga_id,
                handler.step_name,
                attempts,
                describe(error),
            )
            return False, {"attempts": attempts, "error": describe(error)}
        if latest[0].events:
            await self._events(run, latest[0])
        return True, {"attempts": attempts}

    async def _events(self, run: Run, handler: Handler) -> None:
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
