"""The persistence plumbing every SQL store shares (saga storages, outboxes, and
the inbox to come): JSON text, table names, time, transactions, connections.

Conventions (the same in every store):

* **JSON** is the codec of `anycqrs.serialization` (`dumps` / `loads`), the one
  the brokers put on the wire; `dumps` here returns text and raises
  `SerializationError`, `loads` raises `DeserializationError`.
* **Table names** follow one rule (`table_name`): lowercase letters, digits and
  `_`, not starting with a digit, at most 48 characters, optionally
  `schema.table`. They are always spliced into SQL double-quoted.
* **Time**: stores read and write aware UTC datetimes (`utc`, `utcnow`);
  SQLite keeps epoch seconds.
* **Transactions**: on SQLite every write is `BEGIN IMMEDIATE` ... `COMMIT`
  (`sqlite_transaction(connection, fn, *args)`), rolled back on any error; on PostgreSQL it is
  psycopg's `connection.transaction()`.
* **Where the thread hop happens**: database code is blocking and never hops;
  it runs on a connection holder (`SqliteConnection`, `PostgresConnections`,
  `PooledConnections` over the application's ``psycopg_pool`` pool)
  or on the caller's connection (`SqliteCaller`, `PostgresCaller`). The async
  layer above it hops to a worker thread **once per unit of work** (one
  transaction, or one claim plus its decoding) through `in_thread` and never
  touches a connection: the saga storages' async methods, the outbox relay
  (one hop to claim, one to settle) and a writer's `run_in_transaction`.
  A store whose API is blocking (the outbox writers and relay stores) is
  called from inside such a hop.
* **Schema on the caller's connection** (`SqliteCaller`, `PostgresCaller`):
  created on first use inside the caller's transaction, and believed to exist
  only once that creation is known to be committed, so a caller's rollback
  never leaves a store writing to a table that is gone.

**SQLAlchemy** (`anycqrs._persistence._sqlalchemy`, imported only by the
SQLAlchemy stores so nothing else needs SQLAlchemy): portable column types
(`UtcDateTime`, `JsonText`), `create_tables`, and `SqlAlchemyCaller` for the
caller's ``Session``/``Connection``; MySQL/MariaDB commit on DDL, so there a
schema is created on a connection of its own.

A store that writes in the caller's transaction (the outbox writers; the inbox
of processed message ids next) is a table name, its DDL, a caller and its
statements:

```python
class SqliteInbox:
    def __init__(self, connection: sqlite3.Connection, *, table: str = "anycqrs_inbox"):
        name = table_name(table, "inbox table")
        self._caller = SqliteCaller(connection, name, [
            f"CREATE TABLE IF NOT EXISTS {name.quoted} (handler TEXT NOT NULL, "
            "message_id TEXT NOT NULL, PRIMARY KEY (handler, message_id))"])
        self._insert = f"INSERT INTO {name.quoted} VALUES (?, ?) ON CONFLICT DO NOTHING"

    def first_time(self, handler: str, message_id: UUID) -> bool:
        self._caller.prepare()
        cursor = self._caller.connection.execute(self._insert, (handler, str(message_id)))
        return cursor.rowcount == 1
```
"""

from ._common import Table as Table
from ._common import as_is as as_is
from ._common import dumps as dumps
from ._common import in_thread as in_thread
from ._common import loads as loads
from ._common import table_name as table_name
from ._common import utc as utc
from ._common import utcnow as utcnow
from ._postgres import PooledConnections as PooledConnections
from ._postgres import PostgresCaller as PostgresCaller
from ._postgres import PostgresConnections as PostgresConnections
from ._postgres import create_schema as create_schema
from ._postgres import store_connections as store_connections
from ._sqlite import SqliteCaller as SqliteCaller
from ._sqlite import SqliteConnection as SqliteConnection
from ._sqlite import sqlite_transaction as sqlite_transaction

__all__ = [
    "PooledConnections",
    "PostgresCaller",
    "PostgresConnections",
    "SqliteCaller",
    "SqliteConnection",
    "Table",
    "as_is",
    "create_schema",
    "dumps",
    "in_thread",
    "loads",
    "sqlite_transaction",
    "store_connections",
    "table_name",
    "utc",
    "utcnow",
]
