"""anycqrs implementations of streaming and chain-of-responsibility workloads.

Imported lazily: if the streaming mediator or the chain is not there yet the
catalog reports these workloads as ``n/a``.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs

import anycqrs
from anycqrs import DomainEvent, EventHandler, LoggingMiddleware, Request, Response
from anycqrs.requests import CORRequestHandler, StreamingRequestHandler
from anycqrs.requests import bootstrap as requests_bootstrap

from ._harness import Op

# --- streaming ------------------------------------------------------------------


@attrs.frozen
class Row(Response):
    n: int


@attrs.frozen
class Export(Request[Row]):
    count: int


@attrs.frozen
class ExportWithEvents(Request[Row]):
    count: int


@attrs.frozen
class RowExported(DomainEvent):
    n: int


class ExportHandler(StreamingRequestHandler[Export, Row]):
    async def handle(self, request: Export) -> AsyncIterator[Row]:
        for i in range(request.count):
            yield Row(n=i)


class ExportWithEventsHandler(StreamingRequestHandler[ExportWithEvents, Row]):
    async def handle(self, request: ExportWithEvents) -> AsyncIterator[Row]:
        for i in range(request.count):
            self.emit(RowExported(n=i))
            yield Row(n=i)


class OnRowExported(EventHandler[RowExported]):
    async def handle(self, event: RowExported) -> None:
        return None


async def _rows(count: int) -> AsyncIterator[Row]:
    for i in range(count):
        yield Row(n=i)


def bare_rows(count: int = 100) -> Any:
    """Lower bound for streaming: ``async for`` over the same generator body."""

    @asynccontextmanager
    async def setup() -> AsyncIterator[Op]:
        async def op() -> None:
            async for _row in _rows(count):
                pass

        yield op

    return setup


def stream(count: int = 100, *, events: bool, middleware: bool = False) -> Any:
    """``async for`` over ``StreamingRequestMediator.stream`` of ``count``
    items (with one domain event per item and one handler, if ``events``).

    No middleware by default: python-cqrs 5.3's streaming dispatcher does not
    run its middleware chain, so that is the like-for-like comparison; with
    ``middleware`` a ``LoggingMiddleware`` wraps every item (anycqrs only)."""

    @asynccontextmanager
    async def setup() -> AsyncIterator[Op]:
        def commands(requests: anycqrs.RequestMap) -> None:
            requests.bind(Export, ExportHandler)
            requests.bind(ExportWithEvents, ExportWithEventsHandler)

        def domain_events(mapper: anycqrs.EventMap) -> None:
            mapper.bind(RowExported, OnRowExported)

        mediator = requests_bootstrap.bootstrap_streaming(
            commands_mapper=commands,
            domain_events_mapper=domain_events,
            middlewares=[LoggingMiddleware()] if middleware else [],
        )
        request = (ExportWithEvents if events else Export)(count=count)

        async def op() -> None:
            async for _row in mediator.stream(request):
                pass

        yield op

    return setup


# --- chain of responsibility ----------------------------------------------------


@attrs.frozen
class Receipt(Response):
    method: str


@attrs.frozen
class Pay(Request[Receipt]):
    method: str
    amount: int


def _link(method: str) -> type[CORRequestHandler[Pay, Receipt]]:
    class Link(CORRequestHandler[Pay, Receipt]):
        async def handle(self, request: Pay) -> Receipt | None:
            if request.method != method:
                return await self.next(request)
            return Receipt(method=method)

    Link.__name__ = Link.__qualname__ = f"{method.capitalize()}Handler"
    return Link


CHAIN = tuple(_link(m) for m in ("card", "wallet", "invoice", "voucher"))


def chain() -> Any:
    """A 4-link chain matched at link 3 (``invoice``), one middleware."""

    @asynccontextmanager
    async def setup() -> AsyncIterator[Op]:
        def commands(requests: anycqrs.RequestMap) -> None:
            requests.bind(Pay, list(CHAIN))

        mediator = requests_bootstrap.bootstrap(
            commands_mapper=commands, middlewares=[LoggingMiddleware()]
        )
        request = Pay(method="invoice", amount=10)
        assert (await mediator.send(request)) == Receipt(method="invoice")
        yield functools.partial(mediator.send, request)

    return setup
