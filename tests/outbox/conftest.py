"""Outbox fixtures: one harness per database (a real SQLite file in tmp_path,
the real PostgreSQL), each with its own uniquely named tables."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The suite runs with --import-mode=importlib: make the sibling helper module
# importable by the test modules of this directory.
if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))

from .outbox_helpers import Harness, PostgresHarness, SqliteHarness


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path, unique: str) -> Iterator[Harness]:
    harness: SqliteHarness | PostgresHarness
    if request.param == "sqlite":
        harness = SqliteHarness(tmp_path / "app.db", unique)
    else:
        harness = PostgresHarness(request.getfixturevalue("postgres_dsn"), unique)
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
