"""``bootstrap()`` builds a `anycqrs.saga.SagaMediator`.

Example:
    ```python
    def sagas(saga_map: SagaMap) -> None:
        saga_map.bind(OrderContext, OrderSaga)

    mediator = anycqrs.saga.bootstrap.bootstrap(
        di_container=lagom.Container(),
        sagas_mapper=sagas,
        saga_storage=SqliteSagaStorage("sagas.db"),
    )
    ```
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .. import _defaults
from .._bootstrap import Mapper, apply_mapper, run_startup
from .._retry import RetryPolicy
from ..brokers import MessageBroker
from ..container import as_container
from ..events._map import EventMap
from ..middlewares import Middleware
from ._map import SagaMap
from ._mediator import (
    COMPENSATION_TIMEOUT,
    MAX_RECOVERY_ATTEMPTS,
    RECOVERY_LEASE,
    SagaMediator,
)
from .storage._protocol import SagaStorage

__all__ = ["bootstrap"]


def bootstrap(
    *,
    di_container: Any = None,
    message_broker: MessageBroker | None = None,
    middlewares: Iterable[Middleware] | None = None,
    sagas_mapper: Mapper[SagaMap] | None = None,
    domain_events_mapper: Mapper[EventMap] | None = None,
    events_mapper: Mapper[EventMap] | None = None,
    saga_storage: SagaStorage | None = None,
    on_startup: Iterable[Callable[[], object]] | None = None,
    max_concurrent_event_handlers: int = _defaults.MAX_CONCURRENT_EVENT_HANDLERS,
    concurrent_event_handle_enable: bool = _defaults.CONCURRENT_EVENT_HANDLE_ENABLE,
    tracer_provider: Any = None,
    compensation_retry_count: int | None = None,
    compensation_retry_delay: float | None = None,
    compensation_retry_backoff: float | None = None,
    compensation_retry: RetryPolicy | None = None,
    compensation_timeout: float = COMPENSATION_TIMEOUT,
    max_recovery_attempts: int = MAX_RECOVERY_ATTEMPTS,
    recovery_lease: float = RECOVERY_LEASE,
    retry_failed_compensations: bool = True,
    meter_provider: Any = None,
) -> SagaMediator:
    """Build a `anycqrs.saga.SagaMediator`.

    Args:
        di_container: a `lagom.Container`, a `dishka.AsyncContainer`, a
            `di.Container`, a dependency-injector container (each wrapped in
            its adapter, detected by type) or any `anycqrs.Container`
            (default: a new lagom container); a `ScopedContainer` runs every
            handler in a scope of its own (see `anycqrs.container`).
            Step handlers are resolved from it (with a scoped container, each
            step's `act` and each compensation attempt in a scope of its own).
        message_broker: where the steps' notification events go (default: a new
            `anycqrs.brokers.InMemoryMessageBroker`).
        middlewares: wrap every step's ``act``, outermost first (default: none).
        sagas_mapper: binds context types to sagas on the given ``SagaMap``
            (a callable or a ready ``SagaMap``).
        domain_events_mapper: binds the events steps emit on an ``EventMap``.
        events_mapper: the same (merged with ``domain_events_mapper``).
        saga_storage: where saga state lives (default: a new
            `anycqrs.saga.storage.MemorySagaStorage`).
        on_startup: callables run once, before the mediator is built.
        max_concurrent_event_handlers: bound of parallel event dispatch (default 10).
        concurrent_event_handle_enable: dispatch events in parallel (default ``False``).
        tracer_provider: an OpenTelemetry `TracerProvider` (default: the
            global one, read now; none set, or OpenTelemetry absent: no
            spans). See the Observability page.
        compensation_retry_count: attempts per compensation (default 3).
        compensation_retry_delay: seconds before the second attempt (default 0.5).
        compensation_retry_backoff: delay multiplier per attempt (default 2.0).
        compensation_retry: the compensations' whole `anycqrs.RetryPolicy`, the
            newer way to say the three above (with `max_delay`, `jitter` and
            `retry_on`). It takes their place: giving it with any of them is a
            `ValueError`. Neither given: `attempts=3, delay=0.5, multiplier=2.0`,
            no maximum delay.
        compensation_timeout: deadline in seconds of a saga's whole compensation
            phase (default 60); past it the saga stays COMPENSATING for recovery.
        max_recovery_attempts: recovery claims before a saga is given up and
            marked FAILED (default 5).
        recovery_lease: seconds a recovery worker holds a saga (default 300).
        retry_failed_compensations: whether `recover_pending` retries the
            compensations of `COMPENSATION_FAILED` sagas, each until it has
            been claimed `max_recovery_attempts` times (default `True`).
            `recover(saga_id)` retries one whatever this says.
        meter_provider: the OpenTelemetry meter provider of the saga metrics
            (default: the global one, read here; see docs/metrics.md).
    """
    run_startup(on_startup)
    return SagaMediator(
        apply_mapper(SagaMap, sagas_mapper),
        container=as_container(di_container),
        storage=saga_storage,
        message_broker=message_broker,
        event_map=apply_mapper(EventMap, domain_events_mapper, events_mapper),
        middlewares=middlewares or (),
        max_concurrent_event_handlers=max_concurrent_event_handlers,
        concurrent_event_handle_enable=concurrent_event_handle_enable,
        tracer_provider=tracer_provider,
        compensation_retry_count=compensation_retry_count,
        compensation_retry_delay=compensation_retry_delay,
        compensation_retry_backoff=compensation_retry_backoff,
        compensation_retry=compensation_retry,
        compensation_timeout=compensation_timeout,
        max_recovery_attempts=max_recovery_attempts,
        recovery_lease=recovery_lease,
        retry_failed_compensations=retry_failed_compensations,
        meter_provider=meter_provider,
    )
