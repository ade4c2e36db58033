"""What the SQLite and PostgreSQL outbox writers share: staging rows on the
caller's connection (schema, transaction and thread hop come from the shared
`anycqrs._persistence` caller)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

from .._persistence._caller import Caller
from ..brokers import Message
from ..observability import _tracing
from ._compression import Compression, compressor
from ._model import OutboxItem

__all__ = ["TransactionalWriter", "creating"]

C = TypeVar("C")
T = TypeVar("T")


@contextmanager
def creating(tracer: Any, items: list[OutboxItem], table: str) -> Iterator[list[OutboxItem]]:
    """The `create` span of staging `items`, current for the block: the rows
    encoded inside carry its trace context (see `encode`)."""
    first = items[0] if items else None
    topic = first.topic if first is not None else ""
    attributes: dict[str, Any] = {
        "messaging.system": "outbox",
        "messaging.destination.name": topic,
        "messaging.operation.type": "create",
        "messaging.operation.name": "create",
        "anycqrs.outbox.table": table,
    }
    if len(items) == 1 and first is not None:
        message_id = first.message_id if isinstance(first, Message) else first.event_id
        attributes["messaging.message.id"] = str(message_id)
    else:
        attributes["messaging.batch.message_count"] = len(items)
    with _tracing.span(tracer, f"create {topic}", _tracing.PRODUCER, attributes):
        yield items


class TransactionalWriter(Generic[C]):
    """Base of `SqliteOutbox` and `PostgresOutbox` (internal).

    A subclass supplies the caller connection (with the schema), the
    ``INSERT`` statement, how items become rows and how several rows are
    inserted.
    """

    __slots__ = ("_caller", "_compress", "_connection", "_insert", "_tracer")

    def __init__(
        self,
        caller: Caller[C],
        insert: Any,
        compression: Compression | None = None,
        tracer_provider: Any = None,
    ) -> None:
        self._compress = compressor(compression)
        self._caller = caller
        self._connection = caller.connection
        self._insert = insert
        self._tracer = _tracing.tracer(tracer_provider)

    @property
    def connection(self) -> C:
        """The caller's connection."""
        return self._connection

    @property
    def table(self) -> str:
        """The outbox table's name."""
        return str(self._caller.table)

    def ensure_schema(self) -> None:
        """Create the table and its index if missing (idempotent).

        Runs on the caller's connection: inside an open transaction the DDL
        becomes part of it (and is redone if that transaction rolls back);
        otherwise it commits on its own.
        """
        self._caller.ensure_schema()

    def transaction(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in one transaction on the connection (blocking):
        committed when ``fn`` returns, rolled back if it raises. Calls on one
        writer are serialized."""
        return self._caller.transaction(fn, *args)

    def _rows(self, items: Iterable[OutboxItem]) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _insert_many(self, rows: list[tuple[Any, ...]]) -> None:
        raise NotImplementedError

    def add(self, item: OutboxItem, /) -> None:
        """Stage ``item`` (a ``NotificationEvent`` or a broker ``Message``) in
        the current transaction.

        A message whose id is already in the outbox is ignored, so retrying a
        transaction that adds the same event is harmless.

        Raises:
            TypeError: ``item`` is neither a notification event nor a message.
            SerializationError: the event can't be serialized.
        """
        rows = self._rows((item,)) if self._tracer is None else self._traced_rows((item,))
        self._caller.prepare()
        self._connection.execute(self._insert, rows[0])  # type: ignore[attr-defined]

    def _traced_rows(self, items: Iterable[OutboxItem]) -> list[tuple[Any, ...]]:
        """`_rows` inside the `create` span whose context the rows carry."""
        staged = list(items)
        with creating(self._tracer, staged, self.table) as stamped:
            return self._rows(stamped)

    def add_many(self, items: Iterable[OutboxItem], /) -> None:
        """Stage several messages in the current transaction, in order."""
        rows = self._rows(items) if self._tracer is None else self._traced_rows(items)
        if not rows:
            return
        self._caller.prepare()
        self._insert_many(rows)

    async def run_in_transaction(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in a worker thread, in one transaction (see
        `transaction`): the async way to write domain rows and events
        atomically, with one thread hop.

        Example:
            ```python
            def place_order(order_id: int) -> None:
                conn.execute("INSERT INTO orders (id) VALUES (?)", (order_id,))
                outbox.add(NotificationEvent(payload=OrderPlaced(order_id), topic="orders"))

            await outbox.run_in_transaction(place_order, 42)
            ```
        """
        return await self._caller.run_in_transaction(fn, *args)
