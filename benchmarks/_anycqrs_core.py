"""anycqrs implementations of the core workloads (requests, events, serialization).

Handlers do the least real work possible (build a response, emit events) so
what is measured is the framework: resolution through lagom, one middleware
(``LoggingMiddleware`` with its level off, like python-cqrs's default logging
middleware with its logger at WARNING), dispatch, event handling.
"""

from __future__ import annotations

import functools
import types
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Any

import attrs

import anycqrs
from anycqrs import (
    DomainEvent,
    EventHandler,
    LoggingMiddleware,
    NotificationEvent,
    Request,
    RequestHandler,
    Response,
)
from anycqrs.events import bootstrap as events_bootstrap
from anycqrs.requests import bootstrap as requests_bootstrap

from ._harness import Op

# --- messages -------------------------------------------------------------------


@attrs.frozen
class UserCreated(Response):
    user_id: int


@attrs.frozen
class CreateUser(Request[UserCreated]):
    user_id: int
    name: str


@attrs.frozen
class CreateUserOneEvent(Request[UserCreated]):
    user_id: int
    name: str


@attrs.frozen
class CreateUserTenEvents(Request[UserCreated]):
    user_id: int
    name: str


@attrs.frozen
class UserRegistered(DomainEvent):
    user_id: int


@attrs.frozen
class Ping(DomainEvent):
    n: int


@attrs.frozen
class TreeRoot(DomainEvent):
    n: int


@attrs.frozen
class TreeBranch(DomainEvent):
    n: int


@attrs.frozen
class TreeLeaf(DomainEvent):
    n: int


# --- handlers -------------------------------------------------------------------


class CreateUserHandler(RequestHandler[CreateUser, UserCreated]):
    async def handle(self, request: CreateUser) -> UserCreated:
        return UserCreated(user_id=request.user_id)


class CreateUserOneEventHandler(RequestHandler[CreateUserOneEvent, UserCreated]):
    async def handle(self, request: CreateUserOneEvent) -> UserCreated:
        self.emit(UserRegistered(user_id=request.user_id))
        return UserCreated(user_id=request.user_id)


class CreateUserTenEventsHandler(RequestHandler[CreateUserTenEvents, UserCreated]):
    async def handle(self, request: CreateUserTenEvents) -> UserCreated:
        uid = request.user_id
        self.emit(*[UserRegistered(user_id=uid) for _ in range(10)])
        return UserCreated(user_id=uid)


class OnUserRegistered(EventHandler[UserRegistered]):
    async def handle(self, event: UserRegistered) -> None:
        return None


def _ping_handler(index: int) -> type[EventHandler[Ping]]:
    async def handle(self: Any, event: Ping) -> None:
        return None

    return types.new_class(
        f"OnPing{index}", (EventHandler[Ping],), exec_body=lambda ns: ns.update(handle=handle)
    )


PING_HANDLERS = tuple(_ping_handler(i) for i in range(5))


class OnTreeRoot(EventHandler[TreeRoot]):
    async def handle(self, event: TreeRoot) -> None:
        self.emit(*[TreeBranch(n=i) for i in range(10)])


class OnTreeBranch(EventHandler[TreeBranch]):
    async def handle(self, event: TreeBranch) -> None:
        self.emit(*[TreeLeaf(n=i) for i in range(5)])


class OnTreeLeaf(EventHandler[TreeLeaf]):
    async def handle(self, event: TreeLeaf) -> None:
        return None


# --- setups ---------------------------------------------------------------------


def _requests(events: int, *, parallel: bool) -> anycqrs.RequestMediator:
    def commands(requests: anycqrs.RequestMap) -> None:
        requests.bind(CreateUser, CreateUserHandler)
        requests.bind(CreateUserOneEvent, CreateUserOneEventHandler)
        requests.bind(CreateUserTenEvents, CreateUserTenEventsHandler)

    def domain_events(mapper: anycqrs.EventMap) -> None:
        mapper.bind(UserRegistered, OnUserRegistered)

    return requests_bootstrap.bootstrap(
        commands_mapper=commands,
        domain_events_mapper=domain_events,
        middlewares=[LoggingMiddleware()],
        concurrent_event_handle_enable=parallel,
        max_concurrent_event_handlers=10,
    )


