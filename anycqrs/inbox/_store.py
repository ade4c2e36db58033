"""What every inbox store does on the event loop: bound the open
transactions, hop to a worker thread once per step (open + insert, commit,
roll back), set the per-dispatch `InboxTransaction`, and prune."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any, Protocol, TypeVar
from uuid import UUID

import anyio
import attrs

from .._persistence import in_thread
from ..errors import InboxKeyError
from ..messages import Event, NotificationEvent
from ._guard import identity
from ._transaction import _CURRENT, Bound, derive_id

__all__ = ["Backend", "InboxStore", "seconds"]

T = TypeVar("T")

Run = Callable[[Any], Awaitable[tuple[Any, Sequence[Event]]]]
"""A binding's runner: ``event -> (result, follow-up events)``."""

logger = logging.getLogger("anycqrs.inbox")

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
    the handler ran for this message before: it is skipped.
    """

    __slots__ = ("_backend", "_names", "_slots")

    def __init__(self, backend: Backend) -> None:
        from ..events._dispatcher import Slots  # the loop-agnostic bound

        self._backend = backend
        self._slots = Slots(backend.concurrency)
        self._names: dict[Any, str] = {}

    @property
    def max_transactions(self) -> int:
        """How many inbox transactions may be open at once (1 on SQLite)."""
        return self._slots.total

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
        outer = _CURRENT.get()
        if outer is not None and outer.store is self:
            first = await in_thread(self._join, outer, handler, message_id)
            if not first:
                return None, ()
            nested = Bound(self, outer.handle, outer.connection, handler, message_id)
            nested._outbox = outer.outbox  # the same writer, on the same connection
            token = _CURRENT.set(nested)
            try:
                result, events = await run(event)
            finally:
                _CURRENT.reset(token)
            return result, _derive(events, handler, message_id)
        backend = self._backend
        slots = self._slots
        await slots.acquire()
        try:
            bound = await self._begin(handler, message_id)
            if bound is None:
                return None, ()
            token = _CURRENT.set(bound)
            try:
                result, events = await run(event)
            except BaseException:
                _CURRENT.reset(token)
                await _roll_back(backend, bound)
                raise
            _CURRENT.reset(token)
            with anyio.CancelScope(shield=True), anyio.fail_after(CLEANUP_TIMEOUT):
                await in_thread(backend.commit, bound.handle)
        finally:
            slots.release()
        return result, _derive(events, handler, message_id)

    async def _begin(self, handler: str, message_id: UUID) -> Bound | None:
        backend = self._backend

        def begin() -> Bound | None:
            handle = backend.begin(handler, message_id, time.time())
            if handle is None:
                return None
            try:
                return Bound(
                    self,
                    handle,
                    backend.connection(handle),
                    handler,
                    message_id,
                    make_outbox=lambda: backend.outbox(handle),
                )
            except BaseException:
                backend.rollback(handle)
                raise

        # Shielded: a cancellation arriving while the thread opens the
        # transaction must not leave it open with nobody to end it.
        with anyio.CancelScope(shield=True):
            bound = await in_thread(begin)
        return bound

    def _join(self, outer: Bound, handler: str, message_id: UUID) -> bool:
        with outer.lock:
            return self._backend.join(outer.handle, handler, message_id, time.time())

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


async def _roll_back(backend: Backend, bound: Bound) -> None:
    """Roll back after the handler failed; the handler's error is the one
    that propagates, so a rollback that fails (the connection is gone, and
    the transaction with it) or times out is logged, not raised."""
    try:
        with anyio.CancelScope(shield=True), anyio.fail_after(CLEANUP_TIMEOUT):
            await in_thread(backend.rollback, bound.handle)
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
