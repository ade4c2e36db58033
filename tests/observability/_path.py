"""The path the observability tests drive: a Starlette request -> a command
-> the SQLite outbox -> the relay -> Kafka or RabbitMQ -> the consumer -> an
event handler -> a two-step saga (shared by the tracing and correlation
tests; `provider=None` runs it untraced)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import attrs
import httpx
import lagom
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse
from starlette.routing import Route

import anycqrs
import anycqrs.events.bootstrap
import anycqrs.requests.bootstrap
import anycqrs.saga as saga
import anycqrs.saga.bootstrap
from anycqrs.observability import CorrelationMiddleware, current_message
from anycqrs.outbox import OutboxRelay, SqliteOutbox, SqliteOutboxStore


@attrs.frozen
class PlaceOrder(anycqrs.Request[None]):
    order_id: int


@attrs.frozen
class OrderPlaced:
    order_id: int


@attrs.define
class Fulfil(saga.SagaContext):
    order_id: int
    done: list[str] = attrs.Factory(list)


class Seen:
    """What the handlers saw: `(where, current_message())`, and when the saga ended."""

    def __init__(self) -> None:
        self.contexts: list[tuple[str, Any]] = []
        self.finished = anyio.Event()


def build(
    tmp_path: Path, topic: str, provider: Any, seen: Seen, broker_factory: Callable[[], Any]
) -> dict[str, Any]:
    """The app, mediators, outbox and relay of one run."""
    db = str(tmp_path / "app.db")
    conn = sqlite3.connect(db, check_same_thread=False)
    outbox = SqliteOutbox(conn, tracer_provider=provider)

    class Place(anycqrs.RequestHandler[PlaceOrder, None]):
        async def handle(self, request: PlaceOrder) -> None:
            seen.contexts.append(("command", current_message()))
            event = anycqrs.NotificationEvent(payload=OrderPlaced(request.order_id), topic=topic)
            await outbox.run_in_transaction(outbox.add, event)

    class Reserve(saga.SagaStepHandler[Fulfil, str]):
        async def act(self, context: Fulfil) -> str:
            seen.contexts.append(("reserve", current_message()))
            context.done.append("reserve")
            return "reserved"

        async def compensate(self, context: Fulfil) -> None:
            context.done.append("unreserve")

    class Ship(saga.SagaStepHandler[Fulfil, str]):
        async def act(self, context: Fulfil) -> str:
            seen.contexts.append(("ship", current_message()))
            context.done.append("ship")
            return "shipped"

        async def compensate(self, context: Fulfil) -> None:
            context.done.append("unship")

    class FulfilSaga(saga.Saga[Fulfil]):
        steps = [Reserve, Ship]

    sagas = saga.SagaMap()
    sagas.bind(Fulfil, FulfilSaga)
    saga_mediator = anycqrs.saga.bootstrap.bootstrap(sagas_mapper=sagas, tracer_provider=provider)

    class OnPlaced(anycqrs.EventHandler[anycqrs.NotificationEvent[OrderPlaced]]):
        async def handle(self, event: anycqrs.NotificationEvent[OrderPlaced]) -> None:
            seen.contexts.append(("event", current_message()))
            await saga_mediator.run(Fulfil(event.payload.order_id))
            seen.finished.set()

    container = lagom.Container()
    events = anycqrs.EventMap()
    events.bind(anycqrs.NotificationEvent[OrderPlaced], OnPlaced)
    event_mediator = anycqrs.events.bootstrap.bootstrap(
        events_mapper=events, di_container=container, tracer_provider=provider
    )
    requests = anycqrs.RequestMap()
    requests.bind(PlaceOrder, Place)
    mediator = anycqrs.requests.bootstrap.bootstrap(
        commands_mapper=requests, tracer_provider=provider
    )
    server_tracer = provider.get_tracer("test.server") if provider is not None else None
    SERVER: Any = None
    if provider is not None:
        from opentelemetry.trace import SpanKind

        SERVER = SpanKind.SERVER

    async def place(request: HttpRequest) -> JSONResponse:
        order_id = int(request.path_params["order_id"])
        if server_tracer is None:
            await mediator.send(PlaceOrder(order_id))
        else:  # what an instrumented ASGI server does
            with server_tracer.start_as_current_span("POST /orders/{order_id}", kind=SERVER):
                await mediator.send(PlaceOrder(order_id))
        return JSONResponse({"placed": order_id})

    app = Starlette(
        routes=[Route("/orders/{order_id}", place, methods=["POST"])],
        middleware=[Middleware(CorrelationMiddleware)],
    )
    return {
        "app": app,
        "conn": conn,
        "relay": lambda broker: OutboxRelay(
            SqliteOutboxStore(db), broker, tracer_provider=provider
        ),
        "event_mediator": event_mediator,
        "saga_mediator": saga_mediator,
    }


async def post(app: Any, order_id: int, correlation_id: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.post(
            f"/orders/{order_id}", headers={"X-Correlation-ID": correlation_id}
        )
