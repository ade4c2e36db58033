"""The shared persistence plumbing: table names, JSON, time, the SQLite
transaction helper and both backends' connection holders."""

from __future__ import annotations

import sqlite3
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from anycqrs import serialization
from anycqrs._persistence import (
    PostgresCaller,
    PostgresConnections,
    SqliteCaller,
    SqliteConnection,
    Table,
    dumps,
    loads,
    sqlite_transaction,
    table_name,
    utc,
    utcnow,
)
from anycqrs.errors import DeserializationError, SerializationError


class Boom(Exception):
    pass


class TestTableName:
    """One rule for every table name, one error naming the name and the rule."""

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("outbox", Table("outbox")),
            ("_a1", Table("_a1")),
            ("app.sagas", Table("sagas", schema="app")),
            ("x" * 48, Table("x" * 48)),
        ],
    )
    def test_valid(self, value: str, expected: Table) -> None:
        assert table_name(value, "table") == expected
        assert str(expected) == value

    @pytest.mark.parametrize(
        "value",
        ["Outbox", "1x", "a-b", 'x"; DROP TABLE y; --', "x" * 49, "", "a.b.c", ".a", "a.", 7],
    )
    def test_invalid(self, value: Any) -> None:
        with pytest.raises(ValueError) as caught:
            table_name(value, "log_table")
        message = str(caught.value)
        assert f"Invalid log_table name {value!r}" in message
        assert "lowercase letters, digits and '_'" in message
        assert "at most 48 characters" in message

    def test_quoting_and_index_names(self) -> None:
        plain, qualified = Table("t"), Table("t", schema="s")
        assert plain.quoted == '"t"' and qualified.quoted == '"s"."t"'
        assert plain.index("_i") == '"t_i" ON "t"'
        assert qualified.index("_i") == '"s_t_i" ON "s"."t"'
        assert qualified.index("_i", sqlite=True) == '"s"."s_t_i" ON "t"'
        assert plain.index("_i", sqlite=True) == plain.index("_i")


class TestJson:
    """The codec is the one of anycqrs.serialization, as text."""

    def test_round_trip_is_serialization_codec(self) -> None:
        data = {"a": [1, 2.5, None, True], "b": {"c": "é"}}
        assert dumps(data) == serialization.dumps(data).decode()
        assert loads(dumps(data)) == data

    def test_errors(self) -> None:
        with pytest.raises(SerializationError, match="dict"):
            dumps({"bad": object()})
        with pytest.raises(DeserializationError, match="malformed JSON"):
            loads("{nope")


def test_utc() -> None:
    moment = utc(86400.5)
    assert moment == datetime(1970, 1, 2, 0, 0, 0, 500000, tzinfo=timezone.utc)
    assert utc(moment.timestamp()) == moment
    now = utcnow()
    assert now.tzinfo is timezone.utc and abs(now.timestamp() - utcnow().timestamp()) < 60


