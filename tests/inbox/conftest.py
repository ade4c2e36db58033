"""Inbox fixtures: one harness per store and database (a SQLite file in
tmp_path, the real PostgreSQL with own connections and a pool, SQLAlchemy on
SQLite, PostgreSQL and MariaDB), each with its own uniquely named tables."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

for _helpers in (Path(__file__).parent, Path(__file__).parent.parent / "brokers"):
    if str(_helpers) not in sys.path:
        sys.path.insert(0, str(_helpers))

from .inbox_helpers import Harness, PostgresHarness, SqlAlchemyHarness, SqliteHarness  # noqa: E402

KINDS = [
    "sqlite",
    "sqlite-batch",
    "postgres",
    "postgres-batch",
    "postgres-optimistic",
    "postgres-pool",
    "sqlalchemy-sqlite",
    "sqlalchemy-postgres",
    "sqlalchemy-mariadb",
]


@pytest.fixture(params=KINDS)
def db(request: pytest.FixtureRequest, tmp_path: Path, unique: str) -> Iterator[Harness]:
    harness: Harness
    kind = request.param
    if kind in ("sqlite", "sqlite-batch"):
        harness = SqliteHarness(tmp_path / "app.db", unique)
    elif kind in ("postgres", "postgres-pool", "postgres-batch", "postgres-optimistic"):
        dsn = request.getfixturevalue("postgres_dsn")
        harness = PostgresHarness(dsn, unique, pooled=kind == "postgres-pool")
    elif kind == "sqlalchemy-sqlite":
        harness = SqlAlchemyHarness(kind, f"sqlite:///{tmp_path / 'app.db'}", unique)
    elif kind == "sqlalchemy-postgres":
        dsn = request.getfixturevalue("postgres_dsn")
        url = dsn.replace("postgresql://", "postgresql+psycopg://", 1)
        harness = SqlAlchemyHarness(kind, url, unique)
    else:
        harness = SqlAlchemyHarness(kind, request.getfixturevalue("mariadb_url"), unique)
    harness.batch = kind.endswith(("-batch", "-optimistic"))
    harness.optimistic = kind.endswith("-optimistic")
    try:
        yield harness
    finally:
        harness.close()
