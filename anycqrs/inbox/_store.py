"""What every inbox store does on the event loop: bound the open
transactions, hop to a worker thread once per step (open + insert, commit,
roll back), set the per-dispatch `InboxTransaction`, and prune."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from functools import partial
from typing import Any, Protocol, TypeVar
from uuid import UUID

import anyio
import attrs

from .._exc import leaves
from .._persistence import in_thread
from ..errors import InboxError, InboxKeyError
from ..messages import Event, NotificationEvent
from ._chunk import Abort, ChunkBackend, ChunkScope, ClaimBackend, current_chunk, kind
from ._guard import identity
from ._transaction import (
    _CURRENT,
    COMMITTED,
    DUPLICATE,
    OPEN,
    PENDING,
    ROLLED_BACK,
    Bound,
    Duplicate,
    derive_id,
)

__all__ = ["Backend", "InboxStore", "seconds"]

T = TypeVar("T")

Run = Callable[[Any], Awaitable[tuple[Any, Sequence[Event]]]]
"""A binding's runner: ``event -> (result, follow-up events)``."""

logger = logging.getLogger("anycqrs.inbox")

_current, _set_current, _reset_current = _CURRENT.get, _CURRENT.set, _CURRENT.reset
"""Bound once: CPython 3.11 compiles `imported_name.method()` to an attribute
load that builds a bound method per call (≈ 0.5k instructions)."""

CLEANUP_TIMEOUT = 30.0
"""Seconds a commit or rollback may take once started (shielded)."""


def seconds(older_than: timedelta | float) -> float:
    """`older_than` in seconds (a `timedelta` or a number); must be >= 0."""
    value = older_than.total_seconds() if isinstance(older_than, timedelta) else float(older_than)
    if value < 0:
        raise ValueError(f"older_than must not be negative, got {older_than!r}")
    return value


class Backend(Protocol):
    """The blocking half of a store (one per database kind; internal).

    `begin` returns ``None`` for a duplicate (its transaction already
    rolled back and its connection given back); `commit` and `rollback`
    end the transaction and give the connection back, whatever happens.
    """

    concurrency: int

    def begin(self, handler: str, message_id: UUID, now: float) -> Any: ...

    def join(self, handle: Any, handler: str, message_id: UUID, now: float) -> bool: ...

    def connection(self, handle: Any) -> Any: ...

    def outbox(self, handle: Any) -> Any: ...

    def commit(self, handle: Any) -> None: ...

    def rollback(self, handle: Any) -> None: ...

    def seen(self, handler: str, message_id: UUID) -> bool: ...

    def prune(self, before: float) -> int: ...

    def ensure_schema(self) -> None: ...

    def close(self) -> None: ...


