"""What a consumer calls per event: `EventMediator.send` without its frames."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from .._endpoint import resolution_failed, take_list
from ..messages import NotificationEvent
from ._dispatcher import EventDispatcher

__all__ = ["consumed_sender"]


def consumed_sender(dispatcher: EventDispatcher) -> Callable[[Any], Awaitable[None]]:
    """`dispatch_one(event, publish=False)` as one function, for consumers
    (`EventMediator.sender`) of `dispatcher`: a notification event whose payload type has
    one plain handler (no middleware, guard, tracer or parallel mode: the
    endpoint's fast path) calls it directly, the plan looked up by payload
    type and valid while the map saw no `bind` since (its `_version`: a later
    `bind` may replace the handler); every other event takes `dispatch_one`."""
    dispatch_one = dispatcher.dispatch_one
    if dispatcher.concurrent or dispatcher.guard is not None:

        async def general(event: Any) -> None:
            await dispatch_one(event, publish=False)

        return general
    event_map = dispatcher.event_map
    bound = event_map.bound
    fast = dispatcher._handlers.fast
    sequential = dispatcher._dispatch_sequential
    plans: dict[type, tuple[int, Any, Callable[[], Any]]] = {}
    """payload type -> (the map's `_version` when planned, the lone bound
    target, the factory); a plan of an older version is stale (one integer
    check per event instead of a lookup of the binding by its tuple key)."""

    async def send(event: Any) -> None:
        if type(event) is NotificationEvent:
            payload_type = type(event.payload)
            plan = plans.get(payload_type)
            if plan is not None and plan[0] == event_map._version:
                make = plan[2]
                try:
                    handler = make()
                except Exception as error:
                    resolution_failed(plan[1], event, error)
                    raise
                try:
                    await handler.handle(event)
                finally:  # a failed call's events are dropped with it (singletons)
                    followups = take_list(handler) if handler._anycqrs_events else None
                if followups:
                    await sequential(followups, True)
                return
            version = event_map._version  # (before: the dispatch may bind)
            await dispatch_one(event, publish=False)
            targets = bound.get((NotificationEvent, payload_type), ())
            if len(targets) == 1:
                found = fast.get(targets[0])
                if found is not None:  # known once the general path compiled it
                    plans[payload_type] = (version, targets[0], found)
            return
        await dispatch_one(event, publish=False)

    return send
