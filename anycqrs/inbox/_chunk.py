"""Batch mode: one inbox transaction per lane chunk, a savepoint per
guarded handler call (`Chunk`, entered through `InboxStore.chunk`)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from contextvars import ContextVar, Token
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from uuid import UUID

import anyio

from .._exc import leaves
from .._persistence import in_thread
from ..consumers._protocols import ChunkRedo
from ..errors import InboxError
from ..messages import NotificationEvent
from ._transaction import _CURRENT, Bound

if TYPE_CHECKING:
    from ._store import InboxStore

__all__ = [
    "Abort",
    "Chunk",
    "ChunkBackend",
    "ChunkScope",
    "ClaimBackend",
    "Redo",
    "current_chunk",
    "kind",
]

logger = logging.getLogger("anycqrs.inbox")

_set_current, _reset_current = _CURRENT.set, _CURRENT.reset
"""Bound once (see `_store._current`)."""

CLEANUP_TIMEOUT = 30.0
"""Seconds a chunk's commit or rollback may take once started (shielded)."""

REDO_LIMIT = 100_000
"""Ids of optimistic chunks to handle again with savepoints, kept at most."""


@runtime_checkable
class ChunkBackend(Protocol):
    """The blocking half of a store that can batch (internal).

    `savepoint` opens the chunk's transaction when `handle` is `None`
    (``BEGIN``), else releases the previous handler's savepoint when
    `release`, then sets the savepoint and writes the row, in one round
    trip; it returns the handle and whether the row was new.
    `rollback_savepoint` undoes one handler's work. The transaction ends
    with the backend's `commit` / `rollback`.
    """

    def savepoint(
        self, handle: Any, release: bool, handler: str, message_id: UUID, now: float
    ) -> tuple[Any, bool]: ...

    def rollback_savepoint(self, handle: Any) -> None: ...


@runtime_checkable
class ClaimBackend(Protocol):
    """The blocking half of a store that can run optimistic chunks (internal).

    `claim` opens the chunk's transaction when `handle` is `None`
    (``BEGIN``), then inserts the rows of `handler` for all `message_ids`
    in one statement (``ON CONFLICT DO NOTHING``, in key order), in one
    round trip; it returns the handle and the ids whose row was new.
    `finish` runs `writes` on the connection first (the deferred writes,
    `Chunk.deferred`; pipelined where the driver can), then deletes the
    claimed rows no handler call used (`unused`, handler -> ids) and
    commits, in one round trip.
    """

    def claim(
        self, handle: Any, handler: str, message_ids: Sequence[UUID], now: float
    ) -> tuple[Any, set[UUID]]: ...

    def finish(
        self,
        handle: Any,
        unused: dict[str, set[UUID]],
        writes: Callable[[Any], None] | None = None,
    ) -> None: ...


def kind(event: Any) -> Any:
    """What decides which handlers an event goes to: its class and, for a
    notification event, its payload's class (claims are made per handler
    for the chunk's events of the same kind)."""
    if isinstance(event, NotificationEvent):
        return (type(event), type(event.payload))
    return type(event)


class Redo(InboxError, ChunkRedo):
    """Raised by an optimistic chunk's exit when a guarded handler failed in
    it (internal): the consumer's lanes handle the chunk again at once, and
    the store runs that redo with a savepoint per handler call, so only the
    failing call is retried or dead-lettered."""


class Abort(BaseException):
    """Raised into a guarded handler when its chunk's transaction broke (a
    deadlock, a lost connection): nothing more runs in the chunk, which is
    rolled back and handled again (internal). A `BaseException`, so neither
    a handler nor the per-message retry catches it."""


