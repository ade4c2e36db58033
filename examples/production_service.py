"""A production-shaped order service: Starlette, PostgreSQL, Kafka, one lifespan.

- ``POST /orders`` writes the order row and its ``OrderPlaced`` event in one
  transaction: a connection borrowed from a ``psycopg_pool`` pool per request, an
  outbox writer on it, ``run_in_transaction`` returning the new order's id.
- The app's lifespan runs the outbox relay (PostgreSQL -> Kafka) and a Kafka
  consumer (``OrderPlaced`` -> an event handler) in one task group: they start
  before the first request and stop, gracefully, with the app.
- ``GET /orders/{id}/shipping`` runs the shipping saga (state in PostgreSQL) and
  streams each step to the client as a Server-Sent Event.
- Logs, anycqrs's and librdkafka's own (``anycqrs.brokers.kafka.librdkafka.*``), go
  through ``logging``; the application configures it, the library never does.

Serve it (uvicorn under asyncio, hypercorn under trio)::

    python examples/production_service.py --postgres postgresql://app@db/app \
        --kafka localhost:9092 --serve 8000 [--backend trio]

or run it once in-process against the same services (what the tests do)::

    python examples/production_service.py --postgres ... --kafka ... --self-test
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
import attrs
import httpx
import lagom
from confluent_kafka.admin import AdminClient, NewTopic
from psycopg_pool import ConnectionPool
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import anycqrs
from anycqrs.brokers.kafka import KafkaEventConsumer, KafkaMessageBroker
from anycqrs.events.bootstrap import bootstrap as bootstrap_events
from anycqrs.outbox import OutboxRelay, PostgresOutbox, PostgresOutboxStore
from anycqrs.saga import SagaMediator
from anycqrs.saga.bootstrap import bootstrap as bootstrap_sagas
from anycqrs.saga.storage import PostgresSagaStorage
from anycqrs.sse import SSEResponse

log = logging.getLogger("shop")


@attrs.frozen
class OrderPlaced:
    order_id: int
    customer: str


class Seen:
    """Orders the consumer has seen (the stand-in for a read model)."""

    def __init__(self) -> None:
        self.orders: dict[int, anyio.Event] = {}

    def event(self, order_id: int) -> anyio.Event:
        return self.orders.setdefault(order_id, anyio.Event())


class RecordOrderPlaced(anycqrs.EventHandler[anycqrs.NotificationEvent[OrderPlaced]]):
    def __init__(self, seen: Seen) -> None:
        self.seen = seen

    async def handle(self, event: anycqrs.NotificationEvent[OrderPlaced]) -> None:
        log.info("consumed OrderPlaced for order %d", event.payload.order_id)
        self.seen.event(event.payload.order_id).set()


@attrs.define
class Shipping(anycqrs.SagaContext):
    order_id: int
    parcel: str | None = None
    courier: str | None = None


class PackParcel(anycqrs.SagaStepHandler[Shipping, str]):
    async def act(self, context: Shipping) -> str:
        context.parcel = f"parcel-{context.order_id}"
        return context.parcel

    async def compensate(self, context: Shipping) -> None:
        context.parcel = None


class BookCourier(anycqrs.SagaStepHandler[Shipping, str]):
    async def act(self, context: Shipping) -> str:
        context.courier = f"courier-for-{context.parcel}"
        return context.courier

    async def compensate(self, context: Shipping) -> None:
        context.courier = None


class ShippingSaga(anycqrs.Saga[Shipping]):
    steps = [PackParcel, BookCourier]  # noqa: RUF012 - read once, at class definition


@attrs.frozen
class ShippingStep:
    """What the SSE stream sends per saga step."""

    order_id: int
    step: str
    result: str | None


class Service:
    """Everything the app holds: built in `lifespan`, used by the routes."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.prefix = args.prefix
        self.pool = ConnectionPool(args.postgres, min_size=1, max_size=10, open=False)
        self.seen = Seen()
        self.relay: OutboxRelay | None = None
        self.sagas: SagaMediator | None = None

    def outbox_table(self) -> str:
        return f"{self.prefix}_outbox"

    def setup_schema(self) -> None:  # blocking: run in a worker thread, once
        with self.pool.connection() as conn:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {self.prefix}_orders"
                " (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, customer TEXT NOT NULL)"
            )
        PostgresOutboxStore(pool=self.pool, table=self.outbox_table()).ensure_schema()

    def ensure_topic(self) -> None:  # blocking
        admin = AdminClient({"bootstrap.servers": self.args.kafka})
        if self.args.topic not in admin.list_topics(timeout=15).topics:
            for future in admin.create_topics([NewTopic(self.args.topic, 1)]).values():
                future.result(15)

    # --8<-- [start:place_order]
    async def place_order(self, customer: str) -> int:
        """The order row and its event in one transaction; returns the order's id."""
        conn = await anyio.to_thread.run_sync(self.pool.getconn)
        try:
            outbox = PostgresOutbox(conn, table=self.outbox_table(), create_schema=False)

            def insert() -> int:  # runs in the worker thread, inside the transaction
                row = conn.execute(
                    f"INSERT INTO {self.prefix}_orders (customer) VALUES (%s) RETURNING id",
                    (customer,),
                ).fetchone()
                assert row is not None
                order_id = int(row[0])
                outbox.add(
                    anycqrs.NotificationEvent(
                        payload=OrderPlaced(order_id, customer),
                        topic=self.args.topic,
                        key=str(order_id),
                    )
                )
                return order_id

            order_id = await outbox.run_in_transaction(insert)
        finally:
            with anyio.CancelScope(shield=True), anyio.fail_after(10):
                await anyio.to_thread.run_sync(self.pool.putconn, conn)
        if self.relay is not None:
            self.relay.wake()  # publish now rather than at the next poll
        return order_id

    # --8<-- [end:place_order]

    # --8<-- [start:shipping]
    async def shipping(self, order_id: int) -> AsyncIterator[ShippingStep]:
        assert self.sagas is not None
        # A client that disconnects stops the saga between two steps; it is persisted
        # after each one, so recovery (`recover_pending`) finishes it later.
        async for result in self.sagas.stream(Shipping(order_id=order_id)):
            yield ShippingStep(order_id, result.step_type.__name__, result.response)

    # --8<-- [end:shipping]


