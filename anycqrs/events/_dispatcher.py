from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from contextvars import ContextVar
from typing import Any, Protocol, runtime_checkable

import anyio
import anyio.abc

from .._endpoint import Endpoints, resolution_failed, take_list
from .._exc import BaseExceptionGroup, real_errors
from ..brokers import Message, MessageBroker
from ..brokers._message import publish_many
from ..container import Container
from ..errors import EventDispatchError
from ..messages import Event, NotificationEvent
from ..middlewares import MiddlewareChain
from ._map import EventMap


class Slots:
    """The concurrency bound of a parallel dispatcher: `total` slots shared by
    every dispatch of a mediator and its `with_container` copies.

    It counts slots in plain attributes and parks a waiter on an `anyio.Event`
    made in the waiting task's own loop, so it belongs to no event loop: one
    mediator serves several `anyio.run` calls in a row, asyncio and trio
    alike (not two loops at the same time, in two threads). An
    `anyio.CapacityLimiter` is tied to the backend (and loop) that made it;
    keeping one per loop (a `RunVar`) costs ~1.5 us per look-up, more than
    the whole single-handler dispatch gains from skipping a task, while
    taking a free slot here costs ~0.1 us (`acquire_nowait` + `release` of a
    `CapacityLimiter`: ~0.9 us). Waiters are served first come, first served.
    """

    __slots__ = ("_used", "_waiters", "total")

    def __init__(self, total: int) -> None:
        self.total = total
        self._used = 0
        self._waiters: deque[anyio.Event] = deque()

    async def acquire(self) -> None:
        """Take a slot, waiting for one if all are taken (a checkpoint only
        when it waits)."""
        if self._used < self.total and not self._waiters:
            self._used += 1
            return
        handed = anyio.Event()
        self._waiters.append(handed)
        try:
            await handed.wait()
        except BaseException:
            if handed.is_set():  # handed a slot, then cancelled: pass it on
                self.release()
            else:
                self._waiters.remove(handed)
            raise
        # `release` handed its slot over: `_used` already counts it

    def release(self) -> None:
        """Give a slot back (to the first waiter, if any)."""
        if self._waiters:
            self._waiters.popleft().set()
        else:
            self._used -= 1


Run = Callable[[Any], Awaitable[tuple[Any, Sequence[Event]]]]


class Guard(Protocol):
    """What guards handler calls (an `anycqrs.inbox` store): `wrap` turns
    a binding's runner (``event -> (result, events)``) into the guarded one."""

    def wrap(self, target: Any, run: Run, /) -> Run:
        """The guarded runner of binding `target` (cached by the guard)."""
        ...


@runtime_checkable
class ChunkGuard(Protocol):
    """A guard that can run a consumer's lane chunk in one transaction
    (an `anycqrs.inbox` store; `chunk` returns `None` unless it batches)."""

    def chunk(self) -> AbstractAsyncContextManager[None] | None:
        """The async context of one lane chunk, or `None`."""
        ...


_HOLDING: ContextVar[Slots | None] = ContextVar("anycqrs_events_holding", default=None)
"""The `Slots` whose token the running handler holds (nested dispatch runs in it)."""


