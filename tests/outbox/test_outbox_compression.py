"""Outbox payload compression: zlib and zstd, recorded per row, transparent on
read, on every database; the relay publishes the same message either way."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from anycqrs.brokers import InMemoryMessageBroker, Message
from anycqrs.errors import DeserializationError
from anycqrs.outbox import OutboxRelay, OutboxStatus, SqliteOutbox

from .outbox_helpers import Harness, event

pytestmark = pytest.mark.anyio


def _write(db: Harness, compression: str | None, *items: Any) -> None:
    connection = db.connect()
    try:
        writer = db.writer(connection, compression=compression)
        writer.transaction(writer.add_many, items)
    finally:
        connection.close()


@pytest.mark.parametrize("compression", ["zlib", "zstd"])
async def test_rows_mix_and_relay_transparently(db: Harness, compression: str) -> None:
    _write(db, compression, event(1, headers={"tenant": "t"}), event(2))
    _write(db, None, event(3))
    rows = db.execute(f'SELECT payload FROM "{db.table}" ORDER BY id')
    stored = [row[0] for row in rows]
    assert stored[0].startswith(f"~{compression}:") and stored[1].startswith(f"~{compression}:")
    assert stored[2].startswith("{")  # an uncompressed row reads as before
    broker = InMemoryMessageBroker()
    with db.store() as store:
        assert await OutboxRelay(store, broker).publish_pending() == 3
        assert store.counts()[OutboxStatus.SENT] == 3
    assert [m.payload["payload"]["order_id"] for m in broker.messages] == [1, 2, 3]
    assert broker.messages[0].headers == {"tenant": "t"}


def test_a_large_payload_shrinks(tmp_path: Any) -> None:
    connection = sqlite3.connect(tmp_path / "app.db")
    message = Message(message_name="Big", topic="t", payload={"text": "order line " * 500})
    plain, packed = SqliteOutbox(connection), SqliteOutbox(connection, compression="zlib")
    plain.transaction(plain.add, message)
    packed.transaction(packed.add, Message(message_name="Big", topic="t", payload=message.payload))
    (a,), (b,) = connection.execute("SELECT length(payload) FROM anycqrs_outbox ORDER BY id")
    assert b < a / 10
    connection.close()


def test_bad_settings_and_corrupt_rows(db: Harness) -> None:
    connection = db.connect()
    try:
        with pytest.raises(ValueError, match="compression must be one of"):
            db.writer(connection, compression="lz4")
    finally:
        connection.close()
    _write(db, "zlib", event(1), event(2), event(3))
    rows = db.execute(f'SELECT id FROM "{db.table}" ORDER BY id')
    db.corrupt(rows[0][0], payload="~zlib:not base64!")
    db.corrupt(rows[1][0], payload="~lz4:AAAA")
    db.corrupt(rows[2][0], payload="~zlib:" + "QUJD")  # base64 of b"ABC": no zlib stream
    with db.store() as store:
        records = store.fetch()
    for record, fragment in zip(
        records, ["corrupt zlib", "unknown payload compression 'lz4'", "corrupt zlib"], strict=True
    ):
        with pytest.raises(DeserializationError, match=fragment):
            record.to_message()