class TestSqliteTransaction:
    """BEGIN IMMEDIATE, commit on success, roll back on any error."""

    @staticmethod
    def _connect(path: Path, **kwargs: Any) -> sqlite3.Connection:
        connection: sqlite3.Connection = sqlite3.connect(path, isolation_level=None, **kwargs)
        connection.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
        return connection

    def test_commit_and_rollback(self, tmp_path: Path) -> None:
        connection = self._connect(tmp_path / "db")

        def insert(x: int, fail: bool = False) -> int:
            connection.execute("INSERT INTO t VALUES (?)", (x,))
            if fail:
                raise Boom
            return x

        assert sqlite_transaction(connection, insert, 1) == 1
        with pytest.raises(Boom):
            sqlite_transaction(connection, insert, 2, True)
        assert not connection.in_transaction
        assert connection.execute("SELECT x FROM t").fetchall() == [(1,)]

    def test_takes_the_write_lock_up_front(self, tmp_path: Path) -> None:
        connection = self._connect(tmp_path / "db")
        other = self._connect(tmp_path / "db", timeout=0)

        def blocked() -> None:  # no write yet: the lock is held anyway
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")

        sqlite_transaction(connection, blocked)
        other.execute("BEGIN IMMEDIATE")
        other.rollback()

    def test_joins_an_open_transaction(self, tmp_path: Path) -> None:
        connection = self._connect(tmp_path / "db")
        connection.execute("BEGIN")
        connection.execute("INSERT INTO t VALUES (1)")

        def fail() -> None:
            connection.execute("INSERT INTO t VALUES (2)")
            raise Boom

        with pytest.raises(Boom):
            sqlite_transaction(connection, fail)
        assert connection.execute("SELECT x FROM t").fetchall() == []  # all rolled back

    def test_connection_writes_and_reopens(self, tmp_path: Path) -> None:
        setups: list[sqlite3.Connection] = []

        def setup(connection: sqlite3.Connection) -> None:
            setups.append(connection)
            connection.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER)")

        db = SqliteConnection(tmp_path / "db", timeout=1.0, setup=setup)
        db.write(lambda c: c.execute("INSERT INTO t VALUES (1)"))

        def insert_then_fail(connection: sqlite3.Connection) -> None:
            connection.execute("INSERT INTO t VALUES (2)")
            raise Boom

        with pytest.raises(Boom):
            db.write(insert_then_fail)
        db.close()
        assert db.call(lambda c: c.execute("SELECT x FROM t").fetchall()) == [(1,)]
        assert len(setups) == 2  # once per connection
        db.close()


