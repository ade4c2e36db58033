"""One contract suite for every saga storage (memory, SQLite, PostgreSQL, its
pool option, SQLAlchemy on SQLite, PostgreSQL and MariaDB)."""

from __future__ import annotations

import time
import uuid
from datetime import timezone
from typing import Any

import anyio
import pytest
import sqlalchemy

from anycqrs.errors import (
    ConcurrencyError,
    SagaAlreadyExistsError,
    SagaConcurrencyError,
    SagaNotFoundError,
)
from anycqrs.saga import SagaStatus, SagaStepStatus, StepAction
from anycqrs.saga.storage import PostgresSagaStorage, SagaStorage, SqliteSagaStorage, StepRecord

from ._sagas import drop_sqlalchemy_tables, drop_tables, sqlalchemy_engine

pytestmark = pytest.mark.anyio

ACT, COMP = StepAction.ACT, StepAction.COMPENSATE
STARTED, COMPLETED, FAILED = SagaStepStatus.STARTED, SagaStepStatus.COMPLETED, SagaStepStatus.FAILED


def rec(name: str, action: StepAction, status: SagaStepStatus, details: Any = None) -> StepRecord:
    return StepRecord(name, action, status, details, time.time())


async def test_create_load_and_history(storage: SagaStorage) -> None:
    sid = uuid.uuid4()
    context = {"order_id": 7, "items": ["a", "b"], "nested": {"x": 1.5}}
    version = await storage.create_saga(
        sid, "OrderSaga", context, status=SagaStatus.RUNNING, entries=[rec("A", ACT, STARTED)]
    )
    assert version == 1
    state = await storage.load_saga_state(sid)
    assert state.saga_id == sid
    assert state.saga_name == "OrderSaga"
    assert state.status is SagaStatus.RUNNING
    assert state.context == context
    assert state.version == 1
    assert state.recovery_attempts == 0
    assert state.created_at.tzinfo is not None
    assert state.updated_at.utcoffset() == timezone.utc.utcoffset(None)
    history = await storage.get_step_history(sid)
    assert [(e.step_name, e.action, e.status, e.details) for e in history] == [
        ("A", "act", STARTED, None)
    ]


async def test_save_appends_in_order_and_bumps_version(storage: SagaStorage) -> None:
    sid = uuid.uuid4()
    await storage.create_saga(sid, "S", {"n": 0}, status=SagaStatus.RUNNING)
    v = await storage.save(
        sid, 1, context={"n": 1}, entries=[rec("A", ACT, COMPLETED), rec("B", ACT, STARTED)]
    )
    assert v == 2
    v = await storage.save(
        sid,
        v,
        status=SagaStatus.COMPENSATING,
        entries=[rec("B", ACT, FAILED, {"error": "Boom: x"}), rec("A", COMP, STARTED)],
    )
    v = await storage.save(sid, v, status=SagaStatus.FAILED, entries=[rec("A", COMP, COMPLETED)])
    assert v == 4
    state = await storage.load_saga_state(sid)
    assert (state.status, state.version, state.context) == (SagaStatus.FAILED, 4, {"n": 1})
    history = await storage.get_step_history(sid)
    assert [(e.step_name, e.action, e.status) for e in history] == [
        ("A", ACT, COMPLETED),
        ("B", ACT, STARTED),
        ("B", ACT, FAILED),
        ("A", COMP, STARTED),
        ("A", COMP, COMPLETED),
    ]
    assert history[2].details == {"error": "Boom: x"}
    assert all(e.created_at.tzinfo is not None for e in history)


async def test_stale_writer_gets_concurrency_error_and_nothing_is_written(
    storage: SagaStorage,
) -> None:
    sid = uuid.uuid4()
    await storage.create_saga(sid, "S", {"n": 0}, status=SagaStatus.RUNNING)
    await storage.save(sid, 1, context={"n": 1}, entries=[rec("A", ACT, COMPLETED)])
    with pytest.raises(ConcurrencyError) as caught:
        await storage.save(
            sid, 1, status=SagaStatus.FAILED, context={"n": 99}, entries=[rec("X", ACT, FAILED)]
        )
    assert isinstance(caught.value, SagaConcurrencyError)
    assert caught.value.expected_version == 1
    state = await storage.load_saga_state(sid)
    assert (state.status, state.context, state.version) == (SagaStatus.RUNNING, {"n": 1}, 2)
    assert [e.step_name for e in await storage.get_step_history(sid)] == ["A"]


async def test_concurrent_writers_exactly_one_wins(storage: SagaStorage) -> None:
    sid = uuid.uuid4()
    await storage.create_saga(sid, "S", {}, status=SagaStatus.RUNNING)
    outcomes: list[str] = []

    async def write(n: int) -> None:
        try:
            await storage.save(sid, 1, context={"n": n}, entries=[rec(f"W{n}", ACT, COMPLETED)])
            outcomes.append("ok")
        except SagaConcurrencyError:
            outcomes.append("stale")

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for n in range(5):
                tg.start_soon(write, n)
    assert sorted(outcomes) == ["ok"] + ["stale"] * 4
    assert len(await storage.get_step_history(sid)) == 1
    assert (await storage.load_saga_state(sid)).version == 2


