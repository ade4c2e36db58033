"""FastAPI recipe: a request-scoped mediator, one SQLite transaction per HTTP request.

    python examples/fastapi_app.py --database orders.sqlite3 [--backend trio]

Serve it with any ASGI server (`uvicorn examples.fastapi_app:app`,
`hypercorn ... --worker-class trio`); run as a script, it calls its own
endpoints in-process through httpx's ASGI transport and prints what happened.

The pieces:

* `Session`: one SQLite connection and transaction; every blocking call runs
  in a worker thread.
* `session()`: the unit of work, an async context manager that commits when
  the block succeeds and rolls back when it raises.
* `ScopedLagomContainer(..., scoped={Session: session})`: a container with a
  per-dispatch scope.
* `get_mediator`: the FastAPI dependency. It opens one scope for the HTTP
  request and yields a mediator resolving from it, so the command handler and
  the handlers of the events it emits share one `Session`; FastAPI throws the
  endpoint's exception into the dependency, so a failed request rolls back.
"""

from __future__ import annotations

import argparse
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
import anyio.to_thread
import attrs
import httpx
import lagom
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse

import anycqrs
from anycqrs.container import ScopedLagomContainer
from anycqrs.requests.bootstrap import bootstrap


class Database:
    """Where the SQLite file is (one per application, a lagom singleton)."""

    def __init__(self, path: str) -> None:
        self.path = path
        with contextlib.closing(sqlite3.connect(path)) as connection, connection:
            connection.execute("CREATE TABLE IF NOT EXISTS orders (item TEXT, quantity INTEGER)")
            connection.execute("CREATE TABLE IF NOT EXISTS audit (line TEXT)")


class Session:
    """One connection and its transaction (blocking calls in worker threads)."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    async def execute(self, sql: str, *parameters: Any) -> list[tuple[Any, ...]]:
        def run() -> list[tuple[Any, ...]]:
            return self.connection.execute(sql, parameters).fetchall()

        return await anyio.to_thread.run_sync(run)


@attrs.frozen
class PlaceOrder(anycqrs.Request):
    item: str
    quantity: int


@attrs.frozen
class OrderPlaced(anycqrs.DomainEvent):
    item: str
    quantity: int


@attrs.frozen
class ListOrders(anycqrs.Request):
    pass


class PlaceOrderHandler(anycqrs.RequestHandler[PlaceOrder, str]):
    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session

    async def handle(self, request: PlaceOrder) -> str:
        await self.session.execute(
            "INSERT INTO orders VALUES (?, ?)", request.item, request.quantity
        )
        if request.quantity <= 0:  # after the insert: the rollback must undo it
            raise ValueError(f"cannot order {request.quantity} x {request.item}")
        self.emit(OrderPlaced(request.item, request.quantity))
        return f"{request.quantity} x {request.item}"


class AuditOrderPlaced(anycqrs.EventHandler[OrderPlaced]):
    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session  # the same session as the command's: one transaction

    async def handle(self, event: OrderPlaced) -> None:
        await self.session.execute(
            "INSERT INTO audit VALUES (?)", f"placed {event.quantity} x {event.item}"
        )


class ListOrdersHandler(anycqrs.RequestHandler[ListOrders, list[str]]):
    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session

    async def handle(self, request: ListOrders) -> list[str]:
        rows = await self.session.execute("SELECT item, quantity FROM orders ORDER BY rowid")
        return [f"{quantity} x {item}" for item, quantity in rows]


async def get_mediator(request: Request) -> AsyncIterator[anycqrs.RequestMediator]:
    """The FastAPI dependency: one scope (one `Session`) for the whole HTTP
    request, and a mediator resolving every handler from it."""
    state = request.app.state
    async with state.scoped.scope() as resolver:
        yield state.mediator.with_container(resolver)


Mediator = Annotated[anycqrs.RequestMediator, Depends(get_mediator, scope="function")]
"""`scope="function"`: the transaction ends before the response is sent, so a
failed commit is an error response, not a 200 for a lost write."""


def create_app(database: Database) -> FastAPI:
    """The application: one container, one mediator, a scope per HTTP request."""
    container = lagom.Container()
    container[Database] = database

    @contextlib.asynccontextmanager
    async def session() -> AsyncIterator[Session]:
        connection = await anyio.to_thread.run_sync(
            lambda: sqlite3.connect(database.path, check_same_thread=False)
        )
        try:
            yield Session(connection)
        except BaseException:
            with anyio.CancelScope(shield=True):  # roll back even when cancelled
                await anyio.to_thread.run_sync(connection.rollback)
            raise
        else:
            await anyio.to_thread.run_sync(connection.commit)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(connection.close)

    scoped = ScopedLagomContainer(container, scoped={Session: session})

    def commands(requests: anycqrs.RequestMap) -> None:
        requests.bind(PlaceOrder, PlaceOrderHandler)
        requests.bind(ListOrders, ListOrdersHandler)

    def domain_events(events: anycqrs.EventMap) -> None:
        events.bind(OrderPlaced, AuditOrderPlaced)

    app = FastAPI()
    app.state.scoped = scoped
    app.state.mediator = bootstrap(
        di_container=scoped, commands_mapper=commands, domain_events_mapper=domain_events
    )

    @app.exception_handler(ValueError)
    async def refused(request: Request, error: ValueError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=422)

    @app.post("/orders")
    async def place_order(item: str, quantity: int, mediator: Mediator) -> dict[str, str]:
        return {"placed": await mediator.send(PlaceOrder(item, quantity))}

    @app.get("/orders")
    async def list_orders(mediator: Mediator) -> dict[str, list[str]]:
        return {"orders": await mediator.send(ListOrders())}

    return app


async def demo(path: str) -> None:
    database = Database(path)
    transport = httpx.ASGITransport(app=create_app(database))
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        placed = await client.post("/orders", params={"item": "tea", "quantity": 2})
        print(f"POST tea: {placed.status_code} {placed.json()}")
        refused = await client.post("/orders", params={"item": "cake", "quantity": 0})
        print(f"POST cake: {refused.status_code} {refused.json()}")
        listed = await client.get("/orders")
        print(f"GET: {listed.json()}")
    with contextlib.closing(sqlite3.connect(path)) as connection:
        audit = [line for (line,) in connection.execute("SELECT line FROM audit")]
    print(f"audit: {audit}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", required=True, help="the SQLite file")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    arguments = parser.parse_args()
    anyio.run(demo, arguments.database, backend=arguments.backend)


if __name__ == "__main__":
    main()
