"""Observability: metrics on the OpenTelemetry metrics API, and health checks.

Metrics need `opentelemetry-api` (the `otel` extra) and a configured SDK;
without them every instrument is off and costs next to nothing. Health
needs nothing: the consumers and `OutboxMonitor` report a `HealthCheck`,
`Health` gathers them into a `HealthReport`, and `HealthApp` serves it for
Kubernetes probes (`/livez`, `/readyz`). See docs/metrics.md.

Example:
    ```python
    from anycqrs.observability import Health, HealthCheck

    class Cache:
        def health(self) -> HealthCheck:
            return HealthCheck("cache", live=True, ready=True)

    assert Health([Cache()]).health().ready
    ```
"""

from __future__ import annotations

from ._asgi import HealthApp as HealthApp
from ._health import ConsumerProbe as ConsumerProbe
from ._health import Health as Health
from ._health import HealthCheck as HealthCheck
from ._health import HealthReport as HealthReport
from ._health import HealthSource as HealthSource
from ._metrics import ConsumerMetrics as ConsumerMetrics
from ._metrics import MetricsMiddleware as MetricsMiddleware
from ._outbox import OutboxMonitor as OutboxMonitor
from ._outbox import OutboxSnapshot as OutboxSnapshot
from ._outbox import OutboxStats as OutboxStats

__all__ = [
    "ConsumerMetrics",
    "ConsumerProbe",
    "Health",
    "HealthApp",
    "HealthCheck",
    "HealthReport",
    "HealthSource",
    "MetricsMiddleware",
    "OutboxMonitor",
    "OutboxSnapshot",
    "OutboxStats",
]