class EventDispatcher:
    """Runs the handlers bound to events, their follow-ups, and publishes
    notification events. Shared by every mediator.

    Sequential mode: breadth-first (all events of one generation, then their
    follow-ups), handlers in bind order, inline (no task is spawned), the
    notification events of a generation published as one batch after its
    handlers ran. The first failure stops the dispatch and propagates.

    Parallel mode: one task group for the whole dispatch, bounded by the
    mediator's `Slots` (`max_concurrent_event_handlers`); the dispatching task
    runs the queued handler calls until one waits, then one worker task per
    queued call runs them side by side (`_Jobs`); follow-ups join the same
    queue and group; a failure cancels the siblings. `dispatch` returns once
    everything finished. A dispatch started by a handler this dispatcher runs
    (a nested `send`) runs sequentially in that handler's slot: it takes no
    token, so nesting never deadlocks at the bound and the bound still holds.

    Every handler runs through its `HandlerEndpoint` (the middlewares wrap
    each handler call, the handlers of a fallback included); the sequential
    loop inlines the endpoint's fast path.
    """

    __slots__ = (
        "_broker",
        "_chain",
        "_chunks",
        "_concurrent",
        "_container",
        "_guard",
        "_handlers",
        "_map",
        "_slots",
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
        slots: Slots | None = None,
        guard: Guard | None = None,
        tracer: Any = None,
    ) -> None:
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent_event_handlers must be >= 1, got {max_concurrent}")
        self._map = event_map
        self._container = container
        self._broker = message_broker
        self._chain = middlewares
        self._concurrent = concurrent
        self._slots = slots if slots is not None else Slots(max_concurrent)
        self._handlers = Endpoints(container, middlewares, tracer)
        self._guard = guard
        self._chunks: Callable[[], AbstractAsyncContextManager[None] | None] | None = (
            guard.chunk if isinstance(guard, ChunkGuard) else None
        )
        """The guard's `chunk` when it can batch (a protocol check costs ~10 us:
        done once, not per lane chunk)."""

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

    def chunk(self) -> AbstractAsyncContextManager[None] | None:
        """The guard's context of one consumer lane chunk, or `None`."""
        chunks = self._chunks
        return None if chunks is None else chunks()

    @property
    def guard(self) -> Guard | None:
        """What guards each handler call (the inbox), if anything."""
        return self._guard

    def _binding(self, target: Any) -> Run:
        """What runs `target`: its endpoint, guarded when a guard is set."""
        run: Run = self._handlers.binding(target)
        guard = self._guard
        return run if guard is None else guard.wrap(target, run)

    @property
    def max_concurrent(self) -> int:
        """The bound of parallel dispatch."""
        return self._slots.total

    def with_container(self, container: Container) -> EventDispatcher:
        """The same dispatcher resolving handlers from `container` (it shares
        this one's concurrency bound)."""
        return EventDispatcher(
            self._map,
            container,
            self._broker,
            self._chain,
            concurrent=self._concurrent,
            max_concurrent=self._slots.total,
            slots=self._slots,
            guard=self._guard,
            tracer=self._handlers.tracer,
        )

    def _parallel(self) -> bool:
        """Whether this dispatch runs in parallel: parallel mode, and not
        nested in a handler holding one of this dispatcher's tokens."""
        return self._concurrent and _HOLDING.get() is not self._slots

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
        if self._parallel():
            await self._dispatch_parallel(events, publish)
        else:
            await self._dispatch_sequential(events, publish)

    async def dispatch_one(self, event: Event, *, publish: bool = True) -> None:
        """`dispatch` for a single event, with a fast path for the common
        case of one plain handler (what `EventMediator.send` calls)."""
        if not (
            (self._concurrent and _HOLDING.get() is not self._slots)  # self._parallel(), inlined
            or (publish and isinstance(event, NotificationEvent))
            or self._guard is not None
        ):
            targets = self._map.lookup(event)
            if len(targets) == 1:
                make = self._handlers.fast.get(targets[0])
                if make is not None:
                    try:
                        handler = make()
                    except Exception as error:
                        resolution_failed(targets[0], event, error)
                        raise
                    try:
                        await handler.handle(event)
                    finally:  # a failed call's events are dropped with it (singletons)
                        followups = take_list(handler) if handler._anycqrs_events else None
                    if followups:
                        await self._dispatch_sequential(followups, True)
                    return
        await self.dispatch((event,), publish=publish)

    async def _dispatch_sequential(self, events: Sequence[Event], publish: bool) -> None:
        bound = self._map.bound
        fast = self._handlers.fast if self._guard is None else {}
        while events:
            followups: list[Event] | None = None
            notifications: list[Message] | None = None
            # the targets of a run of events of one type are looked up once
            # (a generation of a fan-out is mostly of one type); a
            # notification's targets depend on its payload: looked up each time
            last: type | None = None
            targets: Sequence[Any] = ()
            notify = False
            for event in events:
                kind = type(event)
                if kind is not last or kind is NotificationEvent:
                    if kind is NotificationEvent:
                        targets = bound.get((kind, type(event.payload)), ())  # type: ignore[attr-defined]
                    else:
                        targets = bound.get(kind, ())
                    last = kind
                    notify = publish and issubclass(kind, NotificationEvent)
                for target in targets:
                    make = fast.get(target)
                    if make is not None:  # the endpoint's fast path, inlined
                        try:
                            handler = make()
                        except Exception as error:
                            resolution_failed(target, event, error)
                            raise
                        try:
                            await handler.handle(event)
                        except BaseException:  # a failed call's events are dropped with it
                            if handler._anycqrs_events:
                                handler._anycqrs_events.clear()
                            raise
                        produced = handler._anycqrs_events
                        if not produced:
                            continue
                        # the handler's own list is taken, not copied (it
                        # starts a new one on its next `emit`)
                        handler._anycqrs_events = None
                        if followups is None:
                            followups = produced
                        else:
                            followups.extend(produced)
                        continue
                    _, found = await self._binding(target)(event)
                    if found:
                        if followups is None:
                            followups = []
                        followups.extend(found)
                if notify:
                    if notifications is None:
                        notifications = []
                    notifications.append(Message.from_event(event))  # type: ignore[arg-type]
            if notifications:
                await publish_many(self._broker, notifications)
            if followups is None:
                return
            events = followups
            publish = True

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
                if notifications:
                    group.start_soon(self._publish, notifications)
                await _Jobs(self, group, deque(jobs)).drain()
        except BaseExceptionGroup as failure:
            errors = real_errors(failure)
            if not errors:
                raise
            if len(errors) == 1:
                error = errors[0]
                raise error from error.__cause__  # itself, its own cause kept
            raise EventDispatchError(None, errors, after_handler=False) from failure

    async def _limited(self, target: Any, event: Event) -> Sequence[Event]:
        slots = self._slots
        await slots.acquire()
        holding = _HOLDING.set(slots)  # a nested dispatch runs in this slot
        try:
            produced: Sequence[Event]
            _, produced = await self._binding(target)(event)
            return produced
        finally:
            _HOLDING.reset(holding)
            slots.release()

    async def _publish(self, messages: list[Message]) -> None:
        slots = self._slots
        await slots.acquire()
        try:
            await publish_many(self._broker, messages)
        finally:
            slots.release()

    async def dispatch_after(self, response: Any, events: Sequence[Event]) -> None:
        """Dispatch the events of a handler that returned `response`.

        Raises:
            EventDispatchError: carrying `response` and the cause(s).
        """
        try:
            if self._parallel():
                await self._dispatch_parallel(events, True)
            else:
                await self._dispatch_sequential(events, True)
        except EventDispatchError as exc:
            raise EventDispatchError(response, exc.exceptions) from exc
        except Exception as exc:
            raise EventDispatchError(response, (exc,)) from exc


