"""The per-dispatch value a guarded handler works with: `InboxTransaction`,
a stateless view of the transaction the inbox opened for the handler call
running now (a context variable holds it)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, TypeVar
from uuid import UUID, uuid5

from .._persistence import in_thread
from ..errors import InboxError

__all__ = ["NAMESPACE", "Bound", "Duplicate", "InboxTransaction", "current", "derive_id"]

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


class Duplicate(BaseException):
    """Raised into a guarded handler at its first `InboxTransaction.run`
    when a deferred begin finds the inbox row already there (internal; the
    store catches it and skips the handler). A `BaseException`, so a
    handler's ``except Exception`` does not swallow it."""


PENDING, OPEN, DUPLICATE, COMMITTED, ROLLED_BACK = range(5)
"""A `Bound`'s states: not begun yet (deferred begin), open, found a
duplicate, committed by ``run(..., commit=True)``, rolled back by it."""


class Bound:
    """One inbox transaction of a guarded handler call (internal): the
    store's backend, its handle and connection once begun, the key of the
    row written in it, and its state (see `PENDING`).

    Every blocking step goes through `call` under `lock`, in a worker
    thread; the state lives here (not in a hop's return value), so a hop
    that finishes after its task was cancelled still leaves the store able
    to end what it began.
    """

    __slots__ = (
        "_outbox",
        "backend",
        "chunk",
        "connection",
        "handle",
        "handler",
        "kind",
        "lock",
        "message_id",
        "parent",
        "state",
        "store",
    )

    def __init__(
        self,
        store: Any,
        backend: Any,
        handler: str,
        message_id: UUID,
        *,
        parent: Bound | None = None,
        chunk: Any = None,
        kind: Any = None,
    ) -> None:
        self.store = store
        self.kind = kind
        """The event's kind (`anycqrs.inbox._chunk.kind`), in a chunk."""
        self.chunk = chunk
        """The lane chunk this call runs in (batch mode: a savepoint of the
        chunk's transaction), or `None` (a transaction of its own)."""
        self.backend = backend
        self.handle: Any = None
        self.connection: Any = None
        self.handler = handler
        self.message_id = message_id
        self.parent = parent
        self.state = PENDING
        self._outbox: Any = None
        self.lock: threading.Lock = (
            parent.lock
            if parent is not None
            else chunk.lock
            if chunk is not None
            else threading.Lock()
        )

    def begin(self) -> bool:
        """Open the transaction and write the row (blocking, under `lock`);
        `False` for a duplicate (nothing left open). In a chunk: a
        savepoint of the chunk's transaction instead (`Chunk.savepoint`)."""
        chunk = self.chunk
        if chunk is not None:
            if not chunk.savepoint(self.handler, self.message_id, time.time(), self.kind):
                self.state = DUPLICATE
                return False
            self.handle, self.connection, self.state = chunk.handle, chunk.connection, OPEN
            return True
        handle = self.backend.begin(self.handler, self.message_id, time.time())
        if handle is None:
            self.state = DUPLICATE
            return False
        try:
            connection = self.backend.connection(handle)
        except BaseException:
            self.backend.rollback(handle)
            raise
        self.handle, self.connection, self.state = handle, connection, OPEN
        return True

    def ready(self) -> None:
        """Begin a deferred transaction now (blocking, under `lock`).

        Raises:
            Duplicate: the row is already there.
            InboxError: the transaction already ended (``commit=True``).
        """
        root = self if self.parent is None else self.parent
        if root.state == OPEN:
            return
        if root.state == PENDING:
            if root.begin():
                return
            raise Duplicate
        if root.state == DUPLICATE:
            raise Duplicate
        raise InboxError(
            f"The inbox transaction of {root.handler} already ended (run(..., commit=True) "
            "ends it): do the handler's SQL before or in that last call"
        )

    def end(self, commit: bool) -> None:
        """Commit or roll back an open transaction (blocking, under `lock`)."""
        self.state = ROLLED_BACK  # ended either way: a commit that fails rolls back
        if self.chunk is not None:  # a savepoint: released with the next one or the commit
            if commit:
                self.state = COMMITTED
            else:
                self.chunk.rollback_to()
            return
        if commit:
            self.backend.commit(self.handle)
            self.state = COMMITTED
        else:
            self.backend.rollback(self.handle)

    @property
    def outbox(self) -> Any:
        """The outbox writer on the connection (made on first use), or `None`."""
        root = self if self.parent is None else self.parent
        if root._outbox is None and root.handle is not None:
            root._outbox = root.backend.outbox(root.handle)
        return root._outbox

    def call(self, fn: Callable[..., T], args: tuple[Any, ...], commit: bool) -> T:
        """``fn(connection, *args)``, one call at a time (blocking): begins a
        deferred transaction first; with `commit` (not in a joined handler)
        ends it in the same hop, committed, or rolled back when `fn` raises."""
        with self.lock:
            self.ready()
            root = self if self.parent is None else self.parent
            if not commit or self.parent is not None:
                return fn(root.connection, *args)
            try:
                result = fn(root.connection, *args)
            except BaseException:
                root.end(False)
                raise
            root.end(True)
            return result


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
    hop per call, so a handler does its SQL in one `run` where it can; a
    last ``run(fn, commit=True)`` commits in that same hop. With a store made
    with ``defer_begin=True`` the begin and the inbox row go in the hop of
    the first `run` too: one hop per message. `defer` queues a write whose
    result the handler does not need to the commit of an optimistic chunk
    (no hop of its own; elsewhere it runs at once, like `run`).

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
        inside `run` (it blocks).

        Raises:
            InboxError: the transaction is not begun yet (the store defers
                its begin to the handler's first `run`).
        """
        bound = self._bound()
        root = bound if bound.parent is None else bound.parent
        if root.connection is None:
            raise _not_begun(bound)
        return root.connection

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
        root = bound if bound.parent is None else bound.parent
        if root.handle is None:
            raise _not_begun(bound)
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

    async def run(self, fn: Callable[..., T], *args: Any, commit: bool = False) -> T:
        """``fn(connection, *args)`` in a worker thread, inside the
        transaction (one thread hop); returns what ``fn`` returns.

        With ``commit=True`` this is the handler's last use of the
        transaction: it commits in the same hop right after ``fn`` returns
        (or rolls back when ``fn`` raises), which saves the hop and round
        trip of the commit that otherwise follows the handler. Nothing the
        handler does afterwards can roll it back: an error it raises later
        still fails the delivery, and the redelivery is then a duplicate.
        In a handler joined to an outer guarded handler's transaction (a
        nested ``send``) ``commit`` is ignored: the outer one commits.

        Raises:
            InboxError: called outside an inbox-guarded handler, or after
                the transaction ended (``commit=True`` was given before).
            Exception: what ``fn`` raises (the transaction then rolls back
                when the handler lets it propagate).
        """
        return await in_thread(self._bound().call, fn, args, commit)

    async def defer(self, fn: Callable[..., object], *args: Any) -> None:
        """``fn(connection, *args)`` inside the transaction, run later: a
        write whose result the handler does not need.

        In an optimistic chunk (``PostgresInbox(batch=True,
        optimistic=True)``) the call is queued and runs in the hop and round
        trip of the chunk's commit (pipelined, with the other calls' deferred
        writes), so a handler that only defers takes no thread hop of its
        own. Anywhere else it runs at once, like `run` (one hop). The
        effects are the same either way: a handler that raises after
        ``defer`` leaves nothing committed, and a deferred write that fails
        at the commit has the chunk rolled back and handled again with a
        savepoint per handler call, where ``defer`` runs at once, so the
        failing call takes the error path (retry, dead letter) a failing
        `run` would. `InboxTransaction.outbox` and `derive_id` work inside
        ``fn``. Queued, ``fn`` runs where results are not waited for (a
        pipeline): do not catch database errors in it, and use `run` for
        what the handler must read back.

        Example:
            ```python
            class RecordPayment(anycqrs.EventHandler[anycqrs.NotificationEvent[OrderPaid]]):
                def __init__(self, tx: InboxTransaction) -> None:
                    self.tx = tx

                async def handle(self, event: anycqrs.NotificationEvent[OrderPaid]) -> None:
                    await self.tx.defer(insert_payment, event.payload.order_id)
            ```

        Raises:
            InboxError: called outside an inbox-guarded handler, or after
                the transaction ended (``commit=True`` was given before).
            Exception: what ``fn`` raises, when it runs at once.
        """
        bound = self._bound()
        root = bound if bound.parent is None else bound.parent
        chunk = root.chunk
        if chunk is None or not chunk.optimistic:
            await in_thread(bound.call, fn, args, False)
            return
        if root.state != OPEN:  # the chunk's first call claims here (or a duplicate stops it)
            await in_thread(_ready, root)
        chunk.deferred.append((bound, fn, args))


def _ready(bound: Bound) -> None:
    with bound.lock:
        bound.ready()


def _not_begun(bound: Bound) -> InboxError:
    return InboxError(
        f"The inbox transaction of {bound.handler} is not begun yet (its store defers the "
        "begin to the first run): use the connection and the outbox inside run"
    )
