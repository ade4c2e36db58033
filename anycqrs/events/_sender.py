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
    type and checked against the map's current binding (a later `bind`
    replaces it); every other event takes `dispatch_one`."""
    dispatch_one = dispatcher.dispatch_one
    if dispatcher.concurrent or dispatcher.guard is not None:

        async def general(event: Any) -> None:
            await dispatch_one(event, publish=False)

        return general
    bound = dispatcher.event_map.bound
    fast = dispatcher._handlers.fast
    sequential = dispatcher._dispatch_sequential
    plans: dict[type, tuple[Any, tuple[Any, ...], Callable[[], Any]]] = {}
    """payload type -> (routing key, the bound targets, the factory)."""

    async def send(event: Any) -> None:
        if type(event) is NotificationEvent:
            payload_type = type(event.payload)
            plan = plans.get(payload_type)
            if plan is not None and bound.get(plan[0]) is plan[1]:
                make = plan[2]
                try:
                    handler = make()
                except Exception as error:
                    resolution_failed(plan[1][0], event, error)
                    raise
                try:
                    await handler.handle(event)
                finally:  # a failed call's events are dropped with it (singletons)
                    followups = take_list(handler) if handler._anycqrs_events else None
                if followups:
                    await sequential(followups, True)
                return
            await dispatch_one(event, publish=False)
            key = (NotificationEvent, payload_type)
            targets = bound.get(key, ())
            if len(targets) == 1:
                found = fast.get(targets[0])
                if found is not None:  # known once the general path compiled it
                    plans[payload_type] = (key, targets, found)
            return
        await dispatch_one(event, publish=False)

    return send
