"""Recovery: claim unfinished sagas from storage and finish them."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any
from uuid import UUID

import anyio

from ..errors import SagaError
from ..observability._context import use_message
from ._compensation import Compensator
from ._log import ACT, describe
from ._run import Journal, Run
from ._snapshot import Snapshots
from ._start import Starter
from ._types import SagaState, SagaStatus, SagaStepResult, SagaStepStatus

__all__ = ["Recovery"]

logger = logging.getLogger("anycqrs.saga")

_COMPENSATE = (SagaStatus.COMPENSATING, SagaStatus.COMPENSATION_FAILED)
_ANY_COUNT = 2**31 - 1
"""`retry_compensations` of `recover(saga_id)`: whatever the saga's count."""

Resume = Callable[[Run, int], AsyncIterator[SagaStepResult[Any]]]
"""Runs the steps of a rebuilt run from the given index."""


class Recovery:
    """Finishes sagas a crashed or stopped process left unfinished (internal).

    Collaborators: the `journal` (its storage leases the sagas), the
    `starter` that rebuilds a run, the `snapshots` that load its context, the
    `compensator` that finishes a COMPENSATING saga and `resume`, which runs
    a RUNNING saga's remaining steps. `owner` is this worker's lease name.

    Only sagas the starter's `SagaMap` binds are claimed (by saga name), so
    a worker never takes, nor counts an attempt of, another service's saga.
    With `retry_compensations`, `recover_pending` also claims
    COMPENSATION_FAILED sagas claimed fewer than `max_attempts` times;
    `recover(saga_id)` claims one whatever its count (an operator's retry).
    """

    __slots__ = (
        "compensator",
        "journal",
        "lease",
        "max_attempts",
        "owner",
        "resume",
        "retry_compensations",
        "snapshots",
        "starter",
    )

    def __init__(
        self,
        *,
        journal: Journal,
        starter: Starter,
        snapshots: Snapshots,
        compensator: Compensator,
        resume: Resume,
        owner: str,
        lease: float,
        max_attempts: int,
        retry_compensations: bool = True,
    ) -> None:
        self.journal = journal
        self.starter = starter
        self.snapshots = snapshots
        self.compensator = compensator
        self.resume = resume
        self.owner = owner
        self.lease = lease
        self.max_attempts = max_attempts
        self.retry_compensations = retry_compensations

    def _names(self) -> tuple[str, ...]:
        """The names of the sagas this worker can run."""
        return tuple({saga.saga_name: None for _, saga in self.starter.saga_map.items()})

    async def recover(self, saga_id: UUID) -> int:
        """Recover one saga; 1 if this call handled it, else 0."""
        claimed = await self.journal.storage.claim(
            owner=self.owner,
            lease_seconds=self.lease,
            saga_id=saga_id,
            saga_names=self._names(),
            retry_compensations=_ANY_COUNT,
        )
        for state in claimed:
            await self._recover_claimed(state)
        return len(claimed)

    async def recover_pending(self, limit: int, stale_after: float) -> int:
        """Recover up to `limit` sagas not written for `stale_after` seconds;
        returns how many this call handled."""
        claimed = await self.journal.storage.claim(
            owner=self.owner,
            lease_seconds=self.lease,
            stale_after=stale_after,
            limit=limit,
            saga_names=self._names(),
            retry_compensations=self.max_attempts if self.retry_compensations else 0,
        )
        for state in claimed:
            await self._recover_claimed(state)
        return len(claimed)

    async def _recover_claimed(self, state: SagaState) -> None:
        storage = self.journal.storage
        metrics = self.journal.metrics
        try:
            if (
                state.recovery_attempts > self.max_attempts
                and state.status is not SagaStatus.COMPENSATION_FAILED
            ):
                await self._give_up(state, "too many recovery attempts")
                if metrics is not None:
                    metrics.recovery("given_up")
                return
            try:
                await self._recover_state(state)
            except Exception as error:  # noqa: BLE001 - counted as a failed attempt, logged
                if metrics is not None:
                    metrics.recovery("failed")
                logger.error(
                    "saga %s: recovery attempt %d failed: %s",
                    state.saga_id,
                    state.recovery_attempts,
                    describe(error),
                )
                if state.recovery_attempts >= self.max_attempts:
                    current = await storage.load_saga_state(state.saga_id)
                    if not current.status.terminal:
                        await self._give_up(current, describe(error))
            else:
                if metrics is not None:
                    metrics.recovery("recovered")
        finally:
            with anyio.CancelScope(shield=True):
                await storage.release(state.saga_id, self.owner)

    async def _give_up(self, state: SagaState, reason: str) -> None:
        """Stop trying to finish the saga, never leaving its steps done behind a
        FAILED status: a saga that was running forward is compensated (FAILED,
        or COMPENSATION_FAILED when a compensation fails); one that was
        compensating, or whose run can't be rebuilt while its log shows steps
        done, is marked COMPENSATION_FAILED for an operator."""
        storage = self.journal.storage
        if state.status not in _COMPENSATE:
            try:
                run, _ = await self._rebuilt(await storage.load_saga_state(state.saga_id))
            except Exception as error:  # noqa: BLE001 - the operator's case below
                reason = f"{reason}; cannot rebuild it to compensate: {describe(error)}"
            else:
                logger.error(
                    "saga %s: giving up after %d recovery attempts (%s); compensating it",
                    state.saga_id,
                    self.max_attempts,
                    reason,
                )
                with use_message(run):
                    await self.compensator.compensate(run)
                return
        status = (
            SagaStatus.COMPENSATION_FAILED
            if state.status in _COMPENSATE or await self._left_done(state.saga_id)
            else SagaStatus.FAILED  # nothing was done: nothing to compensate
        )
        logger.error(
            "saga %s: giving up after %d recovery attempts (%s); marked %s",
            state.saga_id,
            self.max_attempts,
            reason,
            status.value,
        )
        current = await storage.load_saga_state(state.saga_id)
        await storage.save(state.saga_id, current.version, status=status)

    async def _left_done(self, saga_id: UUID) -> bool:
        """Whether the saga's log shows a step acted and not compensated."""
        acted: set[str] = set()
        for item in await self.journal.storage.get_step_history(saga_id):
            if item.status is SagaStepStatus.COMPLETED:
                (acted.add if item.action == ACT else acted.discard)(item.step_name)
        return bool(acted)

    async def _rebuilt(self, state: SagaState) -> tuple[Run, int]:
        """The saga's run rebuilt from `state` and its log (`run.done`: its
        completed steps), and the index of the first step to run."""
        saga = self.starter.saga_map.by_name(state.saga_name)
        if saga is None:
            raise SagaError(
                f"No saga named {state.saga_name!r} is bound; bind it in the SagaMap to recover it"
            )
        context = self.snapshots.load(saga.context_type, state.context)
        run = Run(state.saga_id, saga, context, state.version, state.context)
        run.status = state.status
        start = await self.starter.rebuild(
            run, await self.journal.storage.get_step_history(state.saga_id)
        )
        return run, start

    async def _recover_state(self, state: SagaState) -> None:
        run, start = await self._rebuilt(state)
        if state.status in _COMPENSATE:  # in the saga's conversation, as a forward run
            with use_message(run):
                await self.compensator.compensate(run)  # FAILED, or COMPENSATION_FAILED again
            return
        if not await self.starter.restart(run, start):
            return
        try:
            async for _ in self.resume(run, start):
                pass
        except Exception as error:
            if not run.status.terminal:
                raise
            logger.info(
                "saga %s: failed during recovery, now %s: %s",
                state.saga_id,
                run.status.value,
                describe(error),
            )
