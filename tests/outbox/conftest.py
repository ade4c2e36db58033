"""Outbox fixtures: one harness per database (a real SQLite file in tmp_path,
the real PostgreSQL, with relay stores on a ``psycopg_pool`` pool too; the
SQLAlchemy outbox on SQLite, PostgreSQL and MariaDB), each with its own
uniquely named tables."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The suite runs with --import-mode=importlib: make the sibling helper module
# importable by the test modules of this directory.
if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))

from .outbox_helpers import Harness, PostgresHarness, SqlAlchemyHarness, SqliteHarness


@pytest.fixture(
    params=[
        "sqlite",
        "postgres",
        "postgres-pool",
        "sqlalchemy-sqlite",
        "sqlalchemy-postgres",
        "sqlalchemy-mariadb",
    ]
)
def db(request: pytest.FixtureRequest, tmp_path: Path, unique: str) -> Iterator[Harness]:
    harness: SqliteHarness | PostgresHarness | SqlAlchemyHarness
    kind = request.param
    if kind == "sqlite":
        harness = SqliteHarness(tmp_path / "app.db", unique)
    elif kind in ("postgres", "postgres-pool"):
        dsn = request.getfixturevalue("postgres_dsn")
        harness = PostgresHarness(dsn, unique, pooled=kind == "postgres-pool")
    elif kind == "sqlalchemy-sqlite":
        harness = SqlAlchemyHarness(kind, f"sqlite:///{tmp_path / 'app.db'}", unique, session=False)
    elif kind == "sqlalchemy-postgres":
        dsn = request.getfixturevalue("postgres_dsn")
        url = dsn.replace("postgresql://", "postgresql+psycopg://", 1)
        harness = SqlAlchemyHarness(kind, url, unique, session=True)
    else:
        url = request.getfixturevalue("mariadb_url")
        harness = SqlAlchemyHarness(kind, url, unique, session=True)
    try:
        yield harness
    finally:
        harness.close()


@pytest.fixture
def pg(postgres_dsn: str, unique: str) -> Iterator[PostgresHarness]:
    harness = PostgresHarness(postgres_dsn, unique)
    try:
        yield harness
    finally:
        harness.close()
