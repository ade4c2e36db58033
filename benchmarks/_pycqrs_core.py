"""python-cqrs 5.3 implementations of the core workloads, as close as the two
APIs allow to :mod:`benchmarks._anycqrs_core`: same messages (its default
dataclass models), same handler logic, its default ``di`` container through
its bootstraps, its default (and only) middleware ``LoggingMiddleware`` with
the ``cqrs`` logger at WARNING.

Imported only when python-cqrs is installed (the ``bench`` nox session).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import types
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Any

import cqrs
import di
import orjson
from cqrs.bootstrap import events as events_bootstrap
from cqrs.bootstrap import requests as requests_bootstrap

from ._harness import Op

logging.getLogger("cqrs").setLevel(logging.WARNING)


class UserCreated(cqrs.Response):
    user_id: int


class CreateUser(cqrs.Request[UserCreated]):
    user_id: int
    name: str


class CreateUserOneEvent(cqrs.Request[UserCreated]):
    user_id: int
    name: str


class CreateUserTenEvents(cqrs.Request[UserCreated]):
    user_id: int
    name: str


class UserRegistered(cqrs.DomainEvent):
    user_id: int


class Ping(cqrs.DomainEvent):
    n: int


class TreeRoot(cqrs.DomainEvent):
    n: int


class TreeBranch(cqrs.DomainEvent):
    n: int


class TreeLeaf(cqrs.DomainEvent):
    n: int


class _Events:
    """The python-cqrs idiom: the handler keeps its own event list."""

    def __init__(self) -> None:
        self._events: list[cqrs.DomainEvent] = []

    @property
    def events(self) -> list[cqrs.DomainEvent]:
        return self._events


class CreateUserHandler(_Events, cqrs.RequestHandler[CreateUser, UserCreated]):
    async def handle(self, request: CreateUser) -> UserCreated:
        return UserCreated(user_id=request.user_id)


class CreateUserOneEventHandler(_Events, cqrs.RequestHandler[CreateUserOneEvent, UserCreated]):
    async def handle(self, request: CreateUserOneEvent) -> UserCreated:
        self._events.append(UserRegistered(user_id=request.user_id))
        return UserCreated(user_id=request.user_id)


class CreateUserTenEventsHandler(_Events, cqrs.RequestHandler[CreateUserTenEvents, UserCreated]):
    async def handle(self, request: CreateUserTenEvents) -> UserCreated:
        uid = request.user_id
        self._events.extend([UserRegistered(user_id=uid) for _ in range(10)])
        return UserCreated(user_id=uid)


class OnUserRegistered(cqrs.EventHandler[UserRegistered]):
    async def handle(self, event: UserRegistered) -> None:
        return None


def _ping_handler(index: int) -> type:
    async def handle(self: Any, event: Ping) -> None:
        return None

    return types.new_class(
        f"OnPing{index}", (cqrs.EventHandler[Ping],), exec_body=lambda ns: ns.update(handle=handle)
    )


PING_HANDLERS = tuple(_ping_handler(i) for i in range(5))


class OnTreeRoot(_Events, cqrs.EventHandler[TreeRoot]):
    async def handle(self, event: TreeRoot) -> None:
        self._events.extend([TreeBranch(n=i) for i in range(10)])


class OnTreeBranch(_Events, cqrs.EventHandler[TreeBranch]):
    async def handle(self, event: TreeBranch) -> None:
        self._events.extend([TreeLeaf(n=i) for i in range(5)])


class OnTreeLeaf(cqrs.EventHandler[TreeLeaf]):
    async def handle(self, event: TreeLeaf) -> None:
        return None


def _requests(*, parallel: bool) -> Any:
    def commands(mapper: Any) -> None:
        mapper.bind(CreateUser, CreateUserHandler)
        mapper.bind(CreateUserOneEvent, CreateUserOneEventHandler)
        mapper.bind(CreateUserTenEvents, CreateUserTenEventsHandler)

    def domain_events(mapper: Any) -> None:
        mapper.bind(UserRegistered, OnUserRegistered)

    return requests_bootstrap.bootstrap(
        di_container=di.Container(),
        commands_mapper=commands,
        domain_events_mapper=domain_events,
        concurrent_event_handle_enable=parallel,
        max_concurrent_event_handlers=10,
    )


def send(events: int, *, parallel: bool = False) -> Any:
    request_type = {0: CreateUser, 1: CreateUserOneEvent, 10: CreateUserTenEvents}[events]

    @asynccontextmanager
    async def setup() -> AsyncIterator[Op]:
        mediator = _requests(parallel=parallel)
        yield functools.partial(mediator.send, request_type(user_id=1, name="ann"))

    return setup


def event_mediator(handlers: int) -> Any:
    @asynccontextmanager
    async def setup() -> AsyncIterator[Op]:
        def bind(mapper: Any) -> None:
            for handler in PING_HANDLERS[:handlers]:
                mapper.bind(Ping, handler)

        mediator = events_bootstrap.bootstrap(di_container=di.Container(), events_mapper=bind)
        yield functools.partial(mediator.send, Ping(n=1))

    return setup


def fanout_tree() -> Any:
    @asynccontextmanager
    async def setup() -> AsyncIterator[Op]:
        def bind(mapper: Any) -> None:
            mapper.bind(TreeRoot, OnTreeRoot)
            mapper.bind(TreeBranch, OnTreeBranch)
            mapper.bind(TreeLeaf, OnTreeLeaf)

        mediator = events_bootstrap.bootstrap(di_container=di.Container(), events_mapper=bind)
        yield functools.partial(mediator.send, TreeRoot(n=1))

    return setup


# --- serialization --------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Address:
    street: str
    city: str
    zip_code: str


@dataclasses.dataclass(frozen=True)
class OrderLine:
    sku: str
    quantity: int
    price_cents: int


@dataclasses.dataclass(frozen=True)
class OrderPlaced:
    order_id: uuid.UUID
    customer: str
    placed_at: datetime
    address: Address
    lines: list[OrderLine]
    tags: dict[str, str]


class OrderPlacedEvent(cqrs.NotificationEvent[OrderPlaced]):
    payload: OrderPlaced


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
    """``OrderPlacedEvent.from_dict(**event.to_dict())``; the JSON variant is
    python-cqrs's own ``JsonEventSerializer`` (orjson)."""

    @asynccontextmanager
    async def setup() -> AsyncIterator[Op]:
        event = OrderPlacedEvent(event_name="OrderPlaced", payload=sample_order(), topic="orders")
        if json:
            codec = cqrs.JsonEventSerializer()

            def op() -> None:
                back = codec.deserialize(codec.serialize(event), OrderPlacedEvent)
                assert back.payload.lines[2].sku == "SKU-2"

        else:

            def op() -> None:
                back = OrderPlacedEvent.from_dict(**event.to_dict())
                assert back.payload.lines[2].sku == "SKU-2"

        yield op

    return setup


VERSION = getattr(cqrs, "__version__", None)
_ = orjson  # imported so a missing orjson fails at import, not mid-run
