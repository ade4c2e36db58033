"""The small values every part of the saga engine writes: step-log entries,
saga ids, step results and error descriptions.

Three builders here skip a Python-level `__init__` because a saga spends a
large share of its few microseconds in them: `entry` (a `StepRecord` built by
`tuple.__new__` in C: 150 ns instead of 230-290 ns), `SagaIds` (version-4
`UUID`s without `UUID.__init__`'s checks, from buffered random bytes) and
`step_result` (a frozen `SagaStepResult` whose three slots are set directly:
230 ns instead of 350 ns). Measured A/B in one process,
alternating, on the memory 3-step saga: the three together 8-12 % of it.
"""

from __future__ import annotations

import functools
import os
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any, cast
from uuid import UUID, SafeUUID

from ._types import SagaStatus, SagaStepResult, SagaStepStatus, StepAction, StepRecord

__all__ = [
    "ACT",
    "COMPENSATE",
    "COMPLETED",
    "Entry",
    "FAILED",
    "RUNNING",
    "SAGA_COMPENSATING",
    "SAGA_COMPLETED",
    "SAGA_FAILED",
    "STARTED",
    "SagaIds",
    "describe",
    "entry",
    "new_result",
    "record",
    "set_response",
    "set_saga_id",
    "set_step_type",
    "step_result",
]

ACT = StepAction.ACT
COMPENSATE = StepAction.COMPENSATE
STARTED = SagaStepStatus.STARTED
COMPLETED = SagaStepStatus.COMPLETED
FAILED = SagaStepStatus.FAILED
RUNNING = SagaStatus.RUNNING
SAGA_COMPLETED = SagaStatus.COMPLETED
SAGA_FAILED = SagaStatus.FAILED
SAGA_COMPENSATING = SagaStatus.COMPENSATING
"""Saga statuses as module constants: reading a member off an `Enum` class
costs ~0.1 µs (a global: ~6 ns)."""

Entry = tuple[str, StepAction, SagaStepStatus, "Mapping[str, Any] | None", float]
"""A step-log entry as the engine writes it: a `StepRecord`'s fields in a
plain tuple (a `StepRecord` is one too). The memory storage keeps them as
they are (a tuple literal costs ~25 ns, a `StepRecord` ~150 ns, seven per
3-step saga); the `Journal` hands every other storage `StepRecord`s."""

entry = cast(
    "Callable[[tuple[str, StepAction, SagaStepStatus, Any, float]], StepRecord]",
    functools.partial(tuple.__new__, StepRecord),
)
"""A `StepRecord` from the tuple of its fields, built in C (the namedtuple's
own `__new__` is a Python function: about 90 ns more per entry)."""


def record(
    name: str,
    action: StepAction,
    status: SagaStepStatus,
    details: Mapping[str, Any] | None = None,
) -> StepRecord:
    """A step-log entry stamped now."""
    return entry((name, action, status, details, time.time()))


_UUID_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))
_UUID_V4 = (0x8000 << 48) | (0x4000 << 64)
_UNKNOWN = SafeUUID.unknown  # an enum property lookup on every access otherwise


_BATCH = 256
"""Saga ids drawn from one `os.urandom` call."""

_LIVE: weakref.WeakSet[SagaIds] = weakref.WeakSet()
"""Every `SagaIds`, for the fork hook below."""


def _forget_after_fork() -> None:
    """In a forked child: drop every buffered id (the parent hands them out)."""
    for ids in list(_LIVE):
        ids.ready.clear()


if hasattr(os, "register_at_fork"):  # pragma: no branch - not on Windows
    os.register_at_fork(after_in_child=_forget_after_fork)


class SagaIds:
    """Random (version 4) saga ids, built without `UUID.__init__`'s checks,
    256 at a time from one `os.urandom` call (`uuid.uuid4()` costs about
    0.9 µs more per id). `ready` holds the ids built and not handed out
    yet: a hot path takes one with ``ready.pop()`` (an `IndexError` when it
    is empty: then `refill`). After a `fork` the child's `ready` is emptied
    (an `os.register_at_fork` hook), so parent and child never hand out the
    same ids.

    One per saga engine (`Starter`): no state shared between engines.
    """

    __slots__ = ("__weakref__", "ready")

    def __init__(self) -> None:
        self.ready: list[UUID] = []
        _LIVE.add(self)

    def __call__(self) -> UUID:
        try:
            return self.ready.pop()
        except IndexError:
            return self.refill()

    def refill(self) -> UUID:
        """Build the next batch into `ready` and return one more id."""
        data = os.urandom(_BATCH * 16)
        new, put, unknown = object.__new__, object.__setattr__, _UNKNOWN
        batch = []
        for offset in range(0, _BATCH * 16, 16):
            saga_id = new(UUID)
            value = int.from_bytes(data[offset : offset + 16], "big") & _UUID_CLEAR | _UUID_V4
            put(saga_id, "int", value)
            put(saga_id, "is_safe", unknown)
            batch.append(saga_id)
        saga_id = batch.pop()
        self.ready.extend(batch)
        return saga_id


new_result = cast(
    "Callable[[], SagaStepResult[Any]]", functools.partial(object.__new__, SagaStepResult)
)
"""An empty `SagaStepResult` (its slots unset): fill it with the setters below."""
set_step_type = SagaStepResult.__dict__["step_type"].__set__
set_response = SagaStepResult.__dict__["response"].__set__
set_saga_id = SagaStepResult.__dict__["saga_id"].__set__


def step_result(step_type: type[Any], response: Any, saga_id: UUID) -> SagaStepResult[Any]:
    """`SagaStepResult(step_type, response, saga_id)` without the frozen attrs
    `__init__` (no validators to skip: the three slots are set directly; the
    forward iterator inlines this: one frame less per step)."""
    result = new_result()
    set_step_type(result, step_type)
    set_response(result, response)
    set_saga_id(result, saga_id)
    return result


def describe(error: BaseException) -> str:
    """`"Type: message"` for logs and step details."""
    return f"{type(error).__qualname__}: {error}"