def kafka_config(args: argparse.Namespace, **extra: Any) -> dict[str, Any]:
    return {"bootstrap.servers": args.kafka, "log_level": 4, **extra}  # librdkafka: warnings


# --8<-- [start:lifespan]
@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    """Open the pool, then run the relay and the consumer for the app's life."""
    service: Service = app.state.service
    args = service.args
    with anyio.fail_after(60):
        await anyio.to_thread.run_sync(functools.partial(service.pool.open, wait=True))
    try:
        await anyio.to_thread.run_sync(service.setup_schema)
        await anyio.to_thread.run_sync(service.ensure_topic)
        container = lagom.Container()
        container[Seen] = service.seen
        service.sagas = bootstrap_sagas(
            di_container=container,
            sagas_mapper=lambda sagas: sagas.bind(Shipping, ShippingSaga),
            saga_storage=PostgresSagaStorage(
                pool=service.pool,
                sagas_table=f"{service.prefix}_sagas",
                log_table=f"{service.prefix}_saga_log",
            ),
        )
        events = bootstrap_events(
            di_container=container,
            events_mapper=lambda e: e.bind(
                anycqrs.NotificationEvent[OrderPlaced], RecordOrderPlaced
            ),
        )
        async with KafkaMessageBroker(kafka_config(args, **{"linger.ms": 5})) as broker:
            service.relay = OutboxRelay(
                PostgresOutboxStore(pool=service.pool, table=service.outbox_table()),
                broker,
                poll_interval=0.5,
            )
            consumer = KafkaEventConsumer(
                kafka_config(
                    args,
                    **{
                        "group.id": f"{args.topic}-shop",
                        "auto.offset.reset": "earliest",
                        "session.timeout.ms": 6000,
                        "heartbeat.interval.ms": 500,
                    },
                ),
                [args.topic],
                events,
            )
            async with anyio.create_task_group() as tg:
                await tg.start(service.relay.run)
                await tg.start(consumer.run)
                log.info("relay and consumer running")
                yield
                tg.cancel_scope.cancel()  # graceful: both finish what is in flight
    finally:
        with anyio.CancelScope(shield=True), anyio.fail_after(30):
            await anyio.to_thread.run_sync(service.pool.close)


# --8<-- [end:lifespan]


# --8<-- [start:routes]
async def post_order(request: Request) -> JSONResponse:
    body = await request.json()
    order_id = await request.app.state.service.place_order(str(body["customer"]))
    return JSONResponse({"order_id": order_id}, status_code=201)


async def get_shipping(request: Request) -> SSEResponse:
    service: Service = request.app.state.service
    return SSEResponse(service.shipping(int(request.path_params["order_id"])))


def make_app(args: argparse.Namespace) -> Starlette:
    app = Starlette(
        routes=[
            Route("/orders", post_order, methods=["POST"]),
            Route("/orders/{order_id:int}/shipping", get_shipping),
        ],
        lifespan=lifespan,
    )
    app.state.service = Service(args)
    return app


# --8<-- [end:routes]


async def self_test(args: argparse.Namespace) -> None:
    """Run the app in-process: place an order, wait for the consumer, stream the saga."""
    app = make_app(args)
    async with lifespan(app):  # what the ASGI server does around the requests
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://shop") as client:
            placed = await client.post("/orders", json={"customer": "ada"})
            order_id = placed.json()["order_id"]
            print(f"order {order_id} placed ({placed.status_code})")
            with anyio.fail_after(60):
                await app.state.service.seen.event(order_id).wait()
            print(f"order {order_id} consumed from Kafka")
            shipping = await client.get(f"/orders/{order_id}/shipping")
            for line in shipping.text.splitlines():
                if line.startswith("data: "):
                    print("shipping", line.removeprefix("data: "))
    print("done")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", required=True, help="libpq DSN")
    parser.add_argument("--kafka", required=True, help="bootstrap.servers")
    parser.add_argument("--topic", default="shop.orders")
    parser.add_argument("--prefix", default="shop", help="table name prefix")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--serve", type=int, metavar="PORT")
    mode.add_argument("--self-test", action="store_true")
    args = parser.parse_args()
    # --8<-- [start:logging]
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # --8<-- [end:logging]
    if args.self_test:
        anyio.run(self_test, args, backend=args.backend)
    elif args.backend == "trio":
        import hypercorn.config
        import hypercorn.trio

        config = hypercorn.config.Config()
        config.bind = [f"127.0.0.1:{args.serve}"]
        anyio.run(hypercorn.trio.serve, make_app(args), config, backend="trio")
    else:
        import uvicorn

        uvicorn.run(make_app(args), host="127.0.0.1", port=args.serve)


if __name__ == "__main__":
    main()
