"""The background task that keeps an inbox small."""

from __future__ import annotations

import logging
from datetime import timedelta

import anyio
import anyio.abc
import attrs

from ._store import InboxStore, seconds

__all__ = ["InboxPruner"]

logger = logging.getLogger("anycqrs.inbox")


@attrs.frozen
class InboxPruner:
    """Prunes an inbox by age, now and then, until cancelled.

    Start it beside the consumer (``await task_group.start(pruner.run)``);
    each round deletes the rows older than `older_than` (one indexed
    ``DELETE``). A failed round is logged and tried again next time.

    Attributes:
        inbox: the store to prune.
        older_than: how long a row is kept (a `timedelta` or seconds;
            default 7 days). A duplicate arriving later than that is
            handled again.
        every: seconds between rounds (default one hour).

    Example:
        ```python
        pruner = InboxPruner(inbox, older_than=timedelta(days=3), every=600)
        async with anyio.create_task_group() as tg:
            await tg.start(pruner.run)
            await tg.start(consumer.run)
        ```
    """

    inbox: InboxStore
    older_than: timedelta | float = timedelta(days=7)
    every: float = 3600.0

    def __attrs_post_init__(self) -> None:
        seconds(self.older_than)
        if self.every <= 0:
            raise ValueError(f"every must be positive, got {self.every!r}")

    async def run_once(self) -> int:
        """One round: how many rows it deleted."""
        return await self.inbox.prune(older_than=self.older_than)

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Prune now, then every `every` seconds, until cancelled."""
        task_status.started()
        while True:
            try:
                removed = await self.run_once()
            except Exception:
                logger.exception("Pruning the inbox failed; trying again in %.3gs", self.every)
            else:
                logger.debug("Pruned %d inbox row(s)", removed)
            await anyio.sleep(self.every)