class InboxStore:
    """Base of `SqliteInbox`, `PostgresInbox` and `SqlAlchemyInbox`: the
    async side every store shares (see the stores for their arguments).

    `EventMediator(..., inbox=store)` makes it guard every handler of a
    notification event: the store opens a transaction, writes the
    ``(handler, event_id)`` row, runs the handler with that transaction as
    the current `InboxTransaction`, and commits; a row already there means
    the handler ran for this message before: it is skipped. With
    ``defer_begin=True`` the transaction and the row wait for the handler's
    first `InboxTransaction.run` (same hop), and ``run(fn, commit=True)``
    commits in the hop of the handler's last call. With ``batch=True`` a
    consumer runs each lane chunk in one transaction (`chunk`): a savepoint
    per guarded handler call, one commit per chunk; with ``optimistic=True``
    (PostgreSQL) no savepoints: the chunk's rows are claimed per handler in
    one statement, and a chunk whose handler fails is handled again with
    savepoints.
    """

    __slots__ = ("_backend", "_batch", "_defer", "_names", "_optimistic", "_redo", "_slots")

    def __init__(
        self,
        backend: Backend,
        *,
        defer_begin: bool = False,
        batch: bool = False,
        optimistic: bool = False,
    ) -> None:
        from ..events._dispatcher import Slots  # the loop-agnostic bound

        if batch and not isinstance(backend, ChunkBackend):
            raise ValueError(f"{type(self).__name__} cannot batch (batch=True): use it without")
        if optimistic and not (batch and isinstance(backend, ClaimBackend)):
            raise ValueError(
                f"{type(self).__name__} cannot run optimistic chunks (optimistic=True needs "
                "batch=True on a store that claims ahead: PostgresInbox)"
            )
        self._backend = backend
        self._defer = defer_begin
        self._batch = batch
        self._optimistic = optimistic
        self._redo: set[UUID] = set()
        """Ids of optimistic chunks a handler failed in: handled again with savepoints."""
        self._slots = Slots(backend.concurrency)
        self._names: dict[Any, str] = {}

    @property
    def max_transactions(self) -> int:
        """How many inbox transactions may be open at once (1 on SQLite)."""
        return self._slots.total

    @property
    def batch(self) -> bool:
        """Whether consumers handle a lane chunk in one transaction (``batch=True``)."""
        return self._batch

    def chunk(self) -> ChunkScope | None:
        """The async context one lane chunk of a consumer runs in (batch
        mode), or `None` (each guarded handler call commits on its own).

        In it the first guarded handler call opens one transaction, each
        call gets a savepoint (released on success, rolled back to on
        failure) and the exit commits; a consumer settles the chunk's
        messages only after that commit (see the "Speed" docs section).
        """
        return ChunkScope(self) if self._batch else None

    def wrap(self, target: Any, run: Run) -> Run:
        """`run` (a binding's runner) guarded by this inbox, for the event
        dispatcher (the binding's identity is looked up once, then cached)."""
        name = self._names.get(target)
        if name is None:
            name = self._names[target] = identity(target)
        return self._guarded(name, run)

    def _guarded(self, handler: str, run: Run) -> Run:
        async def guarded(event: Any) -> tuple[Any, Sequence[Event]]:
            if not isinstance(event, NotificationEvent):  # in-process: no id, no inbox
                return await run(event)
            message_id = event.event_id
            if not isinstance(message_id, UUID):
                raise InboxKeyError(event, message_id)
            return await self.process(handler, message_id, run, event)

        return guarded

    async def process(
        self, handler: str, message_id: UUID, run: Run, event: Any
    ) -> tuple[Any, Sequence[Event]]:
        """Run ``run(event)`` once for ``(handler, message_id)``: in a new
        transaction holding the inbox row, or (nested in another guarded
        handler of this store) in that one; ``(None, ())`` for a duplicate.

        Follow-up notification events get ids derived from the key
        (`derive_id`), so a re-run after a rollback emits the same ids.
        """
        outer = _current()
        if outer is not None and outer.store is self:
            nested: tuple[Any, Sequence[Event]] = await self._nested(
                outer, handler, message_id, run, event
            )
            return nested
        chunk = current_chunk()
        if chunk is not None and chunk.store is self:
            async with chunk.busy:  # one savepoint in use at a time
                bound = Bound(
                    self, self._backend, handler, message_id, chunk=chunk, kind=kind(event)
                )
                return await self._guard(bound, run, event)
        slots = self._slots
        await slots.acquire()
        try:
            return await self._guard(Bound(self, self._backend, handler, message_id), run, event)
        finally:
            slots.release()

    async def _guard(self, bound: Bound, run: Run, event: Any) -> tuple[Any, Sequence[Event]]:
        """Run one guarded call in `bound` (its own transaction, or a chunk savepoint)."""
        chunk = bound.chunk
        if chunk is not None and chunk.known(bound.handler, bound.message_id) and _inline(bound):
            # claimed ahead (an optimistic chunk): a lookup, no hop, no round trip
            if bound.state == DUPLICATE:
                return None, ()
        elif not self._defer:
            # Shielded: a cancellation arriving while the thread opens
            # the transaction must not skip the rollback below.
            with anyio.CancelScope(shield=True):
                await in_thread(_locked, bound.begin, bound)
            if bound.state == DUPLICATE:
                return None, ()
        token = _set_current(bound)
        try:
            result, events = await run(event)
        except BaseException as error:
            _reset_current(token)
            if bound.state == DUPLICATE and _duplicate(error):  # stopped at its first run
                return None, ()
            if bound.state == OPEN and chunk is not None and chunk.optimistic:
                bound.state = ROLLED_BACK  # no savepoint: the chunk is rolled back
                chunk.undo(cancelled=_cancelled(error))
            elif bound.state == OPEN:
                await _roll_back(bound)
            if (
                chunk is not None
                and chunk.failed
                and not isinstance(error, Abort)
                and not _cancelled(error)
            ):
                # an optimistic chunk cannot undo one handler call: it stops
                # here and is handled again with savepoints
                raise Abort from error
            raise
        _reset_current(token)
        if bound.state == OPEN and bound.chunk is not None:
            bound.state = COMMITTED  # a savepoint: released with the next one or the commit
        elif bound.state != COMMITTED:
            with anyio.CancelScope(shield=True), anyio.fail_after(CLEANUP_TIMEOUT):
                await in_thread(_finish, bound)
            if bound.state == DUPLICATE:
                return None, ()
        return result, _derive(events, bound.handler, bound.message_id)

    async def _nested(
        self, outer: Bound, handler: str, message_id: UUID, run: Run, event: Any
    ) -> tuple[Any, Sequence[Event]]:
        root = outer if outer.parent is None else outer.parent
        if not await in_thread(self._join, root, handler, message_id):
            return None, ()
        nested = Bound(self, self._backend, handler, message_id, parent=root)
        token = _set_current(nested)
        try:
            result, events = await run(event)
        finally:
            _reset_current(token)
        return result, _derive(events, handler, message_id)

    def _join(self, root: Bound, handler: str, message_id: UUID) -> bool:
        with root.lock:
            root.ready()  # a deferred outer transaction begins here
            return self._backend.join(root.handle, handler, message_id, time.time())

    async def seen(self, handler: str | type, message_id: UUID) -> bool:
        """Whether ``(handler, message_id)`` is recorded (committed).

        `handler` is an identity string or a handler class (its identity,
        see `handler_identity`)."""
        name = handler if isinstance(handler, str) else identity(handler)
        return await in_thread(self._backend.seen, name, message_id)

    async def prune(self, *, older_than: timedelta | float) -> int:
        """Delete the rows recorded more than `older_than` ago (a
        `timedelta` or seconds); returns how many. A duplicate of a pruned
        message arriving later is handled again: keep rows longer than any
        redelivery can take.

        Example:
            ```python
            removed = await inbox.prune(older_than=timedelta(days=7))
            ```
        """
        before = time.time() - seconds(older_than)
        return await in_thread(self._backend.prune, before)

    async def ensure_schema(self) -> None:
        """Create the table and its index if missing (idempotent; also done
        on first use)."""
        await in_thread(self._backend.ensure_schema)

    def close(self) -> None:
        """Close the store's own connections (blocking; a later use reopens)."""
        self._backend.close()