async def test_unknown_and_duplicate_sagas(storage: SagaStorage) -> None:
    sid = uuid.uuid4()
    with pytest.raises(SagaNotFoundError):
        await storage.load_saga_state(sid)
    with pytest.raises(SagaNotFoundError):
        await storage.save(sid, 1, status=SagaStatus.FAILED)
    assert await storage.get_step_history(sid) == []
    await storage.create_saga(sid, "S", {"a": 1}, status=SagaStatus.PENDING)
    with pytest.raises(SagaAlreadyExistsError):
        await storage.create_saga(
            sid, "S", {"a": 2}, status=SagaStatus.RUNNING, entries=[rec("A", ACT, STARTED)]
        )
    state = await storage.load_saga_state(sid)
    assert (state.context, state.status) == ({"a": 1}, SagaStatus.PENDING)
    assert await storage.get_step_history(sid) == []


async def test_claim_filters_leases_and_counts_attempts(storage: SagaStorage) -> None:
    ids = [uuid.uuid4() for _ in range(4)]
    statuses = [
        SagaStatus.RUNNING,
        SagaStatus.COMPENSATING,
        SagaStatus.COMPLETED,
        SagaStatus.PENDING,
    ]
    for sid, status in zip(ids, statuses):
        await storage.create_saga(sid, "S", {}, status=status)
    assert await storage.claim(owner="w", lease_seconds=60, stale_after=3600, limit=10) == []
    claimed = await storage.claim(owner="w1", lease_seconds=60, stale_after=0, limit=10)
    assert sorted(str(s.saga_id) for s in claimed) == sorted(
        str(i) for i, st in zip(ids, statuses) if st is not SagaStatus.COMPLETED
    )
    assert all(s.recovery_attempts == 1 and s.version == 2 for s in claimed)
    # leased: nobody else gets them, not even by id
    assert await storage.claim(owner="w2", lease_seconds=60, stale_after=0, limit=10) == []
    assert await storage.claim(owner="w2", lease_seconds=60, saga_id=ids[0]) == []
    # a release by another owner does nothing; by the owner frees the saga
    await storage.release(ids[0], "w2")
    assert await storage.claim(owner="w2", lease_seconds=60, saga_id=ids[0]) == []
    await storage.release(ids[0], "w1")
    again = await storage.claim(owner="w2", lease_seconds=60, saga_id=ids[0])
    assert [s.recovery_attempts for s in again] == [2]
    # finished sagas are never claimed
    assert await storage.claim(owner="w3", lease_seconds=60, saga_id=ids[2]) == []
    # the claim fenced off the old version
    with pytest.raises(SagaConcurrencyError):
        await storage.save(ids[0], 1, status=SagaStatus.FAILED)


async def test_claim_by_saga_name_and_failed_compensations(storage: SagaStorage) -> None:
    mine, theirs, broken = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await storage.create_saga(mine, "Mine", {}, status=SagaStatus.RUNNING)
    await storage.create_saga(theirs, "Theirs", {}, status=SagaStatus.RUNNING)
    await storage.create_saga(broken, "Mine", {}, status=SagaStatus.COMPENSATION_FAILED)
    assert await storage.claim(owner="w", lease_seconds=0, saga_names=(), limit=10) == []
    assert (
        await storage.claim(owner="w", lease_seconds=0, saga_id=theirs, saga_names=["Mine"]) == []
    )
    claimed = await storage.claim(owner="w", lease_seconds=0, saga_names=["Mine"], limit=10)
    assert [s.saga_id for s in claimed] == [mine]  # COMPENSATION_FAILED not asked for
    state = await storage.load_saga_state(theirs)
    assert (state.version, state.recovery_attempts) == (1, 0)  # not touched
    # COMPENSATION_FAILED: taken while claimed fewer than retry_compensations times
    for attempt in (1, 2):
        claimed = await storage.claim(
            owner="w", lease_seconds=0, saga_id=broken, saga_names=["Mine"], retry_compensations=2
        )
        assert [(s.status, s.recovery_attempts) for s in claimed] == [
            (SagaStatus.COMPENSATION_FAILED, attempt)
        ]
    assert (
        await storage.claim(owner="w", lease_seconds=0, saga_id=broken, retry_compensations=2) == []
    )
    batch = await storage.claim(owner="w", lease_seconds=0, limit=10, retry_compensations=3)
    assert sorted(str(s.saga_id) for s in batch) == sorted(map(str, (mine, theirs, broken)))


