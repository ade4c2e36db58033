"""Batch mode: one inbox transaction per lane chunk, a savepoint per
guarded handler call (`Chunk`, entered through `InboxStore.chunk`)."""

from __future__ import annotations

import logging
import threading
from contextvars import ContextVar, Token
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from uuid import UUID

import anyio

from .._exc import leaves
from .._persistence import in_thread
from ..errors import InboxError

if TYPE_CHECKING:
    from ._store import InboxStore

__all__ = ["Abort", "Chunk", "ChunkBackend", "ChunkScope", "current_chunk"]

logger = logging.getLogger("anycqrs.inbox")

CLEANUP_TIMEOUT = 30.0
"""Seconds a chunk's commit or rollback may take once started (shielded)."""


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

    __slots__ = ("backend", "broken", "busy", "connection", "handle", "lock", "release", "store")

    def __init__(self, store: InboxStore, backend: ChunkBackend) -> None:
        self.store = store
        self.backend = backend
        self.handle: Any = None
        self.connection: Any = None
        self.release = False
        self.broken: BaseException | None = None
        self.lock = threading.Lock()
        self.busy = anyio.Lock(fast_acquire=True)  # uncontended: no loop pass

    def savepoint(self, handler: str, message_id: UUID, now: float) -> bool:
        """Set a savepoint and write the row (blocking, under `lock`);
        whether the row is new (`False`: a duplicate).

        Raises:
            Abort: the chunk's transaction is broken (now or before).
        """
        if self.broken is not None:
            raise Abort from self.broken
        try:
            handle, inserted = self.backend.savepoint(
                self.handle, self.release, handler, message_id, now
            )
        except Exception as error:
            self.broken = error
            raise Abort from error
        if self.handle is None:
            self.handle = handle
            self.connection = self.store._backend.connection(handle)
        self.release = True
        return inserted

    def rollback_to(self) -> None:
        """Undo the current handler's savepoint (blocking, under `lock`)."""
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
            if commit:
                self.store._backend.commit(handle)
            else:
                self.store._backend.rollback(handle)


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

    __slots__ = ("_chunk", "_store", "_token")

    def __init__(self, store: InboxStore) -> None:
        self._store = store
        self._chunk: Chunk | None = None
        self._token: Token[Chunk | None] | None = None

    async def __aenter__(self) -> None:
        store = self._store
        backend = store._backend
        assert isinstance(backend, ChunkBackend)
        await store._slots.acquire()
        self._chunk = Chunk(store, backend)
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
        if chunk.broken is not None and not _cancelled(exc):
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
