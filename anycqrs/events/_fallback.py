"""Event handler fallbacks: run another handler when the primary fails."""

from __future__ import annotations

from typing import Any

import attrs

from .._endpoint import Endpoints
from .._fallback import FallbackBinding, guarded
from .._handlers import declared_args
from .._routing import EventEndpoint, Route, describe
from ..errors import BindingError
from ._handler import EventHandler
from ._map import _event_fits, check_event_handler

__all__ = ["EventHandlerFallback"]


def _declared(target: Any) -> Any:
    args = declared_args(target, EventHandler) if isinstance(target, type) else ()
    return args[0] if args else None


@attrs.frozen(eq=False, repr=False)
class EventHandlerFallback(FallbackBinding):
    """Bind an event handler with a fallback that runs when it fails.

    The fallback handles the event when the primary raises one of
    `failure_exceptions` (any `Exception` when empty), or instead of the
    primary while its circuit breaker is open; other errors propagate. Only the
    handler that succeeded contributes follow-up events. Bind it like a
    handler: `events.bind(OrderPaid, EventHandlerFallback(Notify, LogOnly))`.

    Both must be event handler classes (or event routes): a `RequestHandler`,
    a chain link or a streaming handler is rejected when the fallback is
    created, with a `anycqrs.errors.BindingError` naming both classes.
    Mismatched event types (the two handlers declare unrelated events, or one
    that does not fit the bound event) are rejected too.

    Attributes:
        primary: the `EventHandler` class normally used.
        fallback: the `EventHandler` class used instead.
        failure_exceptions: exception types that trigger the fallback.
        circuit_breaker: a `anycqrs.CircuitBreaker` protecting the primary.

    Example:
        ```python
        events.bind(
            anycqrs.NotificationEvent[OrderPaid],
            anycqrs.EventHandlerFallback(
                SendSms, SendEmail, circuit_breaker=anycqrs.CircuitBreaker(fail_max=3)
            ),
        )
        ```
    """

    def __attrs_post_init__(self) -> None:
        owner = f"EventHandlerFallback({describe(self.primary)}, {describe(self.fallback)}): "
        for role, target in (("the primary ", self.primary), ("the fallback ", self.fallback)):
            if not isinstance(target, Route):
                check_event_handler(owner + role, target)
        primary, fallback = _declared(self.primary), _declared(self.fallback)
        if (
            primary is not None
            and fallback is not None
            and not (_event_fits(primary, fallback) or _event_fits(fallback, primary))
        ):
            raise BindingError(
                f"EventHandlerFallback: the primary {describe(self.primary)} handles "
                f"{describe(primary)} but the fallback {describe(self.fallback)} handles "
                f"{describe(fallback)}"
            )

    def validate(self, message_type: Any) -> None:
        """Both handlers must accept `message_type`."""
        for target in (self.primary, self.fallback):
            if isinstance(target, Route):
                target.validate(message_type)
                continue
            declared = _declared(target)
            if declared is not None and not _event_fits(message_type, declared):
                raise BindingError(
                    f"EventHandlerFallback: {describe(target)} handles {describe(declared)}, "
                    f"not {describe(message_type)}"
                )

    def build(self, endpoints: Endpoints) -> EventEndpoint:
        """The endpoint: `event -> (None, follow-up events)`; each handler
        call goes through the dispatcher's middlewares."""
        return guarded(
            endpoints.binding(self.primary),
            endpoints.binding(self.fallback),
            protected=self.primary,
            failure_exceptions=self.failure_exceptions,
            breaker=self.circuit_breaker,
        )
