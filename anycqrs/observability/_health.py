"""Health: what each component reports (`HealthCheck`), the aggregate
(`HealthReport`) and the registry that asks them (`Health`).

A component is *live* unless it is stuck in a way only a restart fixes (a
consumer whose poll loop stalled), and *ready* while it does its job
(connected, partitions assigned, outbox not lagging). Checks are pure reads
of state the components keep anyway: asking is cheap and never blocks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

import attrs

__all__ = ["ConsumerProbe", "Health", "HealthCheck", "HealthReport", "HealthSource"]


@attrs.frozen
class HealthCheck:
    """What one component says about itself.

    Attributes:
        name: the component (`KafkaEventConsumer(orders)`, `outbox(outbox)`).
        live: `False` when only a restart helps (a stalled loop).
        ready: `False` while it cannot do its job (not running, disconnected,
            no partitions, an old backlog).
        reasons: why it is not live or not ready (empty when healthy).
        details: figures behind the verdict (seconds since the last poll...).

    Example:
        ```python
        check = HealthCheck("cache", live=True, ready=False, reasons=("warming up",))
        assert check.status == "fail"
        ```
    """

    name: str
    live: bool
    ready: bool
    reasons: tuple[str, ...] = ()
    details: Mapping[str, Any] = attrs.field(factory=dict)

    @property
    def status(self) -> str:
        """`"pass"` when live and ready, else `"fail"`."""
        return "pass" if self.live and self.ready else "fail"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "name": self.name,
            "status": self.status,
            "live": self.live,
            "ready": self.ready,
            "reasons": list(self.reasons),
            "details": dict(self.details),
        }


@attrs.frozen
class HealthReport:
    """The health of a process: every component's `HealthCheck`.

    Attributes:
        live: every component is live.
        ready: every component is ready (and live).
        checks: the components' checks, in registration order.

    Example:
        ```python
        report = HealthReport.of([HealthCheck("a", live=True, ready=True)])
        assert report.ready and report.to_dict()["status"] == "pass"
        ```
    """

    live: bool
    ready: bool
    checks: tuple[HealthCheck, ...]

    @classmethod
    def of(cls, checks: Iterable[HealthCheck]) -> HealthReport:
        """The report of `checks`."""
        checks = tuple(checks)
        live = all(c.live for c in checks)
        return cls(live, live and all(c.ready for c in checks), checks)

    @property
    def status(self) -> str:
        """`"pass"` when live and ready, else `"fail"`."""
        return "pass" if self.ready else "fail"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the body of the health endpoint)."""
        return {
            "status": self.status,
            "live": self.live,
            "ready": self.ready,
            "checks": [c.to_dict() for c in self.checks],
        }


@runtime_checkable
class HealthSource(Protocol):
    """Anything that reports its health: the Kafka and RabbitMQ consumers,
    `OutboxMonitor`, or your own component.

    Example:
        ```python
        class Cache:
            def health(self) -> HealthCheck:
                return HealthCheck("cache", live=True, ready=True)
        ```
    """

    def health(self) -> HealthCheck:
        """The component's check now (cheap, non-blocking)."""
        ...


class Health:
    """The registry of a process's health sources; `health()` asks each.

    Args:
        sources: components to ask (more can be added with `add`).

    Example:
        ```python
        health = Health([consumer, OutboxMonitor(store)])
        report = health.health()
        print(report.ready, [c.reasons for c in report.checks])
        ```
    """

    __slots__ = ("_sources",)

    def __init__(self, sources: Iterable[HealthSource] = ()) -> None:
        self._sources: list[HealthSource] = list(sources)

    def add(self, source: HealthSource) -> None:
        """Ask `source` too."""
        self._sources.append(source)

    def health(self) -> HealthReport:
        """Every source's check now; a source that raises counts as not live."""
        checks = []
        for source in self._sources:
            try:
                checks.append(source.health())
            except Exception as error:  # noqa: BLE001 - a broken check is a finding
                name = type(source).__name__
                reason = f"health check raised {type(error).__name__}: {error}"
                checks.append(HealthCheck(name, live=False, ready=False, reasons=(reason,)))
        return HealthReport.of(checks)


class ConsumerProbe:
    """The health state of one consumer, kept by the consumer itself.

    The consumer tells it when it starts and stops, when its loop makes
    progress (`polled`: a poll returned, or handled messages were settled)
    and when its broker connection is lost and back. Plain attribute writes,
    safe from the consumer's worker threads.

    Args:
        name: the component's name in checks.
        stalled_after: seconds without progress (while connected) after
            which the consumer is not live (`None`: never).
        unassigned_after: seconds without partitions after which it is not
            ready (`None`: never).
        clock: monotonic seconds (injectable for tests).

    Example:
        ```python
        probe = ConsumerProbe("my-consumer", stalled_after=60)
        probe.started()
        probe.disconnected("connection refused")
        assert not probe.check().ready
        ```
    """

    __slots__ = (
        "_clock",
        "_down_reason",
        "_down_since",
        "_last_poll",
        "_running",
        "name",
        "stalled_after",
        "unassigned_after",
    )

    def __init__(
        self,
        name: str,
        *,
        stalled_after: float | None = 60.0,
        unassigned_after: float | None = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for what, value in (
            ("stalled_after", stalled_after),
            ("unassigned_after", unassigned_after),
        ):
            if value is not None and value <= 0:
                raise ValueError(f"{what} must be positive or None, got {value}")
        self.name = name
        self.stalled_after = stalled_after
        self.unassigned_after = unassigned_after
        self._clock = clock
        self._running = False
        self._last_poll = clock()
        self._down_since: float | None = None
        self._down_reason = ""

    def started(self) -> None:
        """`run` began (connected)."""
        self._last_poll = self._clock()
        self._down_since = None
        self._running = True

    def stopped(self) -> None:
        """`run` ended."""
        self._running = False

    def polled(self) -> None:
        """The loop made progress."""
        self._last_poll = self._clock()

    def disconnected(self, reason: str) -> None:
        """The broker connection is lost (the consumer reconnects)."""
        if self._down_since is None:
            self._down_since = self._clock()
        self._down_reason = reason

    def connected(self) -> None:
        """The broker connection is (back) up."""
        if self._down_since is not None:
            self._last_poll = self._clock()
            self._down_since = None

    @property
    def is_connected(self) -> bool:
        """Whether the broker connection is up (as last reported)."""
        return self._down_since is None

    def check(self, unassigned_for: float | None = None) -> HealthCheck:
        """The consumer's `HealthCheck` now (`unassigned_for`: seconds the
        consumer has had no partition, for Kafka)."""
        if not self._running:
            return HealthCheck(self.name, live=True, ready=False, reasons=("not running",))
        now = self._clock()
        idle = now - self._last_poll
        details: dict[str, Any] = {"seconds_since_progress": round(idle, 3)}
        live, ready, reasons = True, True, []
        down = self._down_since
        if down is not None:
            ready = False
            details["disconnected_for"] = round(now - down, 3)
            reasons.append(
                f"broker connection lost {now - down:.1f}s ago, reconnecting ({self._down_reason})"
            )
        elif self.stalled_after is not None and idle > self.stalled_after:
            live = ready = False
            reasons.append(f"poll loop stalled: no progress for {idle:.1f}s")
        if unassigned_for is not None:
            details["unassigned_for"] = round(unassigned_for, 3)
            if self.unassigned_after is not None and unassigned_for > self.unassigned_after:
                ready = False
                reasons.append(f"no partitions assigned for {unassigned_for:.1f}s")
        return HealthCheck(
            self.name, live=live, ready=ready, reasons=tuple(reasons), details=details
        )
