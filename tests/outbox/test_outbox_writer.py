"""Writers bound to the caller's transaction: atomicity with domain rows, on a
real SQLite file and the real PostgreSQL."""

from __future__ import annotations

import contextlib
import threading
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import anyio
import pytest

from anycqrs.brokers import Message
from anycqrs.errors import SerializationError
from anycqrs.outbox import OutboxSettlement, OutboxStatus, OutboxWriter, PostgresOutbox

from .outbox_helpers import Harness, PostgresHarness, SqliteHarness, event, order_ids


class Boom(Exception):
    pass


def _insert_order(db: Harness, connection: Any, order_id: int) -> None:
    db.insert_order(connection, order_id)


def test_commit_stores_domain_row_and_event(db: Harness) -> None:
    connection = db.connect()
    outbox = db.writer(connection)
    assert isinstance(outbox, OutboxWriter)

    def place() -> None:
        _insert_order(db, connection, 1)
        outbox.add(event(1, key="k1", headers={"tenant": "t"}))

    outbox.transaction(place)
    connection.close()
    assert db.order_ids() == [1]
    with db.store() as store:
        [record] = store.fetch()
    assert record.status is OutboxStatus.PENDING
    assert record.attempts == 0
    assert record.topic == "orders" and record.key == "k1"
    message = record.to_message()
    assert message.message_name == "OrderPlaced"
    assert message.headers == {"tenant": "t"}
    assert message.payload["payload"] == {"order_id": 1}


def test_rollback_drops_domain_row_and_event(db: Harness) -> None:
    connection = db.connect()
    outbox = db.writer(connection)
    outbox.ensure_schema()
    connection.commit()  # psycopg opened a transaction for the DDL

    def place() -> None:
        _insert_order(db, connection, 7)
        outbox.add(event(7))
        raise Boom

    with pytest.raises(Boom):
        outbox.transaction(place)
    connection.close()
    assert db.order_ids() == []
    with db.store() as store:
        assert store.fetch() == []
        assert store.counts() == dict.fromkeys(OutboxStatus, 0)


@pytest.mark.anyio
async def test_run_in_transaction_is_atomic(db: Harness) -> None:
    connection = db.connect()
    outbox = db.writer(connection)

    def place(order_id: int, fail: bool) -> int:
        _insert_order(db, connection, order_id)
        outbox.add(event(order_id))
        if fail:
            raise Boom
        return order_id

    assert await outbox.run_in_transaction(place, 1, False) == 1
    with pytest.raises(Boom):
        await outbox.run_in_transaction(place, 2, True)
    assert await outbox.run_in_transaction(place, 3, False) == 3
    connection.close()
    assert db.order_ids() == [1, 3]
    with db.store() as store:
        records = store.fetch()
    assert [r.to_message().payload["payload"]["order_id"] for r in records] == [1, 3]


@pytest.mark.anyio
async def test_caller_transaction_in_worker_thread(db: Harness) -> None:
    """The documented pattern: the caller owns the transaction, in a worker thread."""
    connection = db.connect()
    outbox = db.writer(connection)

    def place_order_tx(order_id: int) -> None:
        with db.transaction(connection):
            _insert_order(db, connection, order_id)
            outbox.add(event(order_id))

    await anyio.to_thread.run_sync(place_order_tx, 5)
    connection.close()
    assert db.order_ids() == [5]
    with db.store() as store:
        assert store.counts()[OutboxStatus.PENDING] == 1


def test_messages_and_duplicates(db: Harness) -> None:
    message_id = uuid.uuid4()
    message = Message(
        message_name="Raw", topic="raw", payload={"x": [1, 2]}, message_id=message_id, key="a"
    )
    first = event(1)
    db.add(first, message, event(2))
    db.add(first, message)  # same ids again: ignored
    connection = db.connect()
    db.writer(connection).transaction(db.writer(connection).add_many, [])
    connection.close()
    with db.store() as store:
        records = store.fetch()
        assert store.fetch(limit=1, after_id=records[0].id)[0].id == records[1].id
    assert [r.message_name for r in records] == ["OrderPlaced", "Raw", "OrderPlaced"]
    decoded = records[1].to_message()
    assert decoded == message
    assert records[0].to_message().message_id == first.event_id


def test_add_rejects_what_it_cannot_store(db: Harness) -> None:
    connection = db.connect()
    outbox = db.writer(connection)
    with pytest.raises(TypeError, match=r"NotificationEvent or anycqrs\.brokers\.Message"):
        outbox.add(object())  # type: ignore[arg-type]
    with pytest.raises(SerializationError):
        outbox.add(Message(message_name="X", topic="t", payload={"bad": object()}))
    connection.close()


def test_create_schema_false_needs_an_existing_table(db: Harness) -> None:
    connection = db.connect()
    outbox = db.writer(connection, create_schema=False)
    assert outbox.table == db.table and outbox.connection is connection
    with pytest.raises(Exception, match=db.table):
        outbox.transaction(outbox.add, event(1))
    outbox.ensure_schema()
    outbox.ensure_schema()  # idempotent
    outbox.transaction(outbox.add, event(1))
    connection.close()
    with db.store() as store:
        assert store.counts()[OutboxStatus.PENDING] == 1