class Chunk:
    """The transaction of one lane chunk (internal): opened by its first
    guarded handler, a savepoint per handler call, committed at the end.

    `lock` serializes the blocking steps (worker threads); `busy` lets one
    guarded handler call at a time use the savepoint (concurrent handlers
    of one event take turns); `broken` is the error that broke it."""

    __slots__ = (
        "asked",
        "backend",
        "broken",
        "busy",
        "claims",
        "connection",
        "deferred",
        "events",
        "failed",
        "handle",
        "lock",
        "release",
        "store",
    )

    def __init__(
        self, store: InboxStore, backend: ChunkBackend, events: Sequence[Any] | None = None
    ) -> None:
        self.store = store
        self.backend = backend
        self.handle: Any = None
        self.connection: Any = None
        self.release = False
        self.broken: BaseException | None = None
        self.lock = threading.Lock()
        self.busy = anyio.Lock(fast_acquire=True)  # uncontended: no loop pass
        self.events = events
        """The chunk's events when it runs optimistically (no savepoints:
        the rows are claimed per handler, all at once), else `None`."""
        self.claims: dict[str, set[UUID]] = {}
        """Per handler, the claimed new rows no handler call used yet."""
        self.asked: dict[str, set[UUID]] = {}
        """Per handler, the ids claimed so far (new or not)."""
        self.failed = False
        """A guarded handler (or a deferred write) failed in this optimistic
        chunk: it is rolled back and handled again with savepoints."""
        self.deferred: list[tuple[Bound, Callable[..., object], tuple[Any, ...]]] = []
        """The writes `InboxTransaction.defer` queued (the call's
        transaction, the function, its arguments), run in the commit's hop."""

    @property
    def optimistic(self) -> bool:
        """Whether the chunk runs without savepoints (claims made ahead)."""
        return self.events is not None

    def known(self, handler: str, message_id: UUID) -> bool:
        """Whether the row of ``(handler, message_id)`` was claimed already
        (an optimistic chunk: `savepoint` then needs no round trip)."""
        asked = self.asked.get(handler)
        return asked is not None and message_id in asked and self.broken is None

    def savepoint(self, handler: str, message_id: UUID, now: float, of: Any = None) -> bool:
        """Set a savepoint and write the row (blocking, under `lock`);
        whether the row is new (`False`: a duplicate).

        Raises:
            Abort: the chunk's transaction is broken (now or before).
        """
        if self.broken is not None:
            raise Abort from self.broken
        if self.events is not None:
            return self._claimed(handler, message_id, now, of)
        try:
            handle, inserted = self.backend.savepoint(
                self.handle, self.release, handler, message_id, now
            )
        except Exception as error:
            self.broken = error
            raise Abort from error
        self._opened(handle)
        self.release = True
        return inserted

    def _opened(self, handle: Any) -> None:
        """Keep `handle` when it opened the chunk's transaction (its first call)."""
        if self.handle is None:
            self.handle = handle
            self.connection = self.store._backend.connection(handle)

    def _claimed(self, handler: str, message_id: UUID, now: float, of: Any) -> bool:
        """`savepoint` of an optimistic chunk: the first call of `handler`
        claims the rows of all the chunk's events of the same kind (one
        round trip); later calls only look their row up."""
        asked = self.asked.setdefault(handler, set())
        claims = self.claims.setdefault(handler, set())
        if message_id not in asked:
            wanted = {message_id}
            assert self.events is not None
            for event in self.events:
                if (
                    of is not None
                    and isinstance(event, NotificationEvent)
                    and isinstance(event.event_id, UUID)
                    and kind(event) == of
                ):
                    wanted.add(event.event_id)
            ids = sorted(wanted - asked)
            backend = self.store._backend
            assert isinstance(backend, ClaimBackend)
            try:
                handle, new = backend.claim(self.handle, handler, ids, now)
            except Exception as error:
                self.broken = error
                raise Abort from error
            self._opened(handle)
            asked.update(ids)
            claims.update(new)
        if message_id in claims:
            claims.discard(message_id)  # used: a second delivery in the chunk is a duplicate
            return True
        return False

    def undo(self, *, cancelled: bool) -> None:
        """A guarded call of an optimistic chunk failed (or was cancelled):
        mark the chunk broken, to be rolled back; a failure (not a
        cancellation) has it handled again with savepoints. No round trip."""
        if not cancelled:
            self.rollback_to()
        elif self.broken is None:
            self.broken = InboxError("A guarded handler was cancelled in an optimistic chunk")

    def rollback_to(self) -> None:
        """Undo the current handler's savepoint (blocking, under `lock`);
        in an optimistic chunk, mark it broken instead: it is rolled back
        and handled again with savepoints."""
        if self.events is not None:
            self.failed = True
            self.broken = InboxError(
                "A guarded handler failed in an optimistic chunk (no savepoints): the chunk is "
                "rolled back and handled again with a savepoint per handler call"
            )
            return
        try:
            self.backend.rollback_savepoint(self.handle)
        except Exception as error:
            self.broken = error
            raise
        self.release = False

    def end(self, commit: bool) -> None:
        """Commit or roll back the chunk's transaction (blocking)."""
        with self.lock:
            handle, self.handle = self.handle, None
            if handle is None:
                return
            deferred, self.deferred = self.deferred, []
            if commit and self.events is not None and (deferred or any(self.claims.values())):
                backend = self.store._backend
                assert isinstance(backend, ClaimBackend)
                unused = {name: ids for name, ids in self.claims.items() if ids}
                if not deferred:
                    backend.finish(handle, unused)
                    return
                try:
                    backend.finish(handle, unused, lambda connection: _write(deferred, connection))
                except Exception as error:  # noqa: BLE001 - redone: the writes then run in their calls
                    # nothing committed (the backend rolled back): handled again
                    # with savepoints, where each write runs in its handler's call
                    # and a failing one takes that call's error path
                    self.failed = True
                    self.broken = error
            elif commit:
                self.store._backend.commit(handle)
            else:
                self.store._backend.rollback(handle)


