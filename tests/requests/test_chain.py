from __future__ import annotations

from typing import Any

import attrs
import lagom
import pytest

import anycqrs
from anycqrs._endpoint import Endpoints
from anycqrs._routing import Route
from anycqrs.container import as_container
from anycqrs.errors import BindingError
from anycqrs.requests import CORRequestHandler
from anycqrs.requests._chain import ChainRoute, chain_route
from anycqrs.requests.bootstrap import bootstrap

pytestmark = pytest.mark.anyio


@attrs.frozen
class Receipt(anycqrs.Response):
    by: str


@attrs.frozen
class CardReceipt(Receipt):
    pass


@attrs.frozen
class Pay(anycqrs.Request[Receipt]):
    method: str


@attrs.frozen
class Charged(anycqrs.DomainEvent):
    by: str


class Journal:
    def __init__(self) -> None:
        self.entries: list[str] = []


class Link(CORRequestHandler[Pay, Receipt]):
    method = ""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    async def handle(self, request: Pay) -> Receipt | None:
        name = type(self).__name__
        self.journal.entries.append(f"{name} ran")
        self.emit(Charged(f"{name} looked"))
        if request.method == "boom" and name == "Wallet":
            raise RuntimeError("wallet down")
        if request.method != self.method:
            return await self.next(request)
        return Receipt(name)


class Card(Link):
    method = "card"


class Wallet(Link):
    method = "wallet"


class Invoice(Link):
    method = "invoice"


class Cash(Link):
    method = "cash"


class OnCharged(anycqrs.EventHandler[Charged]):
    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    async def handle(self, event: Charged) -> None:
        self.journal.entries.append(f"event: {event.by}")


def make(journal: Journal, chain: list[type[Any]] | None = None) -> anycqrs.RequestMediator:
    container = lagom.Container()
    container[Journal] = journal
    requests = anycqrs.RequestMap()
    requests.bind(Pay, chain or [Card, Wallet, Invoice, Cash])
    events = anycqrs.EventMap()
    events.bind(Charged, OnCharged)
    return bootstrap(di_container=container, commands_mapper=requests, domain_events_mapper=events)


async def test_first_handler_that_handles_wins() -> None:
    journal = Journal()
    mediator = make(journal)
    assert await mediator.send(Pay("invoice")) == Receipt("Invoice")
    assert journal.entries == [
        "Card ran",
        "Wallet ran",
        "Invoice ran",
        # only the links that ran contributed events, in chain order
        "event: Card looked",
        "event: Wallet looked",
        "event: Invoice looked",
    ]


async def test_first_link_handles_alone() -> None:
    journal = Journal()
    mediator = make(journal)
    assert await mediator.send(Pay("card")) == Receipt("Card")
    assert journal.entries == ["Card ran", "event: Card looked"]


async def test_unhandled_request_gives_none() -> None:
    journal = Journal()
    mediator = make(journal)
    assert await mediator.send(Pay("bitcoin")) is None
    assert [e for e in journal.entries if e.endswith("ran")] == [
        "Card ran",
        "Wallet ran",
        "Invoice ran",
        "Cash ran",
    ]
    assert len([e for e in journal.entries if e.startswith("event")]) == 4


async def test_link_error_propagates_without_events() -> None:
    journal = Journal()
    mediator = make(journal)
    with pytest.raises(RuntimeError, match="wallet down"):
        await mediator.send(Pay("boom"))
    assert journal.entries == ["Card ran", "Wallet ran"]


class Quiet(CORRequestHandler[Pay, Receipt]):
    async def handle(self, request: Pay) -> Receipt | None:
        return await self.next(request)


class QuietEnd(CORRequestHandler[Pay, CardReceipt]):
    async def handle(self, request: Pay) -> CardReceipt | None:
        return CardReceipt("end")


async def test_links_without_events_and_subclass_responses() -> None:
    requests = anycqrs.RequestMap()
    requests.bind(Pay, [Quiet, QuietEnd])
    mediator = bootstrap(commands_mapper=requests)
    assert await mediator.send(Pay("x")) == CardReceipt("end")


async def test_single_link_chain_end() -> None:
    requests = anycqrs.RequestMap()
    requests.bind(Pay, [Quiet])
    mediator = bootstrap(commands_mapper=requests)
    assert await mediator.send(Pay("x")) is None


async def test_next_outside_a_chain_is_none() -> None:
    assert await Quiet().next(Pay("x")) is None


async def test_async_container_resolves_links_lazily() -> None:
    resolved: list[type] = []
    journal = Journal()

    class Async:
        async def resolve(self, type_: type) -> Any:
            resolved.append(type_)
            return type_(journal)

    requests = anycqrs.RequestMap()
    requests.bind(Pay, [Card, Wallet, Invoice])
    mediator = anycqrs.RequestMediator(requests, container=Async())
    assert await mediator.send(Pay("wallet")) == Receipt("Wallet")
    assert resolved == [Card, Wallet]


async def test_chain_route_is_a_route() -> None:
    route = chain_route([Card, Wallet])
    assert isinstance(route, ChainRoute)
    assert isinstance(route, Route)  # the protocol: streaming, handler_types, validate, build
    assert route.streaming is False
    assert list(route.handler_types()) == [Card, Wallet]
    assert repr(route) == "[Card, Wallet]"
    route.validate(Pay)
    with pytest.raises(BindingError, match="handles Pay, not Refund"):
        route.validate(Refund)
    journal = Journal()
    raw = lagom.Container()
    raw[Journal] = journal
    endpoint = route.build(Endpoints(as_container(raw)))
    response, events = await endpoint(Pay("wallet"))
    assert response == Receipt("Wallet")
    assert list(events) == [Charged("Card looked"), Charged("Wallet looked")]
    assert journal.entries == ["Card ran", "Wallet ran"]


@attrs.frozen
class Refund(anycqrs.Request[Receipt]):
    pass


class Other(CORRequestHandler[Refund, Receipt]):
    async def handle(self, request: Refund) -> Receipt | None:
        return None


class Unrelated(anycqrs.Response):
    pass


class WrongResponse(CORRequestHandler[Pay, Unrelated]):
    async def handle(self, request: Pay) -> Unrelated | None:
        return None


@pytest.mark.parametrize(
    ("chain", "match"),
    [
        ([], "at least one"),
        ([Card, Card], "twice"),
        ([Card, object], "not a CORRequestHandler"),
        ([Card, Other], "handles Refund, not Pay"),
        ([Card, WrongResponse], "one response type"),
    ],
)
def test_invalid_chains_rejected_at_bind(chain: list[Any], match: str) -> None:
    requests = anycqrs.RequestMap()
    with pytest.raises(BindingError, match=match):
        requests.bind(Pay, chain)
