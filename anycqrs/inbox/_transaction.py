"""The per-dispatch value a guarded handler works with: `InboxTransaction`,
a stateless view of the transaction the inbox opened for the handler call
running now (a context variable holds it)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, TypeVar
from uuid import UUID, uuid5

from .._persistence import in_thread
from ..errors import InboxError

__all__ = ["NAMESPACE", "Bound", "InboxTransaction", "current", "derive_id"]

T = TypeVar("T")

NAMESPACE = UUID("6f1c1c3e-8d4a-5b7e-9a53-2b9f3c0d7a41")
"""The uuid5 namespace of every id the inbox derives (follow-up events)."""


def derive_id(handler: str, message_id: UUID, index: int | str) -> UUID:
    """The id a guarded handler's `index`-th follow-up gets: ``uuid5`` of
    ``"<handler>\\n<message id>\\n<index>"``, the same on every re-run.

    Example:
        ```python
        follow_up_id = derive_id("ShipOrder", event.event_id, 0)  # its first emit
        ```
    """
    return uuid5(NAMESPACE, f"{handler}\n{message_id}\n{index}")


class Bound:
    """One open inbox transaction (internal): the store, the backend's
    handle, the connection and the key of the row written in it."""

    __slots__ = (
        "_make_outbox",
        "_outbox",
        "connection",
        "handle",
        "handler",
        "lock",
        "message_id",
        "store",
    )

    def __init__(
        self,
        store: Any,
        handle: Any,
        connection: Any,
        handler: str,
        message_id: UUID,
        *,
        make_outbox: Callable[[], Any] | None = None,
    ) -> None:
        self.store = store
        self.handle = handle
        self.connection = connection
        self.handler = handler
        self.message_id = message_id
        self._make_outbox = make_outbox
        self._outbox: Any = None
        self.lock = threading.Lock()

    @property
    def outbox(self) -> Any:
        """The outbox writer on the connection (made on first use), or `None`."""
        if self._outbox is None and self._make_outbox is not None:
            self._outbox = self._make_outbox()
        return self._outbox

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(connection, *args)``, one call at a time (blocking)."""
        with self.lock:
            return fn(self.connection, *args)


_CURRENT: ContextVar[Bound | None] = ContextVar("anycqrs_inbox_transaction", default=None)


def current() -> Bound | None:
    """The transaction of the guarded handler running in this context."""
    return _CURRENT.get()


class InboxTransaction:
    """The database transaction of the inbox-guarded handler running now.

    The inbox opens it before the handler runs (and writes the inbox row
    in it), commits it when the handler returns and rolls it back when the
    handler raises or is cancelled. Whatever the handler writes through it
    (domain rows, outbox rows) commits together with the inbox row or not at
    all.

    It holds no state: every instance reads the transaction of the handler
    call running in the current context (a context variable the inbox sets
    per dispatch), so any container can build it (`InboxTransaction()` takes
    no argument) and a handler declares it in its constructor like any other
    dependency. A container with per-dispatch scopes may hand out the same
    kind of object.

    The handler is async and the database calls block: `run` runs a
    function on the transaction's connection in a worker thread, one thread
    hop per call, so a handler does its SQL in one `run` where it can.

    Example:
        ```python
        class ShipOrder(anycqrs.EventHandler[anycqrs.NotificationEvent[OrderPaid]]):
            def __init__(self, tx: InboxTransaction) -> None:
                self.tx = tx

            async def handle(self, event: anycqrs.NotificationEvent[OrderPaid]) -> None:
                def write(connection: sqlite3.Connection) -> None:
                    order_id = event.payload.order_id
                    connection.execute("INSERT INTO shipments VALUES (?)", (order_id,))
                    self.tx.outbox.add(anycqrs.NotificationEvent(
                        payload=Shipped(order_id), topic="shipments",
                        event_id=self.tx.derive_id("shipped")))

                await self.tx.run(write)
        ```
    """

    __slots__ = ()

    @staticmethod
    def _bound() -> Bound:
        bound = _CURRENT.get()
        if bound is None:
            raise InboxError(
                "No inbox transaction is open here: InboxTransaction is usable only inside "
                "an inbox-guarded handler (give the EventMediator an inbox=, and handle a "
                "NotificationEvent)"
            )
        return bound

    @property
    def active(self) -> bool:
        """Whether a guarded handler's transaction is open in this context."""
        return _CURRENT.get() is not None

    @property
    def connection(self) -> Any:
        """The transaction's connection (a ``sqlite3.Connection``, a
        ``psycopg.Connection`` or a SQLAlchemy ``Connection``); use it only
        inside `run` (it blocks)."""
        return self._bound().connection

    @property
    def handler(self) -> str:
        """The guarded handler's identity (the inbox key's first half)."""
        return self._bound().handler

    @property
    def message_id(self) -> UUID:
        """The id of the message being handled (the key's second half)."""
        return self._bound().message_id

    @property
    def outbox(self) -> Any:
        """The outbox writer on this transaction's connection (the store was
        given ``outbox_table=``): ``add`` / ``add_many`` inside `run`.

        Raises:
            InboxError: the inbox store has no outbox table configured.
        """
        bound = self._bound()
        if bound.outbox is None:
            raise InboxError(
                f"The inbox of {bound.handler} has no outbox: pass outbox_table= to the "
                "inbox store to stage outbox rows in its transaction"
            )
        return bound.outbox

    def derive_id(self, index: int | str) -> UUID:
        """A stable id for something this handler call creates (an outbox
        event, a row): the same on every re-run of this handler for this
        message (`index` tells several apart)."""
        bound = self._bound()
        return derive_id(bound.handler, bound.message_id, f"own:{index}")

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(connection, *args)`` in a worker thread, inside the
        transaction (one thread hop); returns what ``fn`` returns.

        Raises:
            InboxError: called outside an inbox-guarded handler.
            Exception: what ``fn`` raises (the transaction then rolls back
                when the handler lets it propagate).
        """
        return await in_thread(self._bound().call, fn, *args)
