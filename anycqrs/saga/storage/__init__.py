"""Saga storages: where saga status, context and step log live.

* `MemorySagaStorage`: in-process (the default).
* `SqliteSagaStorage`: stdlib ``sqlite3`` in worker threads (a file or ``":memory:"``).
* `PostgresSagaStorage`: PostgreSQL through psycopg 3 in worker threads
  (its own connections, or a ``psycopg_pool.ConnectionPool``).
* `SqlAlchemySagaStorage`: any database a sync SQLAlchemy 2 engine drives
  (PostgreSQL, MySQL/MariaDB, SQLite), in worker threads; extra
  ``sqlalchemy``, imported on first use.

All implement `SagaStorage`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._types import SagaState as SagaState
from .._types import SagaStepEntry as SagaStepEntry
from .._types import StepRecord as StepRecord
from ._memory import MemorySagaStorage as MemorySagaStorage
from ._postgres import PostgresSagaStorage as PostgresSagaStorage
from ._protocol import SagaStorage as SagaStorage
from ._sqlite import SqliteSagaStorage as SqliteSagaStorage

if TYPE_CHECKING:
    from ._sqlalchemy import SqlAlchemySagaStorage as SqlAlchemySagaStorage

__all__ = [
    "MemorySagaStorage",
    "PostgresSagaStorage",
    "SagaState",
    "SagaStepEntry",
    "SagaStorage",
    "SqlAlchemySagaStorage",
    "SqliteSagaStorage",
    "StepRecord",
]


def __getattr__(name: str) -> Any:
    if name == "SqlAlchemySagaStorage":  # needs SQLAlchemy: imported on first use
        from ._sqlalchemy import SqlAlchemySagaStorage

        return SqlAlchemySagaStorage
    raise AttributeError(f"module 'anycqrs.saga.storage' has no attribute {name!r}")