async def test_expired_lease_is_claimable(storage: SagaStorage) -> None:
    sid = uuid.uuid4()
    await storage.create_saga(sid, "S", {}, status=SagaStatus.RUNNING)
    assert len(await storage.claim(owner="w1", lease_seconds=0, saga_id=sid)) == 1
    assert len(await storage.claim(owner="w2", lease_seconds=60, saga_id=sid)) == 1


async def test_claim_limit_and_concurrent_claimers(make_storage: Any) -> None:
    storages = [make_storage() for _ in range(4)]
    ids = [uuid.uuid4() for _ in range(12)]
    for sid in ids:
        await storages[0].create_saga(sid, "S", {}, status=SagaStatus.RUNNING)
    assert len(await storages[0].claim(owner="x", lease_seconds=0, stale_after=0, limit=5)) == 5
    got: list[list[uuid.UUID]] = [[] for _ in storages]

    async def worker(n: int) -> None:
        while True:
            batch = await storages[n].claim(owner=f"w{n}", lease_seconds=60, limit=2)
            if not batch:
                return
            got[n].extend(s.saga_id for s in batch)

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for n in range(len(storages)):
                tg.start_soon(worker, n)
    everything = [sid for part in got for sid in part]
    assert sorted(map(str, everything)) == sorted(map(str, ids))


def test_table_names_are_validated(tmp_path: Any) -> None:
    rule = "lowercase letters, digits and '_'"
    with pytest.raises(
        ValueError, match=f"Invalid sagas_table name 'bad; drop table x': use {rule}"
    ):
        SqliteSagaStorage(tmp_path / "x.db", sagas_table="bad; drop table x")
    with pytest.raises(ValueError, match="Invalid log_table name '1bad'"):
        PostgresSagaStorage("postgresql://nowhere", log_table="1bad")
    with pytest.raises(ValueError, match="Invalid sagas_table name 'Sagas'"):
        PostgresSagaStorage("postgresql://nowhere", sagas_table="Sagas")
    with pytest.raises(ValueError, match="max_connections"):
        PostgresSagaStorage("postgresql://nowhere", max_connections=0)
    with pytest.raises(ValueError, match="PostgresSagaStorage needs a conninfo/dsn or a pool"):
        PostgresSagaStorage()
    from anycqrs.saga.storage import SqlAlchemySagaStorage

    with pytest.raises(ValueError, match="Invalid log_table name 'x-y'"):
        SqlAlchemySagaStorage(sqlalchemy.create_engine("sqlite://"), log_table="x-y")


async def test_sqlite_memory_database_and_reopen(tmp_path: Any) -> None:
    storage = SqliteSagaStorage()
    assert storage.path == ":memory:"
    sid = uuid.uuid4()
    await storage.create_saga(sid, "S", {"k": "v"}, status=SagaStatus.RUNNING)
    assert (await storage.load_saga_state(sid)).context == {"k": "v"}
    storage.close()
    path = tmp_path / "again.db"
    first = SqliteSagaStorage(path)
    await first.create_saga(sid, "S", {"k": 1}, status=SagaStatus.RUNNING)
    first.close()
    second = SqliteSagaStorage(path)
    assert (await second.load_saga_state(sid)).context == {"k": 1}
    second.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgres", "sqlalchemy-sqlite", "sqlalchemy-postgres"])
async def test_schema_qualified_table_names(
    kind: str, tmp_path: Any, unique: str, request: pytest.FixtureRequest
) -> None:
    sid = uuid.uuid4()
    sagas, log = f"sagas_{unique}", f"saga_log_{unique}"
    storage: SagaStorage
    schema = "main" if kind.endswith("sqlite") else "public"
    engine = sqlalchemy_engine(kind, request, tmp_path)
    if engine is not None:
        from anycqrs.saga.storage import SqlAlchemySagaStorage

        storage = SqlAlchemySagaStorage(
            engine, sagas_table=f"{schema}.{sagas}", log_table=f"{schema}.{log}"
        )
    elif kind == "sqlite":
        storage = SqliteSagaStorage(
            tmp_path / "q.db", sagas_table=f"main.{sagas}", log_table=f"main.{log}"
        )
    else:
        dsn = request.getfixturevalue("postgres_dsn")
        storage = PostgresSagaStorage(dsn, sagas_table=f"public.{sagas}", log_table=f"public.{log}")
    try:
        await storage.create_saga(
            sid, "S", {"k": 1}, status=SagaStatus.RUNNING, entries=[rec("A", ACT, STARTED)]
        )
        assert (await storage.load_saga_state(sid)).context == {"k": 1}
        assert [e.step_name for e in await storage.get_step_history(sid)] == ["A"]
    finally:
        storage.close()  # type: ignore[attr-defined]
        if kind == "postgres":
            drop_tables(dsn, f"public.{sagas}", f"public.{log}")
        if engine is not None:
            drop_sqlalchemy_tables(engine, f"{schema}.{sagas}", f"{schema}.{log}")
            engine.dispose()
