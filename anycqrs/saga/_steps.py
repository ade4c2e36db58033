"""Step execution: a saga's steps prepared once, and how one step acts
(middlewares, timeout, retry policy, fallback and circuit breaker).

Steps run on the one handler endpoint (`anycqrs._endpoint`): a step's handler
is resolved once per run, `act` is invoked through the middlewares, and
`compensate` is later called on the same instance. A `Fallback` slot runs
through the shared `guarded` mechanism of request and event fallbacks, with
the one breaker protocol (`CircuitBreakerLike`).
"""

from __future__ import annotations

import functools
import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

import anyio

from .._containers._scope import in_scope
from .._endpoint import Endpoints, HandlerEndpoint
from .._fallback import guarded
from .._handlers import keeps_events_list, take_events
from .._retry import Sleep, retry_call
from ..container import Container
from ..middlewares import MiddlewareChain
from ._log import ACT, FAILED, STARTED, describe, record
from ._run import Handler, Journal, Run
from ._saga import Saga, Slot
from ._snapshot import Snapshots

__all__ = ["Step", "StepFailed", "Steps"]

logger = logging.getLogger("anycqrs.saga")


class StepFailed(Exception):
    """`act` of the step logged as `name` failed with `error` (a fallback's
    name differs from the slot's)."""

    def __init__(self, name: str, error: Exception) -> None:
        self.name = name
        self.error = error


class _Attempt:
    """What a guarded (fallback) step passes from its primary to its
    fallback: the run, the primary's handler and the error it failed with
    (`None`: the circuit was open)."""

    __slots__ = ("error", "handler", "run")

    def __init__(self, run: Run, handler: Handler) -> None:
        self.run = run
        self.handler = handler
        self.error: Exception | None = None


Guarded = Callable[[_Attempt], Awaitable["tuple[Handler, Any]"]]


class Step:
    """One slot of a saga, prepared for running.

    Attributes:
        slot: the saga's slot.
        name: the primary's step name.
        endpoint: the primary's `act` endpoint.
        plain: no timeout, retry policy or fallback: `act` is invoked as is.
        fast: the endpoint's fast path (`endpoint.fast`) for a plain step,
            else `None`: the forward iterator then builds the handler and
            awaits `act` itself, and reads its events list directly.
        guarded: the fallback slot's `guarded` endpoint, else `None`.
        scoped: the endpoint runs each `act` in a scope (unit of work) of its own.
        following: the name of the plan's next step (`None` for the last one).
    """

    __slots__ = ("endpoint", "fast", "following", "guarded", "name", "plain", "scoped", "slot")

    def __init__(
        self, slot: Slot, endpoint: HandlerEndpoint, plain: bool, guarded: Guarded | None
    ) -> None:
        self.slot = slot
        self.name = slot.primary.step_name
        self.endpoint = endpoint
        self.plain = plain
        self.fast = endpoint.fast if plain and keeps_events_list(slot.primary) else None
        self.guarded = guarded
        self.scoped = endpoint.scope is not None
        self.following: str | None = None


