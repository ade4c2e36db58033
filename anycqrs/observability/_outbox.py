"""`OutboxMonitor`: an outbox's backlog, measured on a schedule, as metrics
(`anycqrs.outbox.*` gauges) and as a health check."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import anyio
import anyio.abc
import attrs

from ._health import HealthCheck
from ._state_metrics import OutboxMetrics

if TYPE_CHECKING:
    from ..outbox import OutboxRecord, OutboxStatus

__all__ = ["OutboxMonitor", "OutboxSnapshot", "OutboxStats"]

logger = logging.getLogger("anycqrs.observability")


@runtime_checkable
class OutboxStats(Protocol):
    """The inspection side of an outbox store: every built-in store
    (`SqliteOutboxStore`, `PostgresOutboxStore`, `SqlAlchemyOutboxStore`)
    has it. Blocking; the monitor calls them in a worker thread.

    Example:
        ```python
        store = SqliteOutboxStore("app.db")
        assert isinstance(store, OutboxStats)
        ```
    """

    def counts(self) -> dict[OutboxStatus, int]:
        """How many rows are in each status."""
        ...

    def fetch(
        self, *, status: OutboxStatus | None = None, limit: int = 100, after_id: int = 0
    ) -> list[OutboxRecord]:
        """Rows in id order (optionally of one status)."""
        ...


@attrs.frozen
class OutboxSnapshot:
    """One measurement of an outbox.

    Attributes:
        pending: rows waiting to be published (retries included).
        dead: dead-lettered rows.
        oldest_age: seconds since the oldest pending row was written (`0.0`
            when there is none).
        at: when it was measured (aware UTC).

    Example:
        ```python
        snapshot = await monitor.refresh()
        print(snapshot.pending, snapshot.dead, snapshot.oldest_age)
        ```
    """

    pending: int
    dead: int
    oldest_age: float
    at: datetime


def _utcnow() -> datetime:
    from .._persistence import utcnow

    return utcnow()


class OutboxMonitor:
    """Measures an outbox's backlog every `interval` seconds: the metrics
    `anycqrs.outbox.backlog`, `.oldest_age` and `.dead`, and `health()`
    (not ready while the oldest pending row is older than `max_age`, or the
    last query failed).

    Each measurement is two cheap queries in one worker-thread hop: the
    per-status counts and the oldest pending row (the pending-rows index).
    Run it next to the relay (in the same task group); `refresh` measures
    once.

    Args:
        store: the outbox store (any `OutboxStats`).
        interval: seconds between measurements.
        max_age: seconds the oldest pending row may wait before the outbox
            is not ready (`None`: never).
        name: the component's name (the `anycqrs.outbox.table` attribute).
        meter_provider: the OpenTelemetry meter provider (default: the
            global one, read when the monitor is built).
        clock: the current time (aware UTC); injectable for tests.
        limiter: thread limiter for the queries (default: anyio's).

    Example:
        ```python
        monitor = OutboxMonitor(store, interval=15, max_age=300)
        async with anyio.create_task_group() as tg:
            await tg.start(relay.run)
            await tg.start(monitor.run)
        ```
    """

    __slots__ = (
        "_clock",
        "_error",
        "_interval",
        "_limiter",
        "_max_age",
        "_metrics",
        "_snapshot",
        "_store",
        "name",
    )

    def __init__(
        self,
        store: OutboxStats,
        *,
        interval: float = 15.0,
        max_age: float | None = 300.0,
        name: str = "outbox",
        meter_provider: Any = None,
        clock: Callable[[], datetime] = _utcnow,
        limiter: anyio.CapacityLimiter | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be positive, got {interval}")
        if max_age is not None and max_age <= 0:
            raise ValueError(f"max_age must be positive or None, got {max_age}")
        self._store = store
        self._interval = interval
        self._max_age = max_age
        self.name = name
        self._metrics = OutboxMetrics.create(meter_provider, name)
        self._clock = clock
        self._limiter = limiter
        self._snapshot: OutboxSnapshot | None = None
        self._error: str | None = None

    @property
    def snapshot(self) -> OutboxSnapshot | None:
        """The last measurement (`None` before the first)."""
        return self._snapshot

    def _measure(self) -> OutboxSnapshot:
        from ..outbox import OutboxStatus

        counts = self._store.counts()
        oldest = self._store.fetch(status=OutboxStatus.PENDING, limit=1)
        now = self._clock()
        age = max(0.0, (now - oldest[0].created_at).total_seconds()) if oldest else 0.0
        return OutboxSnapshot(
            counts.get(OutboxStatus.PENDING, 0), counts.get(OutboxStatus.DEAD, 0), age, now
        )

    async def refresh(self) -> OutboxSnapshot:
        """Measure now (and record the gauges).

        Raises:
            Exception: the store's error (also kept for `health()`).
        """
        from .._persistence import in_thread

        try:
            snapshot = await in_thread(self._measure, limiter=self._limiter)
        except Exception as error:
            self._error = f"{type(error).__name__}: {error}"
            raise
        self._error = None
        self._snapshot = snapshot
        if self._metrics is not None:
            self._metrics.observed(snapshot.pending, snapshot.dead, snapshot.oldest_age)
        return snapshot

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Measure every `interval` seconds until cancelled; a failing
        query is kept for `health()` and tried again next time."""
        task_status.started()
        while True:
            try:
                await self.refresh()
            except Exception as error:  # noqa: BLE001 - reported by health(), tried again
                logger.warning("Outbox monitor %s: query failed: %s", self.name, error)
            await anyio.sleep(self._interval)

    def health(self) -> HealthCheck:
        """The outbox's health from the last measurement (no query)."""
        name = f"outbox({self.name})"
        if self._error is not None:
            reason = f"the outbox cannot be queried: {self._error}"
            return HealthCheck(name, live=True, ready=False, reasons=(reason,))
        snapshot = self._snapshot
        if snapshot is None:
            return HealthCheck(name, live=True, ready=False, reasons=("not measured yet",))
        details = {
            "pending": snapshot.pending,
            "dead": snapshot.dead,
            "oldest_age": round(snapshot.oldest_age, 3),
        }
        if self._max_age is not None and snapshot.oldest_age > self._max_age:
            reason = (
                f"the oldest pending row is {snapshot.oldest_age:.0f}s old "
                f"(more than {self._max_age:g}s): is the relay running and the broker up?"
            )
            return HealthCheck(name, live=True, ready=False, reasons=(reason,), details=details)
        return HealthCheck(name, live=True, ready=True, details=details)
