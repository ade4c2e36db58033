"""Recovery: claim unfinished sagas from storage and finish them."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any
from uuid import UUID

import anyio

from ..errors import SagaError
from ._compensation import Compensator
from ._log import describe
from ._run import Journal, Run
from ._snapshot import Snapshots
from ._start import Starter
from ._types import SagaState, SagaStatus, SagaStepResult

__all__ = ["Recovery"]

logger = logging.getLogger("anycqrs.saga")

Resume = Callable[[Run, int], AsyncIterator[SagaStepResult[Any]]]
"""Runs the steps of a rebuilt run from the given index."""


class Recovery:
    """Finishes sagas a crashed or stopped process left unfinished (internal).

    Collaborators: the `journal` (its storage leases the sagas), the
    `starter` that rebuilds a run, the `snapshots` that load its context, the
    `compensator` that finishes a COMPENSATING saga and `resume`, which runs
    a RUNNING saga's remaining steps. `owner` is this worker's lease name.
    """

    __slots__ = (
        "compensator",
        "journal",
        "lease",
        "max_attempts",
        "owner",
        "resume",
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
    ) -> None:
        self.journal = journal
        self.starter = starter
        self.snapshots = snapshots
        self.compensator = compensator
        self.resume = resume
        self.owner = owner
        self.lease = lease
        self.max_attempts = max_attempts

    async def recover(self, saga_id: UUID) -> int:
        """Recover one saga; 1 if this call handled it, else 0."""
        claimed = await self.journal.storage.claim(
            owner=self.owner, lease_seconds=self.lease, saga_id=saga_id
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
        )
        for state in claimed:
            await self._recover_claimed(state)
        return len(claimed)

    async def _recover_claimed(self, state: SagaState) -> None:
        storage = self.journal.storage
        try:
            if state.recovery_attempts > self.max_attempts:
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
                if state.recovery_attempts >= self.max_attempts:
                    current = await storage.load_saga_state(state.saga_id)
                    if not current.status.terminal:
                        await self._give_up(state.saga_id, current.version, describe(error))
        finally:
            with anyio.CancelScope(shield=True):
                await storage.release(state.saga_id, self.owner)

    async def _give_up(self, saga_id: UUID, version: int, reason: str) -> None:
        logger.error(
            "saga %s: giving up after %d recovery attempts (%s); marked FAILED",
            saga_id,
            self.max_attempts,
            reason,
        )
        await self.journal.storage.save(saga_id, version, status=SagaStatus.FAILED)

    async def _recover_state(self, state: SagaState) -> None:
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
        if state.status is SagaStatus.COMPENSATING:
            await self.compensator.compensate(run)
            return
        if not await self.starter.restart(run, start):
            return
        try:
            async for _ in self.resume(run, start):
                pass
        except Exception as error:
            if run.status is not SagaStatus.FAILED:
                raise
            logger.info(
                "saga %s: failed during recovery and was compensated: %s",
                state.saga_id,
                describe(error),
            )
