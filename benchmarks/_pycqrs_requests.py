"""python-cqrs 5.3 implementations of the streaming and chain workloads."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import cqrs
import di
from cqrs.bootstrap import requests as requests_bootstrap
from cqrs.handlers.cor import CORRequestHandler

from ._harness import Op


class Row(cqrs.Response):
    n: int


class Export(cqrs.Request[Row]):
    count: int


class ExportWithEvents(cqrs.Request[Row]):
    count: int


class RowExported(cqrs.DomainEvent):
    n: int


class _StreamEvents:
    """python-cqrs's streaming idiom: an event list plus ``clear_events``."""

    def __init__(self) -> None:
        self._events: list[cqrs.DomainEvent] = []

    @property
    def events(self) -> list[cqrs.DomainEvent]:
        return self._events.copy()

    def clear_events(self) -> None:
        self._events.clear()


class ExportHandler(_StreamEvents, cqrs.StreamingRequestHandler[Export, Row]):
    async def handle(self, request: Export) -> AsyncIterator[Row]:  # type: ignore[override]
        for i in range(request.count):
            yield Row(n=i)


class ExportWithEventsHandler(_StreamEvents, cqrs.StreamingRequestHandler[ExportWithEvents, Row]):
    async def handle(self, request: ExportWithEvents) -> AsyncIterator[Row]:  # type: ignore[override]
        for i in range(request.count):
            self._events.append(RowExported(n=i))
            yield Row(n=i)


class OnRowExported(cqrs.EventHandler[RowExported]):
    async def handle(self, event: RowExported) -> None:
        return None


def stream(count: int = 100, *, events: bool) -> Any:
    @asynccontextmanager
    async def setup() -> AsyncIterator[Op]:
        def commands(mapper: Any) -> None:
            mapper.bind(Export, ExportHandler)
            mapper.bind(ExportWithEvents, ExportWithEventsHandler)

        def domain_events(mapper: Any) -> None:
            mapper.bind(RowExported, OnRowExported)

        mediator = requests_bootstrap.bootstrap_streaming(
            di_container=di.Container(),
            commands_mapper=commands,
            domain_events_mapper=domain_events,
        )
        request = (ExportWithEvents if events else Export)(count=count)

        async def op() -> None:
            async for _row in mediator.stream(request):
                pass

        yield op

    return setup


class Receipt(cqrs.Response):
    method: str


class Pay(cqrs.Request[Receipt]):
    method: str
    amount: int


def _link(method: str) -> type:
    class Link(CORRequestHandler[Pay, Receipt]):
        async def handle(self, request: Pay) -> Receipt | None:
            if request.method != method:
                return await self.next(request)
            return Receipt(method=method)

    Link.__name__ = Link.__qualname__ = f"{method.capitalize()}Handler"
    return Link


CHAIN = tuple(_link(m) for m in ("card", "wallet", "invoice", "voucher"))


def chain() -> Any:
    @asynccontextmanager
    async def setup() -> AsyncIterator[Op]:
        def commands(mapper: Any) -> None:
            mapper.bind(Pay, list(CHAIN))

        mediator = requests_bootstrap.bootstrap(
            di_container=di.Container(), commands_mapper=commands
        )
        request = Pay(method="invoice", amount=10)
        assert (await mediator.send(request)) == Receipt(method="invoice")
        yield functools.partial(mediator.send, request)

    return setup
