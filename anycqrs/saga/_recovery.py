"""Rebuilding a run from storage: which steps acted, which were compensated."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._engine import ACT, COMPENSATE, Run, SagaEngine
from ._types import SagaStepEntry, SagaStepStatus

__all__ = ["rebuild"]


async def rebuild(engine: SagaEngine, run: Run, history: Sequence[SagaStepEntry]) -> int:
    """Fill ``run.done`` with the handlers whose ``act`` was logged COMPLETED
    and that were not compensated yet; return the index of the first slot
    that did not complete (``len(slots)`` if all did)."""
    acted = {
        e.step_name for e in history if e.action == ACT and e.status is SagaStepStatus.COMPLETED
    }
    compensated = {
        e.step_name
        for e in history
        if e.action == COMPENSATE and e.status is not SagaStepStatus.STARTED
    }
    slots = run.saga.slots
    for slot in slots:
        handler_type: Any = next((h for h in slot.handlers if h.step_name in acted), None)
        if handler_type is None:
            return slot.index
        if handler_type.step_name not in compensated:
            run.done.append(await engine.make(handler_type, run.saga_id))
    return len(slots)
