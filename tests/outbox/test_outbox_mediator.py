"""The documented integration: a command handler writes its notification to the
outbox (instead of ``emit``) in the same transaction as its domain row."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import anyio
import attrs
import lagom
import pytest

from anycqrs import NotificationEvent, Request, RequestHandler, RequestMap, Response
from anycqrs.brokers import InMemoryMessageBroker
from anycqrs.outbox import OutboxRelay, SqliteOutbox, SqliteOutboxStore
from anycqrs.requests.bootstrap import bootstrap

pytestmark = pytest.mark.anyio


@attrs.frozen
class PlaceOrder(Request["OrderAccepted"]):
    order_id: int


@attrs.frozen
class OrderAccepted(Response):
    order_id: int


@attrs.frozen
class OrderPlaced:
    order_id: int


class Rejected(Exception):
    pass


class PlaceOrderHandler(RequestHandler[PlaceOrder, OrderAccepted]):
    def __init__(self, outbox: SqliteOutbox) -> None:
        self.outbox = outbox

    async def handle(self, request: PlaceOrder) -> OrderAccepted:
        def tx() -> None:
            self.outbox.connection.execute(
                "INSERT INTO orders (id) VALUES (?)", (request.order_id,)
            )
            self.outbox.add(
                NotificationEvent(payload=OrderPlaced(request.order_id), topic="orders")
            )
            if request.order_id < 0:
                raise Rejected(request.order_id)

        await self.outbox.run_in_transaction(tx)
        return OrderAccepted(order_id=request.order_id)


async def test_command_handler_writes_events_through_the_outbox(tmp_path: Path) -> None:
    path = tmp_path / "shop.db"
    connection = sqlite3.connect(path, check_same_thread=False)
    connection.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
    container = lagom.Container()
    container[SqliteOutbox] = SqliteOutbox(connection)
    live_broker = InMemoryMessageBroker()  # what the mediator would publish directly

    def commands(requests: RequestMap) -> None:
        requests.bind(PlaceOrder, PlaceOrderHandler)

    mediator = bootstrap(
        di_container=container, commands_mapper=commands, message_broker=live_broker
    )
    assert await mediator.send(PlaceOrder(order_id=1)) == OrderAccepted(order_id=1)
    with pytest.raises(Rejected):
        await mediator.send(PlaceOrder(order_id=-1))
    assert live_broker.messages == []  # nothing bypassed the outbox

    broker = InMemoryMessageBroker()
    with SqliteOutboxStore(path) as store:
        with anyio.fail_after(30):
            assert await OutboxRelay(store, broker).publish_pending() == 1
    assert [m.payload["payload"] for m in broker.messages] == [{"order_id": 1}]
    assert connection.execute("SELECT id FROM orders").fetchall() == [(1,)]
    connection.close()


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_sqlite_example_runs(backend: str) -> None:
    import subprocess
    import sys

    example = Path(__file__).parent.parent.parent / "examples" / "outbox_sqlite.py"
    result = subprocess.run(
        [sys.executable, str(example), backend],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "orders in the database: [1, 3]" in result.stdout
    assert "relay published 2 message(s):" in result.stdout
    assert "{'pending': 0, 'sent': 2, 'dead': 0}" in result.stdout
