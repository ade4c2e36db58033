"""PostgreSQL specifics: a connection lost in the middle of a guarded
handler's transaction, own connections and a pool alike."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import lagom
import pytest

import anycqrs
from anycqrs.events.bootstrap import bootstrap
from anycqrs.inbox import InboxTransaction, PostgresInbox

from .inbox_helpers import Paid, PostgresHarness, paid

pytestmark = pytest.mark.anyio

Event = anycqrs.NotificationEvent[Paid]


class Plan:
    def __init__(self, harness: PostgresHarness) -> None:
        self.harness = harness
        self.kill = True


class Killed(anycqrs.EventHandler[Event]):
    """Writes, then (once) has its own connection terminated."""

    def __init__(self, tx: InboxTransaction, plan: Plan) -> None:
        self.tx = tx
        self.plan = plan

    async def handle(self, event: Event) -> None:
        await self.tx.run(self.plan.harness.write, "Killed", event.payload.order_id)
        if self.plan.kill:
            self.plan.kill = False

            def terminate(connection: Any) -> None:
                connection.execute(b"SELECT pg_terminate_backend(pg_backend_pid())")

            await self.tx.run(terminate)


@pytest.fixture(params=["own", "pool"])
def pg(request: pytest.FixtureRequest, postgres_dsn: str, unique: str) -> Iterator[PostgresHarness]:
    harness = PostgresHarness(postgres_dsn, unique, pooled=request.param == "pool")
    try:
        yield harness
    finally:
        harness.close()


class TestConnectionLost:
    """The transaction dies with its connection; the retry starts afresh."""

    async def test_terminated_backend(self, pg: PostgresHarness) -> None:
        plan = Plan(pg)
        inbox = pg.store(max_transactions=2)
        assert isinstance(inbox, PostgresInbox)
        container = lagom.Container()
        container[Plan] = plan
        mediator = bootstrap(
            di_container=container,
            events_mapper=lambda events: events.bind(Event, Killed),
            inbox=inbox,
        )
        event = paid(1)
        import psycopg

        with pytest.raises(psycopg.OperationalError):
            await mediator.send(event)
        assert pg.effects() == []
        assert pg.inbox_rows() == 0
        await mediator.send(event)  # the retry: a new connection
        await mediator.send(event)  # then a duplicate
        assert pg.effects() == [("Killed", 1)]
        inbox.close()
