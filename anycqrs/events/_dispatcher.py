from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio
import anyio.abc

from .._endpoint import Endpoints
from .._exc import BaseExceptionGroup, real_errors
from ..brokers import Message, MessageBroker
from ..brokers._message import publish_many
from ..container import Container
from ..errors import EventDispatchError
from ..messages import Event, NotificationEvent
from ..middlewares import MiddlewareChain
from ._map import EventMap


class EventDispatcher:
    """Runs the handlers bound to events, their follow-ups, and publishes
    notification events. Shared by every mediator.

    Sequential mode: breadth-first (all events of one generation, then their
    follow-ups), handlers in bind order, inline (no task is spawned), the
    notification events of a generation published as one batch after its
    handlers ran. The first failure stops the dispatch and propagates.

    Parallel mode: one task group for the whole dispatch, bounded by a
    `CapacityLimiter`; follow-ups join the same group; a failure cancels the
    siblings. `dispatch` returns once everything finished.

    Every handler runs through its `HandlerEndpoint` (the middlewares wrap
    each handler call, the handlers of a fallback included); the sequential
    loop inlines the endpoint's fast path.
    """

    __slots__ = (
        "_broker",
        "_chain",
        "_concurrent",
        "_container",
        "_handlers",
        "_limiter",
        "_map",
        "_max_concurrent",
    )

    def __init__(
        self,
        event_map: EventMap,
        container: Container,
        message_broker: MessageBroker,
        middlewares: MiddlewareChain,
        *,
        concurrent: bool,
        max_concurrent: int,
    ) -> None:
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent_event_handlers must be >= 1, got {max_concurrent}")
        self._map = event_map
        self._container = container
        self._broker = message_broker
        self._chain = middlewares
        self._concurrent = concurrent
        self._max_concurrent = max_concurrent
        self._limiter: anyio.CapacityLimiter | None = None
        self._handlers = Endpoints(container, middlewares)

    @property
    def event_map(self) -> EventMap:
        """The bindings this dispatcher follows."""
        return self._map

    @property
    def message_broker(self) -> MessageBroker:
        """Where notification events are published."""
        return self._broker

    @property
    def concurrent(self) -> bool:
        """Whether handlers run in parallel."""
        return self._concurrent

    @property
    def max_concurrent(self) -> int:
        """The bound of parallel dispatch."""
        return self._max_concurrent

    def with_container(self, container: Container) -> EventDispatcher:
        """The same dispatcher resolving handlers from `container`."""
        return EventDispatcher(
            self._map,
            container,
            self._broker,
            self._chain,
            concurrent=self._concurrent,
            max_concurrent=self._max_concurrent,
        )

    async def dispatch(self, events: Sequence[Event], *, publish: bool = True) -> None:
        """Handle `events` and everything they lead to.

        Args:
            events: the events to dispatch, in order.
            publish: whether notification events among `events` go to the
                broker (their follow-ups always do). `EventMediator.send`
                passes `False` so events consumed from a broker are not
                published back to it.

        Raises:
            Exception: the failing handler's (or broker's) exception, unchanged;
                `EventDispatchError` when parallel handlers failed together.
        """
        if self._concurrent:
            await self._dispatch_parallel(events, publish)
        else:
            await self._dispatch_sequential(events, publish)

    async def dispatch_one(self, event: Event, *, publish: bool = True) -> None:
        """`dispatch` for a single event, with a fast path for the common
        case of one plain handler (what `EventMediator.send` calls)."""
        if not self._concurrent and not (publish and isinstance(event, NotificationEvent)):
            targets = self._map.lookup(event)
            if len(targets) == 1:
                make = self._handlers.fast.get(targets[0])
                if make is not None:
                    handler = make()
                    await handler.handle(event)
                    produced = handler._anycqrs_events
                    if produced:
                        followups = tuple(produced)
                        produced.clear()
                        await self._dispatch_sequential(followups, True)
                    return
        await self.dispatch((event,), publish=publish)

    async def _dispatch_sequential(self, events: Sequence[Event], publish: bool) -> None:
        bound = self._map.bound
        fast = self._handlers.fast
        while events:
            followups: list[Event] | None = None
            notifications: list[Message] | None = None
            for event in events:
                kind = type(event)
                if kind is NotificationEvent:
                    targets = bound.get((kind, type(event.payload)), ())  # type: ignore[attr-defined]
                else:
                    targets = bound.get(kind, ())
                for target in targets:
                    make = fast.get(target)
                    if make is not None:  # the endpoint's fast path, inlined
                        handler = make()
                        await handler.handle(event)
                        produced = handler._anycqrs_events
                        if not produced:
                            continue
                        if followups is None:
                            followups = []
                        followups.extend(produced)
                        produced.clear()
                        continue
                    _, found = await self._handlers.binding(target)(event)
                    if found:
                        if followups is None:
                            followups = []
                        followups.extend(found)
                if publish and isinstance(event, NotificationEvent):
                    if notifications is None:
                        notifications = []
                    notifications.append(Message.from_event(event))
            if notifications:
                await publish_many(self._broker, notifications)
            if followups is None:
                return
            events = followups
            publish = True

    def _limiter_now(self) -> anyio.CapacityLimiter:
        limiter = self._limiter
        if limiter is None:
            limiter = self._limiter = anyio.CapacityLimiter(self._max_concurrent)
        return limiter

    async def _dispatch_parallel(self, events: Sequence[Event], publish: bool) -> None:
        jobs = [(target, event) for event in events for target in self._map.lookup(event)]
        notifications = [
            Message.from_event(event)
            for event in events
            if publish and isinstance(event, NotificationEvent)
        ]
        if not notifications and len(jobs) <= 1:  # nothing to run side by side: no task
            if jobs:
                target, event = jobs[0]
                produced = await self._limited(target, event)
                if produced:
                    await self._dispatch_parallel(produced, True)
            return
        try:
            async with anyio.create_task_group() as group:
                for target, event in jobs:
                    group.start_soon(self._run, group, target, event)
                if notifications:
                    group.start_soon(self._publish, notifications)
        except BaseExceptionGroup as failure:
            errors = real_errors(failure)
            if not errors:
                raise
            if len(errors) == 1:
                raise errors[0] from None
            raise EventDispatchError(None, errors) from failure

    async def _limited(self, target: Any, event: Event) -> Sequence[Event]:
        limiter = self._limiter_now()
        try:
            limiter.acquire_nowait()
        except anyio.WouldBlock:
            await limiter.acquire()
        try:
            produced: Sequence[Event]
            _, produced = await self._handlers.binding(target)(event)
            return produced
        finally:
            limiter.release()

    async def _publish(self, messages: list[Message]) -> None:
        async with self._limiter_now():
            await publish_many(self._broker, messages)

    async def _run(self, group: anyio.abc.TaskGroup, target: Any, event: Event) -> None:
        produced = await self._limited(target, event)
        if not produced:
            return
        notifications: list[Message] = []
        for follow in produced:
            for follow_target in self._map.lookup(follow):
                group.start_soon(self._run, group, follow_target, follow)
            if isinstance(follow, NotificationEvent):
                notifications.append(Message.from_event(follow))
        if notifications:
            group.start_soon(self._publish, notifications)

    async def dispatch_after(self, response: Any, events: Sequence[Event]) -> None:
        """Dispatch the events of a handler that returned `response`.

        Raises:
            EventDispatchError: carrying `response` and the cause(s).
        """
        try:
            if self._concurrent:
                await self._dispatch_parallel(events, True)
            else:
                await self._dispatch_sequential(events, True)
        except EventDispatchError as exc:
            raise EventDispatchError(response, exc.exceptions) from exc
        except Exception as exc:
            raise EventDispatchError(response, (exc,)) from exc