def test_invalid_table_names_are_rejected(db: Harness) -> None:
    connection = db.connect()
    for name in ("Outbox", "1x", "a-b", 'x"; DROP TABLE y; --', "x" * 49, ""):
        with pytest.raises(ValueError, match=r"Invalid outbox table name .*lowercase letters"):
            db.writer(connection).__class__(connection, table=name)
    connection.close()


def test_sqlite_writer_and_relay_store_write_concurrently(tmp_path: Path, unique: str) -> None:
    """Application transactions and relay claims on one SQLite file, in two
    threads: neither fails with "database is locked" (a deferred ``BEGIN``
    in the writer would deadlock against the store's commit)."""
    db = SqliteHarness(tmp_path / "app.db", unique)
    with db.store() as store:
        store.ensure_schema()
        done = threading.Event()
        errors: list[BaseException] = []

        def relay() -> None:
            try:
                while not done.is_set():
                    now = datetime.now(timezone.utc)
                    claimed = store.claim(limit=10, now=now, lease=60.0, token="t")
                    ids = [record.id for record in claimed]
                    store.settle("t", OutboxSettlement(sent=ids), now=now)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        thread = threading.Thread(target=relay)
        thread.start()
        try:
            for i in range(200):
                db.add(event(i))
        finally:
            done.set()
            thread.join()
    assert errors == []
    assert sum(store.counts().values()) == 200


class TestSchemaCreatedInARolledBackTransaction:
    """The writer creates its table inside the caller's transaction; a rollback
    of that transaction must not leave it believing the table exists."""

    @pytest.mark.anyio
    async def test_rolled_back_creation_is_redone(self, db: Harness) -> None:
        connection = db.connect()
        outbox = db.writer(connection)

        def fail(order_id: int) -> None:
            _insert_order(db, connection, order_id)
            outbox.add(event(order_id))  # creates the table, in this transaction
            raise Boom

        def place(order_id: int) -> None:
            _insert_order(db, connection, order_id)
            outbox.add(event(order_id))

        with pytest.raises(Boom):
            await outbox.run_in_transaction(fail, 1)
        await outbox.run_in_transaction(place, 2)
        await outbox.run_in_transaction(place, 3)
        connection.close()
        assert db.order_ids() == [2, 3]
        with db.store() as store:
            assert [order_ids([r.to_message()]) for r in store.fetch()] == [[2], [3]]

    def test_creation_in_an_open_transaction_is_kept_once_committed(self, db: Harness) -> None:
        connection = db.connect()
        outbox = db.writer(connection)

        def place(*order_ids: int) -> None:
            for order_id in order_ids:
                _insert_order(db, connection, order_id)
                outbox.add(event(order_id))  # the table made by the first add is used

        outbox.transaction(place, 1, 2)
        outbox.transaction(place, 3)
        connection.close()
        with db.store() as store:
            assert store.counts()[OutboxStatus.PENDING] == 3

    def test_rolled_back_ensure_schema_is_redone(self, db: Harness) -> None:
        connection = db.connect()
        outbox = db.writer(connection)

        def ensure_then_fail() -> None:
            outbox.ensure_schema()
            raise Boom

        with pytest.raises(Boom):
            outbox.transaction(ensure_then_fail)
        outbox.transaction(outbox.add, event(1))
        connection.close()
        with db.store() as store:
            assert store.counts()[OutboxStatus.PENDING] == 1


def test_a_writer_per_request_on_pooled_connections(pg: PostgresHarness) -> None:
    """The documented pattern for HTTP handlers: each request borrows its own
    connection from a ``psycopg_pool`` pool and binds a writer to it; the
    pool's block commits a request's rows together, or rolls them back."""
    from psycopg_pool import ConnectionPool

    with pg.store() as store:
        store.ensure_schema()  # once, at startup: writers skip the check
    seen: set[int] = set()
    lock = threading.Lock()

    def request(pool: ConnectionPool[Any], order_id: int) -> None:
        with pool.connection() as connection:
            with lock:
                seen.add(id(connection))
            pg.insert_order(connection, order_id)
            PostgresOutbox(connection, table=pg.table, create_schema=False).add(event(order_id))
            if order_id % 4 == 0:
                raise Boom

    def handle(pool: ConnectionPool[Any], order_id: int) -> None:
        with contextlib.suppress(Boom):
            request(pool, order_id)

    with ConnectionPool(pg.dsn, min_size=2, max_size=2, open=True) as pool:
        threads = [threading.Thread(target=handle, args=(pool, i)) for i in range(1, 9)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert pg.order_ids() == [1, 2, 3, 5, 6, 7]
    with pg.store() as store:
        assert sorted(order_ids([r.to_message() for r in store.fetch()])) == [1, 2, 3, 5, 6, 7]
    assert 1 <= len(seen) <= 2


def test_postgres_relay_store_takes_a_conninfo_or_a_pool() -> None:
    from anycqrs.outbox import PostgresOutboxStore

    with pytest.raises(ValueError, match="PostgresOutboxStore needs a conninfo/dsn or a pool"):
        PostgresOutboxStore()
