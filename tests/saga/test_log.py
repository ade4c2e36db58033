"""The engine's small values: step-log entries, saga ids, step results."""

from __future__ import annotations

import os
import sys
import time
import uuid
from typing import Any

import pytest

from anycqrs.saga import SagaStatus, SagaStepResult
from anycqrs.saga._log import ACT, STARTED, SagaIds, describe, entry, record, step_result
from anycqrs.saga.storage import StepRecord


def test_entry_is_a_step_record() -> None:
    now = time.time()
    built = entry(("Pay", ACT, STARTED, None, now))
    assert type(built) is StepRecord
    assert built == StepRecord("Pay", ACT, STARTED, None, now)
    assert built.step_name == "Pay" and built.at == now
    stamped = record("Pay", ACT, STARTED, {"resumed": True})
    assert stamped.details == {"resumed": True} and stamped.at >= now


def test_saga_ids_are_random_version_4_uuids() -> None:
    new_saga_id = SagaIds()
    ids = {new_saga_id() for _ in range(1000)}  # several buffers
    assert len(ids) == 1000
    sample = ids.pop()
    assert sample.version == 4 and sample.variant == uuid.RFC_4122
    assert uuid.UUID(str(sample)) == sample and hash(uuid.UUID(str(sample))) == hash(sample)
    assert sample.is_safe is uuid.SafeUUID.unknown


def test_saga_ids_keep_the_random_bytes_as_uuid4_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch is `UUID(bytes=chunk, version=4)` of each 16 random bytes:
    the batch's C steps set the same bits as `uuid4`, and nothing else."""
    data = os.urandom(256 * 16)
    monkeypatch.setattr(os, "urandom", lambda n: data[:n])
    new_saga_id = SagaIds()
    got = [new_saga_id() for _ in range(256)]
    want = [uuid.UUID(bytes=data[i : i + 16], version=4) for i in range(0, 256 * 16, 16)]
    assert sorted(got) == sorted(want)
    assert all(type(u) is uuid.UUID and u.is_safe is uuid.SafeUUID.unknown for u in got)
    assert all(u.version == 4 and u.variant == uuid.RFC_4122 for u in got)


@pytest.mark.skipif(sys.platform == "win32", reason="needs os.fork")
def test_saga_ids_after_fork_differ_from_the_parents() -> None:
    new_saga_id = SagaIds()
    new_saga_id()  # the buffer is filled: the child must not reuse its rest
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, b"".join(new_saga_id().bytes for _ in range(4)))
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    data = os.read(read, 64)
    os.close(read)
    child = {uuid.UUID(bytes=data[i : i + 16]) for i in range(0, 64, 16)}
    parent = {new_saga_id() for _ in range(4)}
    assert len(child) == 4 and not child & parent


def test_step_result_equals_the_constructed_one() -> None:
    sid = uuid.uuid4()
    built = step_result(int, "done", sid)
    assert built == SagaStepResult(step_type=int, response="done", saga_id=sid)
    assert describe(ValueError("bad")) == "ValueError: bad"


def test_fast_constructors_fill_every_slot() -> None:
    """The `__init__`-free builders of the hot path set what `__init__` sets."""
    from anycqrs.saga.storage._memory import MemorySagaStorage, _Row

    sid = uuid.uuid4()
    storage = MemorySagaStorage()
    storage._create_now(sid, "S", {}, SagaStatus.RUNNING, (), 1.5)
    row = storage._rows[sid.int]
    assert {s: getattr(row, s) for s in _Row.__slots__} == {
        "name": "S",
        "status": SagaStatus.RUNNING,
        "context": {},
        "version": 1,
        "attempts": 0,
        "lease_owner": None,
        "lease_until": 0.0,
        "created": 1.5,
        "updated": 1.5,
        "log": [],
    }


@pytest.mark.anyio
async def test_the_run_is_the_current_message_of_its_steps() -> None:
    """While a step runs the current message is its run, which builds
    `saga_message` of the saga's id and origin once, when first read."""
    from anycqrs.observability._context import _CURRENT, current_message
    from anycqrs.saga._observed import saga_message

    from ._sagas import Journal, OrderContext, make_mediator

    mediator = make_mediator(Journal())
    forward: Any = mediator.stream(OrderContext(order_id=1))
    await forward.__anext__()
    run = forward._run
    assert run._message is None  # nothing read it yet
    assert _CURRENT.get() is None  # reset after the step
    token = _CURRENT.set(run)
    try:
        read = current_message()
    finally:
        _CURRENT.reset(token)
    assert read == saga_message(run.saga_id, run.origin) and run.resolve() is read
    assert read.message_id == str(run.saga_id) == read.correlation_id
    await forward.aclose()


def test_a_stream_has_every_slot_of_a_constructed_forward() -> None:
    """`SagaMediator.stream` builds its `Forward` inline: the slots its
    `__init__` sets, and nothing else."""
    from anycqrs.saga._forward import Forward

    from ._sagas import Journal, OrderContext, make_mediator

    mediator = make_mediator(Journal())
    context, sid = OrderContext(order_id=1), uuid.uuid4()
    for saga_id in (None, sid, str(sid)):
        inline: Any = mediator.stream(context, saga_id)
        built = Forward(mediator._engine, context, None if saga_id is None else sid)
        slots = {s for s in Forward.__slots__ if hasattr(built, s)}
        assert slots == {s for s in Forward.__slots__ if hasattr(inline, s)}
        assert {s: getattr(inline, s) for s in slots} == {s: getattr(built, s) for s in slots}
        assert type(inline) is Forward and not inline.finished


def test_a_begun_run_has_every_slot_of_a_constructed_one() -> None:
    """`Starter.begin` builds the run of a new saga inline: the slots `Run` sets."""
    from anycqrs.saga._run import Run

    from ._sagas import Journal, OrderContext, OrderSaga, make_mediator

    mediator = make_mediator(Journal())
    context = OrderContext(order_id=1)
    run = mediator._starter.begin(context, None)
    assert type(run) is Run
    built = Run(run.saga_id, OrderSaga, context, 1, {"order_id": 1})
    assert {s: getattr(run, s) for s in Run.__slots__} == {
        **{s: getattr(built, s) for s in Run.__slots__},
        "snapshot": run.snapshot,
    }
    assert run.snapshot["order_id"] == 1