class Steps:
    """Builds step handlers and runs their `act` (internal).

    Collaborators: the `endpoints` (one cache per container, the saga's
    middlewares around every `act`), the `snapshots` that put a context back
    before a retry or a fallback, the `journal` a fallback is logged
    through, and the `sleep` between retries.
    """

    __slots__ = ("_plans", "endpoints", "journal", "sleep", "snapshots")

    def __init__(
        self,
        *,
        container: Container,
        middlewares: MiddlewareChain,
        snapshots: Snapshots,
        journal: Journal,
        sleep: Sleep = anyio.sleep,
    ) -> None:
        self.endpoints = Endpoints(container, middlewares)
        self.snapshots = snapshots
        self.journal = journal
        self.sleep = sleep
        self._plans: dict[type, tuple[Step, ...]] = {}

    def endpoint(self, handler_type: type[Handler]) -> HandlerEndpoint:
        """The `act` endpoint of `handler_type`."""
        return self.endpoints.get(handler_type, method="act")

    async def make(self, handler_type: type[Handler], saga_id: UUID) -> Handler:
        """A fresh handler instance bound to `saga_id`."""
        handler: Handler = await self.endpoint(handler_type).resolve()
        handler._anycqrs_saga_id = saga_id
        return handler

    async def scoped(self, run: Run, step: Step) -> tuple[Handler, Any]:
        """Run `step` in a scope of its own (the container is a
        `ScopedContainer`): the handler is resolved in it, `act` runs
        (with the step's timeout, retry policy and fallback, all in this
        scope), then the scope closes with the outcome. A failed act's
        events are dropped here; a successful one's stay on the handler,
        dispatched by the caller after the scope closed.

        Raises:
            StepFailed: the fallback failed.
            Exception: the step's own error (the scope rolled back).
        """
        assert self.endpoints.scope is not None
        result: tuple[Handler, Any] = await in_scope(
            self.endpoints.scope, self._scoped_act, (run, step)
        )
        return result

    async def _scoped_act(self, job: tuple[Run, Step]) -> tuple[Handler, Any]:
        run, step = job
        handler = await self.make(step.slot.primary, run.saga_id)
        try:
            if step.plain:
                return handler, await step.endpoint.invoke(handler, run.context)
            return await self.act(run, step, handler)
        except BaseException:
            take_events(handler)  # a failed act's events are never dispatched
            raise

    async def revive(self, handler_type: type[Handler], saga_id: UUID) -> Handler:
        """A handler of a step that acted in an earlier run (a resumed or
        recovered saga), to compensate it if needed. With a scoped container
        it is built in a scope of its own, closed at once: its compensation
        builds a fresh instance in a scope of its own anyway."""
        scope = self.endpoints.scope
        if scope is None:
            return await self.make(handler_type, saga_id)
        revived: Handler = await in_scope(scope, self._revive, (handler_type, saga_id))
        return revived

    async def _revive(self, job: tuple[type[Handler], UUID]) -> Handler:
        return await self.make(*job)

    def plan(self, saga: type[Saga[Any]]) -> tuple[Step, ...]:
        """The saga's steps, prepared once per saga class."""
        plan = self._plans.get(saga)
        if plan is None:
            plan = self._plans[saga] = tuple(self._step(slot) for slot in saga.slots)
            for step, after in itertools.pairwise(plan):
                step.following = after.name
        return plan

    def _step(self, slot: Slot) -> Step:
        primary = slot.primary
        fallback = slot.fallback
        if fallback is None:
            plain = primary.timeout is None and primary.retry_policy is None
            return Step(slot, self.endpoint(primary), plain, None)
        run_guarded: Guarded = guarded(
            self._primary,
            functools.partial(self._fallback, slot),
            protected=primary,
            failure_exceptions=fallback.failure_exceptions,
            breaker=fallback.circuit_breaker,
        )
        return Step(slot, self.endpoint(primary), False, run_guarded)

    async def act(self, run: Run, step: Step, handler: Handler) -> tuple[Handler, Any]:
        """Run `step` (not plain) with `handler`: returns the handler that
        acted (the fallback's, if it ran) and its response.

        Raises:
            StepFailed: the fallback failed (it names the fallback's step).
            Exception: the step's own error otherwise.
        """
        if step.guarded is None:
            return handler, await self.attempt(run, step.endpoint, handler)
        return await step.guarded(_Attempt(run, handler))

    async def attempt(self, run: Run, endpoint: HandlerEndpoint, handler: Handler) -> Any:
        """`act` through the endpoint (its middlewares), with the step's
        timeout and retry policy; the context is put back to its snapshot
        before each retry."""
        step = type(handler)
        context = run.context
        timeout = step.timeout
        once: Callable[[], Awaitable[Any]]
        if timeout is None:
            once = functools.partial(endpoint.invoke, handler, context)
        else:

            async def once() -> Any:
                with anyio.fail_after(timeout):
                    return await endpoint.invoke(handler, context)

        policy = step.retry_policy
        if policy is None:
            return await once()

        def again(error: BaseException, failures: int, _delay: float) -> None:
            logger.warning(
                "saga %s: %s act attempt %d/%s failed: %s",
                run.saga_id,
                step.step_name,
                failures,
                policy.attempts or "unlimited",
                describe(error),
            )
            self.snapshots.restore(context, run.snapshot)
            take_events(handler)

        return await retry_call(policy, once, on_retry=again, sleep=self.sleep)

    async def _primary(self, attempt: _Attempt) -> tuple[Handler, Any]:
        handler = attempt.handler
        try:
            return handler, await self.attempt(attempt.run, self.endpoint(type(handler)), handler)
        except Exception as error:
            attempt.error = error
            raise

    async def _fallback(self, slot: Slot, attempt: _Attempt) -> tuple[Handler, Any]:
        """Run the slot's fallback step instead of its primary: the primary's
        events dropped, the context put back, the switch logged."""
        assert slot.fallback is not None
        run, error = attempt.run, attempt.error
        attempt.error = None  # no attempt <-> traceback cycle left behind
        take_events(attempt.handler)
        self.snapshots.restore(run.context, run.snapshot)
        details = {
            "error": "circuit breaker open" if error is None else describe(error),
            "fallback": True,
        }
        other = slot.fallback.fallback
        await self.journal.write(
            run,
            entries=(
                record(slot.primary.step_name, ACT, FAILED, details),
                record(other.step_name, ACT, STARTED),
            ),
        )
        replacement = await self.make(other, run.saga_id)
        try:
            return replacement, await self.attempt(run, self.endpoint(other), replacement)
        except Exception as failure:
            take_events(replacement)  # a failed act's events are never dispatched
            raise StepFailed(other.step_name, failure) from failure
        except anyio.get_cancelled_exc_class():
            take_events(replacement)
            raise
