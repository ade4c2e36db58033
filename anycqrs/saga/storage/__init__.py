"""Saga storages: where saga status, context and step log live.

* :class:`MemorySagaStorage`: in-process (the default).
* :class:`SqliteSagaStorage`: stdlib ``sqlite3`` in worker threads (a file or ``":memory:"``).
* :class:`PostgresSagaStorage`: PostgreSQL through psycopg 3 in worker threads.

All implement :class:`SagaStorage`.
"""

from .._types import SagaState as SagaState
from .._types import SagaStepEntry as SagaStepEntry
from .._types import StepRecord as StepRecord
from ._memory import MemorySagaStorage as MemorySagaStorage
from ._postgres import PostgresSagaStorage as PostgresSagaStorage
from ._protocol import SagaStorage as SagaStorage
from ._sqlite import SqliteSagaStorage as SqliteSagaStorage

__all__ = [
    "MemorySagaStorage",
    "PostgresSagaStorage",
    "SagaState",
    "SagaStepEntry",
    "SagaStorage",
    "SqliteSagaStorage",
    "StepRecord",
]
