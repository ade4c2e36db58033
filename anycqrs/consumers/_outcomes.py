"""What happens to one item in a lane: handled, handled inside its span,
retried after a failure, dead-lettered, or skipped as poison (the per-item
outcomes of `Lanes`, a mixin private to the lanes)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from .._retry import RetryPolicy, Sleep, retry_call
from ..errors import MessageHandlingError
from ..observability import _messaging, _tracing
from ..observability._metrics import ConsumerMetrics
from ._decoder import Inbound
from ._protocols import Transport

__all__ = ["ItemOutcomes"]


class ItemOutcomes:
    """The per-item outcomes of `Lanes` (its base class): each returns the
    outcome (`success`, `dead_lettered`, `poison`) or raises
    `MessageHandlingError`. The attributes are set by `Lanes.__init__`."""

    _send: Callable[[Any], Any]
    _transport: Transport
    _retry: RetryPolicy
    _logger: logging.Logger
    _sleep: Sleep
    _metrics: ConsumerMetrics | None
    _traced: _messaging.TracedTransport | None
    _tracer: Any

    async def _handle(self, item: Inbound, started: float) -> str:
        """Handle `item`; its outcome (`success`, `dead_lettered`) or raise."""
        try:
            await self._send(item.event)
        except Exception as exc:  # noqa: BLE001 - retried below
            return await self._failed(item, exc, started)
        return "success"

    async def _observed(self, item: Inbound, started: float) -> str:
        """Handle `item` inside its `process` span."""
        traced = self._traced
        assert traced is not None
        span = _messaging.process_span(self._tracer, traced, item)
        error: BaseException | None = None
        outcome = "success"
        try:
            with _tracing.otel_trace.use_span(
                span, end_on_exit=False, record_exception=False, set_status_on_exception=False
            ):
                try:
                    await self._send(item.event)
                except Exception as exc:  # noqa: BLE001 - retried below
                    span.record_exception(exc)
                    outcome = await self._failed(item, exc, started)
                    if outcome == "dead_lettered":
                        span.set_attribute("anycqrs.dead_lettered", True)
                        span.set_status(_tracing.Status(_tracing.StatusCode.ERROR, str(exc)))
        except BaseException as exc:
            error = exc
            raise
        finally:
            _tracing.end_span(span, error)
        return outcome

    async def _failed(self, item: Inbound, error: Exception, started: float) -> str:
        """Retry a failed item; its outcome (`success`, `dead_lettered`) or raise."""
        attempts = 1
        location = self._transport.location(item)
        metrics = self._metrics

        def on_retry(error: BaseException, failures: int, delay: float) -> None:
            if metrics is not None:
                metrics.retried(item.event)
            self._logger.info(
                "Handler failed for %s (attempt %d): %r; retrying in %.3gs",
                location,
                failures,
                error,
                delay,
            )

        async def attempt() -> None:
            nonlocal attempts
            attempts += 1
            await self._send(item.event)

        try:
            await retry_call(
                self._retry,
                attempt,
                failures=1,
                error=error,
                on_retry=on_retry,
                sleep=self._sleep,
            )
        except Exception as exc:  # noqa: BLE001 - dead-lettered or raised below
            error = exc
        else:
            return "success"
        if await self._transport.dead_letter(item, error, attempts):
            self._logger.error(
                "Handler failed for %s after %d attempt(s); dead-lettered",
                location,
                attempts,
                exc_info=error,
            )
            if metrics is not None:
                metrics.dead_lettered(item.event, "failed")
            return "dead_lettered"
        if metrics is not None:
            metrics.processed(item.event, "failed", time.perf_counter() - started, error)
        raise MessageHandlingError(location, attempts, error) from error

    async def _poison(self, item: Inbound) -> str:
        error = item.error
        assert error is not None
        location = self._transport.location(item)
        dead = await self._transport.dead_letter(item, error, 0)
        self._logger.error(
            "Cannot decode the message at %s (%s); %s",
            location,
            error,
            "dead-lettered" if dead else "skipped (no dead-letter destination)",
        )
        if dead and self._metrics is not None:
            self._metrics.dead_lettered(item.event, "poison")
        return "poison"