def _write(
    deferred: list[tuple[Bound, Callable[..., object], tuple[Any, ...]]], connection: Any
) -> None:
    """Run the deferred writes in their order (blocking), each with its
    handler call's transaction current (so `InboxTransaction.outbox` and
    `InboxTransaction.derive_id` work in them)."""
    for bound, fn, args in deferred:
        token = _set_current(bound)
        try:
            fn(connection, *args)
        finally:
            _reset_current(token)


_CHUNK: ContextVar[Chunk | None] = ContextVar("anycqrs_inbox_chunk", default=None)


def current_chunk() -> Chunk | None:
    """The chunk the lane running in this context is handling, if any."""
    return _CHUNK.get()


class ChunkScope:
    """The async context of one chunk (what `InboxStore.chunk` returns):
    takes one of the store's transaction slots, lets the guarded handlers
    run in the chunk's transaction, commits on a clean exit and rolls back
    otherwise.

    Raises (on exit):
        InboxError: the commit failed, or the transaction broke while the
            chunk ran: nothing of the chunk is settled; handle it again.
    """

    __slots__ = ("_chunk", "_events", "_store", "_token")

    def __init__(self, store: InboxStore) -> None:
        self._store = store
        self._chunk: Chunk | None = None
        self._token: Token[Chunk | None] | None = None
        self._events: Sequence[Any] | None = None

    def expect(self, events: Sequence[Any]) -> None:
        """The chunk's events (see `ChunkPlan` in `anycqrs.consumers._protocols`): with an
        optimistic store the chunk then claims its rows ahead and sets no
        savepoints, unless it is the redo of a chunk whose handler failed."""
        store = self._store
        if not store._optimistic:
            return
        redo = store._redo
        if redo and any(
            isinstance(event, NotificationEvent) and event.event_id in redo for event in events
        ):
            for event in events:
                if isinstance(event, NotificationEvent):
                    redo.discard(event.event_id)
            return  # handled again with savepoints
        self._events = events

    async def __aenter__(self) -> None:
        store = self._store
        backend = store._backend
        assert isinstance(backend, ChunkBackend)
        await store._slots.acquire()
        self._chunk = Chunk(store, backend, self._events)
        self._token = _CHUNK.set(self._chunk)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        chunk, token = self._chunk, self._token
        assert chunk is not None and token is not None
        _CHUNK.reset(token)
        try:
            if chunk.handle is not None:
                commit = exc is None and chunk.broken is None
                try:
                    with anyio.CancelScope(shield=True), anyio.fail_after(CLEANUP_TIMEOUT):
                        await in_thread(chunk.end, commit)
                except Exception as error:
                    if commit:
                        raise InboxError(
                            "Committing the inbox transaction of a chunk failed: none of its "
                            "messages is settled, the chunk is handled again"
                        ) from error
                    logger.warning("Rolling back the inbox chunk failed", exc_info=True)
        finally:
            self._store._slots.release()
        if chunk.failed and chunk.events is not None:
            redo = self._store._redo
            if len(redo) > REDO_LIMIT:
                redo.clear()
            redo.update(
                event.event_id for event in chunk.events if isinstance(event, NotificationEvent)
            )
        if chunk.broken is not None and not _cancelled(exc):
            if chunk.failed and chunk.events is not None:
                raise Redo(
                    "A guarded handler (or a write it deferred) failed in an optimistic inbox "
                    "chunk: it was rolled back "
                    "and is handled again at once with a savepoint per handler call"
                ) from chunk.broken
            raise InboxError(
                f"The inbox transaction of a chunk broke ({chunk.broken!r}): it was rolled "
                "back, none of its messages is settled, the chunk is handled again"
            ) from chunk.broken
        return False


def _cancelled(error: BaseException | None) -> bool:
    if error is None:
        return False
    cancelled = anyio.get_cancelled_exc_class()
    return any(isinstance(leaf, cancelled) for leaf in leaves(error))
