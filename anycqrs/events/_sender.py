"""What a consumer calls per event: `EventMediator.send` without its frames."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple

from .._endpoint import resolution_failed, take_list
from ..messages import Event, NotificationEvent
from ._dispatcher import EventDispatcher

__all__ = ["ConsumedSender", "consumed_sender"]


class ConsumedSender(NamedTuple):
    """`send`'s semantics for a consumer's hot loop, in parts (see `consumed_sender`).

    Per event, ``handler = resolve(event)``; when it (or `resolve`) is `None`,
    ``await send(event)``; else ``await handler.handle(event)``, then (also
    when that raised) the handler's events are taken (`take_list`, when
    ``handler._anycqrs_events``), and, when it returned and there were any,
    ``await follow(events)``.
    """

    send: Callable[[Any], Awaitable[None]]
    """The whole of `send` for one event."""
    resolve: Callable[[Any], Any] | None
    """A new handler for an event whose plan is a lone plain handler, else
    `None` (raises `HandlerResolutionError` as `send` does); `None` itself
    when no event has such a plan (a guard or parallel mode)."""
    follow: Callable[[Sequence[Event]], Awaitable[None]]
    """Dispatches (and publishes) the events a handler emitted."""


def consumed_sender(dispatcher: EventDispatcher) -> ConsumedSender:
    """`dispatch_one(event, publish=False)` for consumers (`EventMediator.sender`)
    of `dispatcher`: a notification event whose payload type has one plain
    handler (no middleware, guard, tracer or parallel mode: the endpoint's
    fast path) is resolved to it directly, the plan looked up by payload
    type and valid while the map saw no `bind` since (its `_version`: a later
    `bind` may replace the handler); every other event takes `dispatch_one`."""
    dispatch_one = dispatcher.dispatch_one
    sequential = dispatcher._dispatch_sequential

    async def follow(events: Sequence[Event]) -> None:
        await sequential(events, True)

    if dispatcher.concurrent or dispatcher.guard is not None:

        async def general(event: Any) -> None:
            await dispatch_one(event, publish=False)

        return ConsumedSender(general, None, follow)
    event_map = dispatcher.event_map
    bound = event_map.bound
    fast = dispatcher._handlers.fast
    plans: dict[type, tuple[int, Any, Callable[[], Any]]] = {}
    """payload type -> (the map's `_version` when planned, the lone bound
    target, the factory); a plan of an older version is stale (one integer
    check per event instead of a lookup of the binding by its tuple key)."""

    def resolve(event: Any) -> Any:
        if type(event) is NotificationEvent:
            plan = plans.get(type(event.payload))
            if plan is not None and plan[0] == event_map._version:
                try:
                    return plan[2]()
                except Exception as error:
                    resolution_failed(plan[1], event, error)
                    raise
        return None

    async def send(event: Any) -> None:
        handler = resolve(event)
        if handler is not None:
            try:
                await handler.handle(event)
            finally:  # a failed call's events are dropped with it (singletons)
                followups = take_list(handler) if handler._anycqrs_events else None
            if followups:
                await sequential(followups, True)
            return
        if type(event) is NotificationEvent:
            payload_type = type(event.payload)
            version = event_map._version  # (before: the dispatch may bind)
            await dispatch_one(event, publish=False)
            targets = bound.get((NotificationEvent, payload_type), ())
            if len(targets) == 1:
                found = fast.get(targets[0])
                if found is not None:  # known once the general path compiled it
                    plans[payload_type] = (version, targets[0], found)
            return
        await dispatch_one(event, publish=False)

    return ConsumedSender(send, resolve, follow)
