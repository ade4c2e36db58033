"""The engine's small values: step-log entries, saga ids, step results."""

from __future__ import annotations

import time
import uuid

from anycqrs.saga import SagaStepResult
from anycqrs.saga._log import ACT, STARTED, describe, entry, new_saga_id, record, step_result
from anycqrs.saga.storage import StepRecord


def test_entry_is_a_step_record() -> None:
    now = time.time()
    built = entry(("Pay", ACT, STARTED, None, now))
    assert type(built) is StepRecord
    assert built == StepRecord("Pay", ACT, STARTED, None, now)
    assert built.step_name == "Pay" and built.at == now
    stamped = record("Pay", ACT, STARTED, {"resumed": True})
    assert stamped.details == {"resumed": True} and stamped.at >= now


def test_new_saga_id_is_a_random_version_4_uuid() -> None:
    ids = {new_saga_id() for _ in range(1000)}
    assert len(ids) == 1000
    sample = ids.pop()
    assert sample.version == 4 and sample.variant == uuid.RFC_4122
    assert uuid.UUID(str(sample)) == sample and hash(uuid.UUID(str(sample))) == hash(sample)
    assert sample.is_safe is uuid.SafeUUID.unknown


def test_step_result_equals_the_constructed_one() -> None:
    sid = uuid.uuid4()
    built = step_result(int, "done", sid)
    assert built == SagaStepResult(step_type=int, response="done", saga_id=sid)
    assert describe(ValueError("bad")) == "ValueError: bad"
