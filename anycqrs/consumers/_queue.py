"""One lane's queue of chunks (private to the lanes)."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from ._decoder import Inbound

__all__ = ["LaneQueue"]


class LaneQueue:
    """One lane's queued chunks and the events its two sides wait on (a
    memory object stream's `receive` passes through the loop once before it
    waits: one task step per lane per batch more)."""

    __slots__ = ("chunks", "closed", "space", "waiter")

    def __init__(self) -> None:
        self.chunks: deque[list[Inbound]] = deque()
        self.waiter: anyio.Event | None = None
        """Set when a chunk arrives (or the lanes close) while the lane waits."""
        self.space: anyio.Event | None = None
        """Set when the lane takes a chunk while the submitter waits for room."""
        self.closed = False
        """`close` was called: the lane ends once its queue is empty."""
