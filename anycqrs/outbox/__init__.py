"""Transactional outbox: store notification events in the same database
transaction as your domain writes, and let a relay publish them to a broker.

* Writers bound to **your** transaction: `SqliteOutbox` (a ``sqlite3``
  connection you own), `PostgresOutbox` (a psycopg 3 connection you
  own, e.g. one borrowed from a ``psycopg_pool.ConnectionPool`` per request)
  and `SqlAlchemyOutbox` (a SQLAlchemy 2 ``Session`` or ``Connection``:
  PostgreSQL, MySQL/MariaDB, SQLite; extra ``sqlalchemy``, imported on
  first use). ``add`` stages a row; your commit makes it durable together with your
  domain rows, your rollback drops both.
* Relay stores on their own connection: `SqliteOutboxStore`,
  `PostgresOutboxStore` (several relays at once, ``FOR UPDATE SKIP LOCKED``;
  its own connection or a ``psycopg_pool.ConnectionPool``) and
  `SqlAlchemyOutboxStore` (a sync ``Engine``).
* `OutboxRelay` publishes batches to any
  `anycqrs.brokers.MessageBroker`, marks them sent, retries with the
  backoff of an `anycqrs.RetryPolicy` and dead-letters when it gives up
  (`OutboxRetryPolicy` is a deprecated factory of that policy).

Example:
    ```python
    conn = sqlite3.connect("app.db", check_same_thread=False)
    outbox = SqliteOutbox(conn)

    def place_order(order_id: int) -> None:
        conn.execute("INSERT INTO orders (id) VALUES (?)", (order_id,))
        outbox.add(NotificationEvent(payload=OrderPlaced(order_id=order_id), topic="orders"))

    await outbox.run_in_transaction(place_order, 42)

    relay = OutboxRelay(SqliteOutboxStore("app.db"), broker)
    async with anyio.create_task_group() as tg:
        await tg.start(relay.run)
    ```
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._model import DEFAULT_TABLE as DEFAULT_TABLE
from ._model import OutboxItem as OutboxItem
from ._model import OutboxRecord as OutboxRecord
from ._model import OutboxRetryPolicy as OutboxRetryPolicy
from ._model import OutboxSettlement as OutboxSettlement
from ._model import OutboxStatus as OutboxStatus
from ._postgres import PostgresOutbox as PostgresOutbox
from ._postgres import PostgresOutboxStore as PostgresOutboxStore
from ._protocols import OutboxStore as OutboxStore
from ._protocols import OutboxWriter as OutboxWriter
from ._relay import OutboxRelay as OutboxRelay
from ._sqlite import SqliteOutbox as SqliteOutbox
from ._sqlite import SqliteOutboxStore as SqliteOutboxStore

if TYPE_CHECKING:
    from ._sqlalchemy import SqlAlchemyOutbox as SqlAlchemyOutbox
    from ._sqlalchemy import SqlAlchemyOutboxStore as SqlAlchemyOutboxStore

__all__ = [
    "DEFAULT_TABLE",
    "OutboxItem",
    "OutboxRecord",
    "OutboxRelay",
    "OutboxRetryPolicy",
    "OutboxSettlement",
    "OutboxStatus",
    "OutboxStore",
    "OutboxWriter",
    "PostgresOutbox",
    "PostgresOutboxStore",
    "SqlAlchemyOutbox",
    "SqlAlchemyOutboxStore",
    "SqliteOutbox",
    "SqliteOutboxStore",
]


def __getattr__(name: str) -> Any:
    if name in ("SqlAlchemyOutbox", "SqlAlchemyOutboxStore"):  # need SQLAlchemy: on first use
        from . import _sqlalchemy

        return getattr(_sqlalchemy, name)
    raise AttributeError(f"module 'anycqrs.outbox' has no attribute {name!r}")
