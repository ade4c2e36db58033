"""The background pruner: a round at start, then every `every` seconds;
a failing round is logged, not fatal; cancellation stops it."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import anyio
import pytest

from anycqrs.inbox import InboxPruner, SqliteInbox

pytestmark = pytest.mark.anyio


async def _record(inbox: SqliteInbox, count: int) -> None:
    from uuid import uuid4

    async def run(event: object) -> tuple[None, tuple[()]]:
        return None, ()

    for _ in range(count):
        await inbox.process("H", uuid4(), run, None)


class TestPruner:
    """Rounds, failures, cancellation."""

    async def test_rounds(self, tmp_path: Path) -> None:
        inbox = SqliteInbox(tmp_path / "app.db")
        await _record(inbox, 3)
        await anyio.sleep(0.01)
        assert await InboxPruner(inbox, older_than=timedelta(hours=1)).run_once() == 0
        pruner = InboxPruner(inbox, older_than=0, every=0.01)
        with anyio.fail_after(20):
            async with anyio.create_task_group() as group:
                await group.start(pruner.run)
                while await _count(tmp_path):
                    await anyio.sleep(0.01)
                group.cancel_scope.cancel()
        assert await _count(tmp_path) == 0

    async def test_failing_round_is_logged(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        inbox = SqliteInbox(tmp_path / "missing-dir" / "app.db")
        pruner = InboxPruner(inbox, every=0.01)
        with anyio.fail_after(20), caplog.at_level(logging.ERROR, "anycqrs.inbox"):
            async with anyio.create_task_group() as group:
                await group.start(pruner.run)
                while len(caplog.records) < 2:
                    await anyio.sleep(0.01)
                group.cancel_scope.cancel()
        assert "Pruning the inbox failed" in caplog.records[0].getMessage()

    def test_arguments_are_checked(self, tmp_path: Path) -> None:
        inbox = SqliteInbox(tmp_path / "app.db")
        with pytest.raises(ValueError, match="negative"):
            InboxPruner(inbox, older_than=-1)
        with pytest.raises(ValueError, match="positive"):
            InboxPruner(inbox, every=0)


async def _count(path: Path) -> int:
    import sqlite3

    def count() -> int:
        with sqlite3.connect(path / "app.db") as connection:
            return int(connection.execute("SELECT COUNT(*) FROM anycqrs_inbox").fetchone()[0])

    return await anyio.to_thread.run_sync(count)
