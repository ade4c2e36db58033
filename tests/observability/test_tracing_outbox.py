"""Every outbox writer stores the trace context of its `create` span with the
row (SQLite, PostgreSQL, SQLAlchemy on MariaDB), and a ready `Message` gets
it too."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import anycqrs
from anycqrs.brokers import Message
from anycqrs.observability import correlation_scope


@attrs.frozen
class Booked:
    room: int


@pytest.fixture
def traced() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


@pytest.fixture(params=["sqlite", "postgres", "sqlalchemy-mariadb"])
def writer_and_rows(request: pytest.FixtureRequest, tmp_path: Path, traced: Any) -> Iterator[Any]:
    """`(make_writer(), commit(), rows())` of one backend, a fresh table each."""
    provider, _ = traced
    table = f"traced_outbox_{uuid.uuid4().hex[:8]}"
    kind = request.param
    if kind == "sqlite":
        from anycqrs.outbox import SqliteOutbox

        conn = sqlite3.connect(str(tmp_path / "o.db"))
        writer = SqliteOutbox(conn, table=table, tracer_provider=provider)
        yield (
            writer,
            conn.commit,
            lambda: conn.execute(f"SELECT message_id, headers FROM {table}").fetchall(),
        )
        conn.close()
    elif kind == "postgres":
        import psycopg

        from anycqrs.outbox import PostgresOutbox

        dsn = request.getfixturevalue("postgres_dsn")
        conn = psycopg.connect(dsn)
        writer = PostgresOutbox(conn, table=table, tracer_provider=provider)
        yield (
            writer,
            conn.commit,
            lambda: conn.execute(f"SELECT message_id, headers FROM {table}".encode()).fetchall(),
        )
        conn.execute(f"DROP TABLE IF EXISTS {table}".encode())
        conn.commit()
        conn.close()
    else:
        import sqlalchemy

        from anycqrs.outbox import SqlAlchemyOutbox

        engine = sqlalchemy.create_engine(request.getfixturevalue("mariadb_url"))
        connection = engine.connect()
        writer = SqlAlchemyOutbox(connection, table=table, tracer_provider=provider)

        def rows() -> list[Any]:
            query = sqlalchemy.text(f"SELECT message_id, headers FROM {table}")
            return list(connection.execute(query).fetchall())

        yield writer, connection.commit, rows
        connection.execute(sqlalchemy.text(f"DROP TABLE IF EXISTS {table}"))
        connection.commit()
        connection.close()
        engine.dispose()


def test_rows_carry_their_creation_context(writer_and_rows: Any, traced: Any) -> None:
    writer, commit, rows = writer_and_rows
    provider, exporter = traced
    event = anycqrs.NotificationEvent(payload=Booked(1), topic="rooms")
    ready = Message(message_name="Booked", topic="rooms", payload={"room": 2})
    with correlation_scope("req-o"), provider.get_tracer("t").start_as_current_span("request"):
        writer.add(event)
        writer.add_many([ready])
    commit()
    stored = {str(message_id): json.loads(headers) for message_id, headers in rows()}
    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert [s.name for s in exporter.get_finished_spans()].count("create rooms") == 2
    creates = [s for s in exporter.get_finished_spans() if s.name == "create rooms"]
    for span, message_id in zip(creates, (event.event_id, ready.message_id), strict=True):
        headers = stored[str(message_id)]
        trace_id, span_id = headers["traceparent"].split("-")[1:3]
        assert int(span_id, 16) == span.context.span_id  # the row's creation context
        assert int(trace_id, 16) == spans["request"].context.trace_id
        assert span.parent.span_id == spans["request"].context.span_id
        assert headers["correlation_id"] == "req-o"
    assert creates[0].attributes["messaging.message.id"] == str(event.event_id)
    assert creates[1].attributes["messaging.operation.type"] == "create"


def test_untraced_rows_carry_no_trace_context(tmp_path: Path) -> None:
    from anycqrs.outbox import SqliteOutbox

    conn = sqlite3.connect(str(tmp_path / "plain.db"))
    writer = SqliteOutbox(conn)  # no provider, none set globally: no span
    writer.add(anycqrs.NotificationEvent(payload=Booked(3), topic="rooms"))
    conn.commit()
    ((headers,),) = conn.execute("SELECT headers FROM anycqrs_outbox").fetchall()
    assert json.loads(headers) == {}
