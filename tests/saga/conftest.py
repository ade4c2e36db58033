"""Saga storages for the shared contract suite: memory, SQLite, PostgreSQL (its
own connections, and a ``psycopg_pool`` pool), and the SQLAlchemy storage on
SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from anycqrs.saga.storage import (
    MemorySagaStorage,
    PostgresSagaStorage,
    SagaStorage,
    SqliteSagaStorage,
)

from ._sagas import drop_sqlalchemy_tables, drop_tables, sqlalchemy_engine


@pytest.fixture(
    params=[
        "memory",
        "sqlite",
        "postgres",
        "postgres-pool",
        "sqlalchemy-sqlite",
        "sqlalchemy-postgres",
        "sqlalchemy-mariadb",
    ]
)
def storage_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_storage(
    storage_kind: str, request: pytest.FixtureRequest, tmp_path: Path, unique: str
) -> Iterator[object]:
    """A factory of storages sharing one database (several workers, one DB)."""
    made: list[SagaStorage] = []
    postgres = storage_kind in ("postgres", "postgres-pool")
    dsn = request.getfixturevalue("postgres_dsn") if postgres else ""
    pool = None
    if storage_kind == "postgres-pool":
        from psycopg_pool import ConnectionPool

        pool = ConnectionPool(dsn, min_size=1, max_size=4, open=True)
    memory = MemorySagaStorage()
    sagas, log = f"sagas_{unique}", f"saga_log_{unique}"
    engine = sqlalchemy_engine(storage_kind, request, tmp_path)

    def make() -> SagaStorage:
        storage: SagaStorage
        if storage_kind == "memory":
            storage = memory
        elif engine is not None:
            from anycqrs.saga.storage import SqlAlchemySagaStorage

            storage = SqlAlchemySagaStorage(engine, sagas_table=sagas, log_table=log)
        elif storage_kind == "sqlite":
            storage = SqliteSagaStorage(tmp_path / "sagas.db", sagas_table=sagas, log_table=log)
        elif pool is not None:
            storage = PostgresSagaStorage(pool=pool, sagas_table=sagas, log_table=log)
        else:
            storage = PostgresSagaStorage(dsn, sagas_table=sagas, log_table=log)
        made.append(storage)
        return storage

    yield make
    for storage in made:
        close = getattr(storage, "close", None)
        if close is not None:
            close()
    if pool is not None:
        pool.close()
    if dsn:
        drop_tables(dsn, sagas, log)
    if engine is not None:
        drop_sqlalchemy_tables(engine, sagas, log)
        engine.dispose()


@pytest.fixture
def storage(make_storage: object) -> SagaStorage:
    result: SagaStorage = make_storage()  # type: ignore[operator]
    return result