class TestPostgresConnections:
    """Autocommit connections, reused, a broken one replaced; setup runs once."""

    def test_reuse_setup_and_broken_connections(self, postgres_dsn: str) -> None:
        setups: list[Any] = []
        db = PostgresConnections(postgres_dsn, size=2, setup=setups.append)
        try:
            first = db.call(lambda c: c)
            assert first.autocommit
            assert db.call(lambda c: c) is first  # reused

            def close_then_fail(connection: Any) -> None:
                connection.close()
                raise Boom

            with pytest.raises(Boom):
                db.call(close_then_fail)
            again = db.call(lambda c: c)
            assert again is not first and not again.closed
            assert setups == [first]
            seen: set[int] = set()
            barrier = threading.Barrier(2)

            def hold(connection: Any) -> None:
                seen.add(id(connection))
                barrier.wait(timeout=10)

            threads = [threading.Thread(target=db.call, args=(hold,)) for _ in range(2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert len(seen) == 2  # two at once
        finally:
            db.close()


def _ready(caller: Any) -> bool:
    """Whether the caller trusts its schema to be committed."""
    return bool(caller._ready)


class TestCallerSchema:
    """A schema made in the caller's transaction counts once that commits."""

    def test_sqlite(self, tmp_path: Path) -> None:
        connection = sqlite3.connect(tmp_path / "db", check_same_thread=False)
        table = Table("things")
        caller = SqliteCaller(connection, table, ["CREATE TABLE IF NOT EXISTS things (x INTEGER)"])

        def add(fail: bool) -> None:
            caller.prepare()
            connection.execute("INSERT INTO things VALUES (1)")
            if fail:
                raise Boom

        with pytest.raises(Boom):
            caller.transaction(add, True)
        assert not _ready(caller)
        caller.transaction(add, False)
        assert _ready(caller)  # confirmed by the commit
        assert connection.execute("SELECT count(*) FROM things").fetchall() == [(1,)]
        connection.close()

    def test_postgres(self, postgres_dsn: str, unique: str) -> None:
        import psycopg

        table = Table(f"things_{unique}")
        connection = psycopg.connect(postgres_dsn)
        caller = PostgresCaller(
            connection,
            table,
            [f"CREATE TABLE IF NOT EXISTS {table.quoted} (x integer)"],
            key=f"test:{unique}",
        )

        def add(fail: bool) -> None:
            caller.prepare()
            connection.execute(f"INSERT INTO {table.quoted} VALUES (1)")
            if fail:
                raise Boom

        try:
            with pytest.raises(Boom):
                caller.transaction(add, True)
            assert not _ready(caller)
            with connection.transaction():  # the caller's own transaction
                add(False)
                add(False)  # same transaction: the uncommitted table is used
                assert not _ready(caller)
            add(False)  # asks PostgreSQL: the creation committed
            assert _ready(caller)
            connection.commit()
            count = connection.execute(f"SELECT count(*) FROM {table.quoted}").fetchone()
            assert count == (3,)
        finally:
            connection.rollback()
            connection.execute(f"DROP TABLE IF EXISTS {table.quoted}")
            connection.commit()
            connection.close()


class TestInboxShape:
    """The plumbing makes a store in the caller's transaction a few lines: the
    inbox sketched in the package docstring, next to the outbox's rows."""

    def test_inbox_rows_commit_and_roll_back_with_the_outbox(self, tmp_path: Path) -> None:
        from anycqrs import NotificationEvent
        from anycqrs.outbox import SqliteOutbox, SqliteOutboxStore

        class SqliteInbox:
            def __init__(self, connection: sqlite3.Connection) -> None:
                name = table_name("inbox", "inbox table")
                self._caller = SqliteCaller(
                    connection,
                    name,
                    [
                        f"CREATE TABLE IF NOT EXISTS {name.quoted} (handler TEXT NOT NULL, "
                        "message_id TEXT NOT NULL, PRIMARY KEY (handler, message_id))"
                    ],
                )
                self._insert = f"INSERT INTO {name.quoted} VALUES (?, ?) ON CONFLICT DO NOTHING"

            def first_time(self, handler: str, message_id: str) -> bool:
                self._caller.prepare()
                cursor = self._caller.connection.execute(self._insert, (handler, message_id))
                return cursor.rowcount == 1

        connection = sqlite3.connect(tmp_path / "app.db", check_same_thread=False)
        inbox, outbox = SqliteInbox(connection), SqliteOutbox(connection)

        def handle(message_id: str, fail: bool = False) -> bool:
            if not inbox.first_time("h", message_id):
                return False
            outbox.add(NotificationEvent(payload={"m": message_id}, topic="t"))
            if fail:
                raise Boom
            return True

        with pytest.raises(Boom):
            outbox.transaction(handle, "m1", True)  # both tables created, then rolled back
        assert outbox.transaction(handle, "m1") is True
        assert outbox.transaction(handle, "m1") is False  # a redelivery: nothing written
        connection.close()
        with SqliteOutboxStore(tmp_path / "app.db") as store:
            assert sum(store.counts().values()) == 1


class TestFailedSetup:
    """A connection whose setup fails is closed and not kept: the next call
    opens a new one and runs the setup again."""

    def test_sqlite(self, tmp_path: Path) -> None:
        calls: list[sqlite3.Connection] = []

        def setup(connection: sqlite3.Connection) -> None:
            calls.append(connection)
            if len(calls) == 1:
                raise Boom

        db = SqliteConnection(tmp_path / "db", timeout=1.0, setup=setup)
        with pytest.raises(Boom):
            db.call(lambda c: None)
        assert db.call(lambda c: c.execute("SELECT 1").fetchone()) == (1,)
        assert len(calls) == 2
        with pytest.raises(sqlite3.ProgrammingError):
            calls[0].execute("SELECT 1")  # the failed one was closed
        db.close()

    def test_postgres(self, postgres_dsn: str) -> None:
        import psycopg

        opened: list[Any] = []

        def connect() -> Any:
            opened.append(psycopg.connect(postgres_dsn))
            return opened[-1]

        def setup(connection: Any) -> None:
            if len(opened) == 1:
                raise Boom

        db = PostgresConnections(connect, setup=setup)
        try:
            with pytest.raises(Boom):
                db.call(lambda c: None)
            assert opened[0].closed
            assert db.call(lambda c: c.execute("SELECT 1").fetchone()) == (1,)
            assert len(opened) == 2
        finally:
            db.close()
