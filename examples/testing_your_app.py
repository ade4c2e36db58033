"""Testing an anycqrs application without a broker or a database server.

Run it with pytest (anyio's plugin runs each test under asyncio and trio):

    python -m pytest examples/testing_your_app.py -q

- A command's published events: bootstrap the mediator with an
  `InMemoryMessageBroker` and assert on `broker.messages`.
- A consumer's handling, retries and dead letters: feed `consume` from an
  `InMemoryTransport` (no Kafka or RabbitMQ) and assert on what it settled and
  dead-lettered.
- A saga: the default `MemorySagaStorage`, then the stored status and step log.
- Fakes go into the container (`container[PaymentGateway] = FakeGateway()`): the
  handlers are the real ones.
"""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import attrs
import lagom
import pytest

import anycqrs
from anycqrs.brokers import InMemoryMessageBroker
from anycqrs.consumers import InMemoryTransport, consume
from anycqrs.events.bootstrap import bootstrap as bootstrap_events
from anycqrs.requests.bootstrap import bootstrap
from anycqrs.saga import SagaStatus
from anycqrs.saga.bootstrap import bootstrap as bootstrap_sagas
from anycqrs.saga.storage import MemorySagaStorage

# -- the application under test -------------------------------------------------


@attrs.frozen
class OrderPaid:
    order_id: int
    amount_cents: int


@attrs.frozen
class Receipt(anycqrs.Response):
    order_id: int
    charge_id: str


@attrs.frozen
class PayOrder(anycqrs.Request[Receipt]):
    order_id: int
    amount_cents: int


class PaymentGateway:
    """The real one talks to a payment provider."""

    async def charge(self, amount_cents: int) -> str:
        raise NotImplementedError


class PayOrderHandler(anycqrs.RequestHandler[PayOrder, Receipt]):
    def __init__(self, gateway: PaymentGateway) -> None:
        self.gateway = gateway

    async def handle(self, request: PayOrder) -> Receipt:
        charge_id = await self.gateway.charge(request.amount_cents)
        paid = OrderPaid(request.order_id, request.amount_cents)
        self.emit(anycqrs.NotificationEvent(payload=paid, topic="orders", key=str(paid.order_id)))
        return Receipt(request.order_id, charge_id)


class Ledger:
    def __init__(self) -> None:
        self.booked: list[int] = []


class BookPayment(anycqrs.EventHandler[anycqrs.NotificationEvent[OrderPaid]]):
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    async def handle(self, event: anycqrs.NotificationEvent[OrderPaid]) -> None:
        if event.payload.amount_cents <= 0:
            raise ValueError(f"order {event.payload.order_id}: nothing to book")
        self.ledger.booked.append(event.payload.order_id)


@attrs.define
class Refund(anycqrs.SagaContext):
    order_id: int
    refunded: bool = False
    notified: bool = False


class RefundCard(anycqrs.SagaStepHandler[Refund, None]):
    async def act(self, context: Refund) -> None:
        context.refunded = True

    async def compensate(self, context: Refund) -> None:
        context.refunded = False


class NotifyCustomer(anycqrs.SagaStepHandler[Refund, None]):
    async def act(self, context: Refund) -> None:
        context.notified = True

    async def compensate(self, context: Refund) -> None:
        pass


class RefundSaga(anycqrs.Saga[Refund]):
    steps = [RefundCard, NotifyCustomer]  # noqa: RUF012 - read once, at class definition


# -- the tests -------------------------------------------------------------------


# --8<-- [start:fixtures]
class FakeGateway(PaymentGateway):
    def __init__(self) -> None:
        self.charged: list[int] = []

    async def charge(self, amount_cents: int) -> str:
        self.charged.append(amount_cents)
        return f"ch_{len(self.charged)}"


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def gateway() -> FakeGateway:
    return FakeGateway()


@pytest.fixture
def container(gateway: FakeGateway) -> Iterator[lagom.Container]:
    container = lagom.Container()
    container[PaymentGateway] = gateway
    container[Ledger] = Ledger()
    yield container


# --8<-- [end:fixtures]


# --8<-- [start:publish]
@pytest.mark.anyio
async def test_paying_publishes_order_paid(
    container: lagom.Container, gateway: FakeGateway
) -> None:
    broker = InMemoryMessageBroker()
    mediator = bootstrap(
        di_container=container,
        message_broker=broker,
        commands_mapper=lambda requests: requests.bind(PayOrder, PayOrderHandler),
    )

    receipt = await mediator.send(PayOrder(order_id=7, amount_cents=1200))

    assert receipt == Receipt(order_id=7, charge_id="ch_1")
    assert gateway.charged == [1200]
    [message] = broker.messages  # published before send() returned
    assert (message.message_name, message.topic, message.key) == ("OrderPaid", "orders", "7")
    assert message.payload["payload"] == {"order_id": 7, "amount_cents": 1200}


# --8<-- [end:publish]


# --8<-- [start:consume]
@pytest.mark.anyio
async def test_consumer_books_payments_and_dead_letters_bad_ones(
    container: lagom.Container,
) -> None:
    mediator = bootstrap_events(
        di_container=container,
        events_mapper=lambda events: events.bind(anycqrs.NotificationEvent[OrderPaid], BookPayment),
    )
    transport = InMemoryTransport()
    transport.put_event(anycqrs.NotificationEvent(payload=OrderPaid(1, 500), topic="orders"))
    transport.put_event(anycqrs.NotificationEvent(payload=OrderPaid(2, 0), topic="orders"))
    transport.put(b"not json", event_name="OrderPaid", topic="orders")  # poison
    transport.close()  # consume() returns once everything is settled
    delays: list[float] = []

    async def no_sleep(delay: float) -> None:  # retries without waiting
        delays.append(delay)

    with anyio.fail_after(10):
        await consume(mediator, transport, retry=anycqrs.RetryPolicy(attempts=3), sleep=no_sleep)

    assert container[Ledger].booked == [1]
    assert sorted(record.offset for record in transport.settled) == [0, 1, 2]
    dead = {letter.record.offset: letter for letter in transport.dead_letters}
    assert dead[1].attempts == 3 and isinstance(dead[1].error, ValueError)  # retried, then moved
    assert dead[2].attempts == 0  # poison: never retried
    assert len(delays) == 2  # the backoff before retries 2 and 3


# --8<-- [end:consume]


# --8<-- [start:saga]
@pytest.mark.anyio
async def test_refund_saga_completes_and_is_logged() -> None:
    storage = MemorySagaStorage()
    mediator = bootstrap_sagas(
        sagas_mapper=lambda sagas: sagas.bind(Refund, RefundSaga), saga_storage=storage
    )

    steps = [result async for result in mediator.stream(Refund(order_id=7))]

    assert [step.step_type for step in steps] == [RefundCard, NotifyCustomer]
    state = await storage.load_saga_state(steps[-1].saga_id)
    assert state.status is SagaStatus.COMPLETED
    assert state.context["refunded"] and state.context["notified"]


# --8<-- [end:saga]