def send(events: int, *, parallel: bool = False) -> Any:
    """``RequestMediator.send`` of a command whose handler emits ``events``
    domain events (0, 1 or 10), each with one handler."""
    request_type = {0: CreateUser, 1: CreateUserOneEvent, 10: CreateUserTenEvents}[events]

    @asynccontextmanager
    async def setup() -> AsyncIterator[Op]:
        mediator = _requests(events, parallel=parallel)
        yield functools.partial(mediator.send, request_type(user_id=1, name="ann"))

    return setup


def bare_handle() -> Any:
    """Lower bound: ``await handler.handle(request)`` on one handler instance."""

    @asynccontextmanager
    async def setup() -> AsyncIterator[Op]:
        handler = CreateUserHandler()
        yield functools.partial(handler.handle, CreateUser(user_id=1, name="ann"))

    return setup


async def _numbers(count: int) -> AsyncIterator[int]:
    for i in range(count):
        yield i


def bare_async_gen(count: int = 100) -> Any:
    """Lower bound: ``async for`` over an async generator of ``count`` items."""

    @asynccontextmanager
    async def setup() -> AsyncIterator[Op]:
        async def op() -> None:
            async for _item in _numbers(count):
                pass

        yield op

    return setup


def event_mediator(handlers: int) -> Any:
    """``EventMediator.send`` of a domain event with ``handlers`` handlers.

    No middleware: python-cqrs 5.3's ``EventMediator`` accepts a middleware
    chain but never runs it, so this is the like-for-like comparison."""

    @asynccontextmanager
    async def setup() -> AsyncIterator[Op]:
        def bind(mapper: anycqrs.EventMap) -> None:
            for handler in PING_HANDLERS[:handlers]:
                mapper.bind(Ping, handler)

        mediator = events_bootstrap.bootstrap(events_mapper=bind)
        yield functools.partial(mediator.send, Ping(n=1))

    return setup


def fanout_tree(*, parallel: bool = False) -> Any:
    """``EventMediator.send`` of a root event: 1 → 10 → 50 handlers ran
    (no middleware, like python-cqrs's ``EventMediator``)."""

    @asynccontextmanager
    async def setup() -> AsyncIterator[Op]:
        def bind(mapper: anycqrs.EventMap) -> None:
            mapper.bind(TreeRoot, OnTreeRoot)
            mapper.bind(TreeBranch, OnTreeBranch)
            mapper.bind(TreeLeaf, OnTreeLeaf)

        mediator = events_bootstrap.bootstrap(
            events_mapper=bind,
            concurrent_event_handle_enable=parallel,
            max_concurrent_event_handlers=10,
        )
        yield functools.partial(mediator.send, TreeRoot(n=1))

    return setup


# --- serialization --------------------------------------------------------------


@attrs.frozen
class Address:
    street: str
    city: str
    zip_code: str


@attrs.frozen
class OrderLine:
    sku: str
    quantity: int
    price_cents: int


@attrs.frozen
class OrderPlaced:
    order_id: uuid.UUID
    customer: str
    placed_at: datetime
    address: Address
    lines: list[OrderLine]
    tags: dict[str, str]


def sample_order() -> OrderPlaced:
    return OrderPlaced(
        order_id=uuid.UUID("12345678-1234-5678-1234-567812345678"),
        customer="ann",
        placed_at=datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc),
        address=Address(street="1 Main St", city="Springfield", zip_code="12345"),
        lines=[OrderLine(sku=f"SKU-{i}", quantity=i + 1, price_cents=999 * i) for i in range(3)],
        tags={"channel": "web", "promo": "spring"},
    )


def serialization_roundtrip(*, json: bool) -> Any:
    """``from_dict(to_dict(event))`` (or through JSON bytes) of a
    ``NotificationEvent[OrderPlaced]`` with nested attrs classes, a list, a
    dict, a UUID and an aware datetime."""
    from anycqrs.serialization import from_dict, from_json, to_dict, to_json

    event_type = NotificationEvent[OrderPlaced]

    @asynccontextmanager
    async def setup() -> AsyncIterator[Op]:
        event = NotificationEvent(payload=sample_order(), topic="orders", key="1")
        if json:

            def op() -> None:
                back = from_json(event_type, to_json(event))
                assert back.payload.lines[2].sku == "SKU-2"

        else:

            def op() -> None:
                back = from_dict(event_type, to_dict(event))
                assert back.payload.lines[2].sku == "SKU-2"

        yield op

    return setup
