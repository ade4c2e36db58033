"""Step execution: a saga's steps prepared once, and how one step acts
(middlewares, timeout, retry policy, fallback and circuit breaker)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

import anyio

from .._handlers import keeps_events_list, take_events
from .._retry import Sleep, retry_call
from ..container import Container, factory_for, is_sync
from ..middlewares import Middleware, MiddlewareChain
from ._breakers import breaker_allows, breaker_failure, breaker_success
from ._log import ACT, FAILED, STARTED, describe, record
from ._run import Handler, Journal, Run
from ._saga import Saga, Slot
from ._snapshot import Snapshots

__all__ = ["ActCell", "Step", "StepFailed", "Steps"]

logger = logging.getLogger("anycqrs.saga")


class StepFailed(Exception):
    """`act` of the step logged as `name` failed with `error` (a fallback's
    name may differ from the slot's)."""

    def __init__(self, name: str, error: Exception) -> None:
        self.name = name
        self.error = error


class Step:
    """One slot of a saga, prepared for running."""

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


class ActCell:
    """The innermost link of a run's middleware chain: the current step's
    `act`. It holds no reference back to the run, so a finished run is freed
    at once, not by the cycle collector."""

    __slots__ = ("handler",)

    def __init__(self) -> None:
        self.handler: Any = None

    def __call__(self, context: Any) -> Awaitable[Any]:
        return self.handler.act(context)  # type: ignore[no-any-return]


class Steps:
    """Builds step handlers and runs their `act`.

    A plain step (no timeout, retry policy or fallback) is run by the forward
    iterator itself through `outer` and `inner`: the outermost middleware and
    the chain inside it (`outer(context, inner.wrap(act))` is
    `middlewares.wrap(act)(context)` minus one closure call). Every other step
    goes through `act`.
    """

    __slots__ = (
        "_makers",
        "_plans",
        "chain",
        "container",
        "inner",
        "journal",
        "outer",
        "sleep",
        "snapshots",
        "sync",
    )

    def __init__(
        self,
        *,
        container: Container,
        middlewares: MiddlewareChain,
        snapshots: Snapshots,
        journal: Journal,
        sleep: Sleep = anyio.sleep,
    ) -> None:
        self.container = container
        self.chain = middlewares
        links = tuple(middlewares)
        self.outer: Middleware | None = links[0] if links else None
        self.inner = MiddlewareChain(links[1:]) if len(links) > 1 else None
        self.snapshots = snapshots
        self.journal = journal
        self.sleep = sleep
        self.sync = is_sync(container)
        self._makers: dict[type, Callable[[], Any]] = {}
        self._plans: dict[type, tuple[Step, ...]] = {}

    def maker(self, handler_type: type[Handler]) -> Callable[[], Any]:
        """The container's factory of `handler_type` (an awaitable one unless `sync`)."""
        maker = self._makers.get(handler_type)
        if maker is None:
            maker = self._makers[handler_type] = factory_for(self.container, handler_type)
        return maker

    async def make(self, handler_type: type[Handler], saga_id: UUID) -> Handler:
        """A fresh handler instance bound to `saga_id`."""
        maker = self.maker(handler_type)
        handler: Handler = maker() if self.sync else await maker()
        handler._anycqrs_saga_id = saga_id
        return handler

    def plan(self, saga: type[Saga[Any]]) -> tuple[Step, ...]:
        """The saga's steps, prepared once per saga class."""
        plan = self._plans.get(saga)
        if plan is None:
            steps: list[Step] = []
            for slot in saga.slots:
                primary = slot.primary
                plain = (
                    slot.fallback is None
                    and primary.timeout is None
                    and primary.retry_policy is None
                    and keeps_events_list(primary)
                )
                steps.append(Step(slot, primary, primary.step_name, self.maker(primary), plain))
            plan = self._plans[saga] = tuple(steps)
        return plan

    async def act(self, run: Run, step: Step, handler: Handler) -> tuple[Handler, Any]:
        """Run `step` (not plain) with `handler`: returns the handler that
        acted (the fallback's, if it ran) and its response.

        Raises:
            StepFailed: a fallback was involved; names the step that failed.
            Exception: the step's own error otherwise.
        """
        if step.slot.fallback is None:
            return handler, await self.attempt(run, handler)
        return await self._with_fallback(run, step.slot, handler)

    async def attempt(self, run: Run, handler: Handler) -> Any:
        """`act` through the middlewares, with the step's timeout and retry
        policy; the context is put back to its snapshot before each retry."""
        step = type(handler)
        act: Callable[[Any], Awaitable[Any]] = handler.act
        if len(self.chain):
            act = self.chain.wrap(act)
        context = run.context
        timeout = step.timeout
        once: Callable[[], Awaitable[Any]]
        if timeout is None:
            once = functools.partial(act, context)
        else:

            async def once() -> Any:
                with anyio.fail_after(timeout):
                    return await act(context)

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

    async def _with_fallback(self, run: Run, slot: Slot, handler: Handler) -> tuple[Handler, Any]:
        fallback = slot.fallback
        assert fallback is not None
        breaker = fallback.circuit_breaker
        name = handler.step_name
        if breaker is None or await breaker_allows(breaker, slot.primary):
            try:
                response = await self.attempt(run, handler)
            except Exception as error:
                if breaker is not None:
                    await breaker_failure(breaker, slot.primary, error)
                if fallback.failure_exceptions and not isinstance(
                    error, fallback.failure_exceptions
                ):
                    raise StepFailed(name, error) from error
                details: dict[str, Any] = {"error": describe(error), "fallback": True}
            else:
                if breaker is not None:
                    await breaker_success(breaker, slot.primary)
                return handler, response
        else:
            details = {"error": "circuit breaker open", "fallback": True}
        take_events(handler)
        self.snapshots.restore(run.context, run.snapshot)
        other = fallback.fallback
        await self.journal.write(
            run,
            entries=(record(name, ACT, FAILED, details), record(other.step_name, ACT, STARTED)),
        )
        replacement = await self.make(other, run.saga_id)
        try:
            return replacement, await self.attempt(run, replacement)
        except Exception as error:
            raise StepFailed(other.step_name, error) from error