def _duplicate(error: BaseException) -> bool:
    """Whether `error` is the inbox's `Duplicate` (alone or in a group)."""
    return all(isinstance(leaf, Duplicate) for leaf in leaves(error))


def _cancelled(error: BaseException) -> bool:
    cancelled = anyio.get_cancelled_exc_class()
    return any(isinstance(leaf, cancelled) for leaf in leaves(error))


def _inline(bound: Bound) -> bool:
    """`Bound.begin` on the event loop, for a row claimed ahead (it is only
    looked up, nothing blocks); `False` when the chunk's lock is busy (a
    worker thread still in it: begin in a hop then)."""
    if not bound.lock.acquire(blocking=False):
        return False
    try:
        bound.begin()
    finally:
        bound.lock.release()
    return True


def _locked(step: Callable[[], Any], bound: Bound) -> Any:
    with bound.lock:
        return step()


def _finish(bound: Bound) -> None:
    """End the handler's transaction after it returned (blocking): commit
    it, or, when it never began (deferred, the handler did no `run`), begin
    and commit in this one hop; a duplicate found then leaves nothing open.

    Raises:
        InboxError: ``run(fn, commit=True)`` rolled the transaction back
            (``fn`` raised) and the handler returned normally anyway.
    """
    with bound.lock:
        if bound.state == PENDING and not bound.begin():
            return
        if bound.state == ROLLED_BACK:
            raise InboxError(
                f"The inbox transaction of {bound.handler} was rolled back (the function given "
                "to run(..., commit=True) raised) but the handler returned normally: let the "
                "error propagate so the message is delivered again"
            )
        bound.end(True)


async def _roll_back(bound: Bound) -> None:
    """Roll back after the handler failed; the handler's error is the one
    that propagates, so a rollback that fails (the connection is gone, and
    the transaction with it) or times out is logged, not raised."""
    try:
        with anyio.CancelScope(shield=True), anyio.fail_after(CLEANUP_TIMEOUT):
            await in_thread(_locked, partial(bound.end, False), bound)
    except Exception:
        logger.warning(
            "Rolling back the inbox transaction of %s failed", bound.handler, exc_info=True
        )


def _derive(events: Sequence[Event], handler: str, message_id: UUID) -> Sequence[Event]:
    if not events:
        return events
    return [
        attrs.evolve(event, event_id=derive_id(handler, message_id, index))
        if isinstance(event, NotificationEvent)
        else event
        for index, event in enumerate(events)
    ]
