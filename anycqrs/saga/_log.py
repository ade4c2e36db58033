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
import struct
import time
import weakref
from collections.abc import Callable, Mapping
from itertools import repeat
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


_VERSION_4 = bytes((b & 0x0F) | 0x40 for b in range(256))
_VARIANT = bytes((b & 0x3F) | 0x80 for b in range(256))
"""`bytes.translate` tables: byte 6 of a version-4 UUID (version 4 in its high
nibble) and byte 8 (the RFC 4122 variant in its two high bits), as `uuid4` sets them."""
_UNKNOWN = SafeUUID.unknown  # an enum property lookup on every access otherwise
_new_uuid = object.__new__
_set_int = UUID.__dict__["int"].__set__  # (UUID.__setattr__ refuses: immutable)
_set_safe = UUID.__dict__["is_safe"].__set__
_from_bytes: Callable[[bytes, Any], int] = int.from_bytes


_BATCH = 256
"""Saga ids drawn from one `os.urandom` call."""
_SPLIT = struct.Struct("16s" * _BATCH).unpack
"""A batch's bytes as `_BATCH` 16-byte strings, in C."""

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
        """Build the next batch into `ready` and return one more id.

        Every step runs in C over the whole batch (no bytecode per id: about
        3.5k instructions per id against 7k for a Python loop): the version
        and variant bits set on the bytes, the 128-bit ints read from them
        and stored into blank `UUID`s.
        """
        data = bytearray(os.urandom(_BATCH * 16))
        data[6::16] = data[6::16].translate(_VERSION_4)
        data[8::16] = data[8::16].translate(_VARIANT)
        batch = list(map(_new_uuid, repeat(UUID, _BATCH)))
        # (any(): drives the setters, which return None, to the end)
        any(map(_set_int, batch, map(_from_bytes, _SPLIT(data), repeat("big"))))
        any(map(_set_safe, batch, repeat(_UNKNOWN)))
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