class _Jobs:
    """The handler calls of one parallel dispatch, run by as few tasks as
    keep them side by side.

    The dispatching task takes the queued calls one after another (the first
    handler always runs in it). Whenever calls are queued, a spreader task is
    scheduled; it runs only once some task waits (a handler awaiting I/O, the
    group's exit) and then starts one worker per queued call, each taking
    calls until none is left. So handlers that wait run side by side, at
    most `max_concurrent` at once (every call takes a slot), while handlers
    that never wait cost no task of their own: with tasks they would have run
    one after another all the same, and an anyio task (its own cancel scope
    and wrapper coroutine) costs ten times a plain handler call. Follow-up
    events are queued the same way; their notification events are published
    by a task of their own.
    """

    __slots__ = ("_dispatcher", "_group", "_jobs", "_spreading")

    def __init__(
        self,
        dispatcher: EventDispatcher,
        group: anyio.abc.TaskGroup,
        jobs: deque[tuple[Any, Event]],
    ) -> None:
        self._dispatcher = dispatcher
        self._group = group
        self._jobs = jobs
        self._spreading = False
        self._schedule()

    def _schedule(self) -> None:
        if self._jobs and not self._spreading:
            self._spreading = True
            self._group.start_soon(self._spread)

    async def _spread(self) -> None:
        self._spreading = False
        for _ in range(len(self._jobs)):
            self._group.start_soon(self.drain)

    async def drain(self) -> None:
        """Run queued calls until none is left (in the dispatching task or a worker)."""
        jobs, limited = self._jobs, self._dispatcher._limited
        while jobs:
            target, event = jobs.popleft()
            produced = await limited(target, event)
            if produced:
                self._follow(produced)

    def _follow(self, produced: Sequence[Event]) -> None:
        dispatcher = self._dispatcher
        lookup, append = dispatcher._map.lookup, self._jobs.append
        notifications: list[Message] = []
        for follow in produced:
            for target in lookup(follow):
                append((target, follow))
            if isinstance(follow, NotificationEvent):
                notifications.append(Message.from_event(follow))
        if notifications:
            self._group.start_soon(dispatcher._publish, notifications)
        self._schedule()
