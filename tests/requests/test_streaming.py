from __future__ import annotations

import contextlib
import gc
import sys
from collections.abc import AsyncIterator
from typing import Any

import anyio
import attrs
import lagom
import pytest

import anycqrs
from anycqrs.errors import BindingError, EventDispatchError, RequestHandlerDoesNotExist
from anycqrs.requests import (
    RequestStream,
    StreamingRequestHandler,
    StreamingRequestMediator,
)
from anycqrs.requests.bootstrap import bootstrap_streaming

pytestmark = pytest.mark.anyio


@attrs.frozen
class Row(anycqrs.Response):
    n: int


@attrs.frozen
class Export(anycqrs.Request[Row]):
    count: int
    fail_at: int | None = None


@attrs.frozen
class Exported(anycqrs.DomainEvent):
    n: int


@attrs.frozen
class Finished(anycqrs.DomainEvent):
    count: int


class Journal:
    def __init__(self) -> None:
        self.entries: list[str] = []
        self.gate = anyio.Event()


class ExportHandler(StreamingRequestHandler[Export, Row]):
    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    async def handle(self, request: Export) -> AsyncIterator[Row]:
        try:
            for n in range(request.count):
                if n == request.fail_at:
                    self.emit(Exported(n))  # never dispatched: the handler fails
                    raise ValueError(f"row {n} is broken")
                self.journal.entries.append(f"produce {n}")
                self.emit(Exported(n))
                yield Row(n)
            self.emit(Finished(request.count))
        finally:
            self.journal.entries.append("closed")


class OnExported(anycqrs.EventHandler[Exported]):
    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    async def handle(self, event: Exported) -> None:
        self.journal.entries.append(f"event {event.n}")


class OnFinished(anycqrs.EventHandler[Finished]):
    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    async def handle(self, event: Finished) -> None:
        self.journal.entries.append(f"finished {event.count}")


@attrs.frozen
class Slow(anycqrs.Request[Row]):
    pass


class SlowCleanupHandler(StreamingRequestHandler[Slow, Row]):
    """Its cleanup awaits (a checkpoint), so it can only finish in async context."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    async def handle(self, request: Slow) -> AsyncIterator[Row]:
        try:
            for n in range(10):
                yield Row(n)
        finally:
            self.journal.entries.append("cleanup started")
            await anyio.sleep(0)
            self.journal.entries.append("cleanup finished")


@attrs.frozen
class Blocked(anycqrs.Request[Row]):
    pass


class BlockedHandler(StreamingRequestHandler[Blocked, Row]):
    """Yields one row, then waits for the journal's gate forever."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    async def handle(self, request: Blocked) -> AsyncIterator[Row]:
        try:
            yield Row(0)
            await self.journal.gate.wait()
            yield Row(1)
        finally:
            self.journal.entries.append("closed")


def make(journal: Journal, **kwargs: Any) -> StreamingRequestMediator:
    container = lagom.Container()
    container[Journal] = journal

    def queries(requests: anycqrs.RequestMap) -> None:
        requests.bind(Export, ExportHandler)
        requests.bind(Slow, SlowCleanupHandler)
        requests.bind(Blocked, BlockedHandler)

    def events(events: anycqrs.EventMap) -> None:
        events.bind(Exported, OnExported)
        events.bind(Finished, OnFinished)

    return bootstrap_streaming(
        di_container=container, queries_mapper=queries, domain_events_mapper=events, **kwargs
    )


@pytest.mark.parametrize("concurrent", [False, True])
async def test_items_in_order_each_after_its_events(concurrent: bool) -> None:
    journal = Journal()
    mediator = make(journal, concurrent_event_handle_enable=concurrent)
    with anyio.fail_after(5):
        async for row in mediator.stream(Export(3)):
            journal.entries.append(f"consume {row.n}")
    assert journal.entries == [
        "produce 0",
        "event 0",
        "consume 0",
        "produce 1",
        "event 1",
        "consume 1",
        "produce 2",
        "event 2",
        "consume 2",
        "closed",
        "finished 3",
    ]


async def test_stream_is_an_async_iterator_and_context_manager() -> None:
    mediator = make(Journal())
    stream = mediator.stream(Export(2))
    assert isinstance(stream, RequestStream)
    assert isinstance(stream, AsyncIterator)
    async with stream as rows:
        assert [row async for row in rows] == [Row(0), Row(1)]
    # exhausted and closed: iterating again yields nothing, closing again is fine
    assert [row async for row in stream] == []
    await stream.aclose()


async def test_break_in_plain_async_for_closes_handler_at_once() -> None:
    journal = Journal()
    mediator = make(journal)
    async for row in mediator.stream(Export(5)):
        if row.n == 1:
            break
    # the handler's finally ran before the next statement, under both backends
    assert journal.entries[-1] == "closed"
    assert "produce 2" not in journal.entries


async def test_leaving_early_leaves_nothing_to_the_loops_finalizer() -> None:
    """The stream's relay is not hooked: dropped, it is closed on the spot
    (no finalizer call, so no task scheduled to close it later), and the
    loop's hooks are put back."""
    journal, seen = Journal(), []
    mediator = make(journal)
    loops = sys.get_asyncgen_hooks()

    def firstiter(agen: Any) -> None:
        seen.append(("firstiter", agen.__qualname__))

    def finalizer(agen: Any) -> None:
        seen.append(("finalizer", agen.__qualname__))

    sys.set_asyncgen_hooks(firstiter, finalizer)
    try:
        async for row in mediator.stream(Export(5)):
            if row.n == 1:
                break
        gc.collect()
        assert sys.get_asyncgen_hooks() == (firstiter, finalizer)
    finally:
        sys.set_asyncgen_hooks(*loops)
    assert journal.entries[-1] == "closed"
    assert seen == [("firstiter", "ExportHandler.handle")]  # the handler's own generator


async def test_exception_in_consumer_closes_handler() -> None:
    journal = Journal()
    mediator = make(journal)
    with pytest.raises(KeyError):
        async for row in mediator.stream(Export(5)):
            if row.n == 1:
                raise KeyError("consumer failed")
    assert journal.entries[-1] == "closed"


async def test_async_with_runs_cleanup_that_awaits() -> None:
    journal = Journal()
    mediator = make(journal)
    async with mediator.stream(Slow()) as rows:
        async for row in rows:
            if row.n == 2:
                break
    assert journal.entries == ["cleanup started", "cleanup finished"]


async def test_aclosing_works_too() -> None:
    journal = Journal()
    mediator = make(journal)
    async with contextlib.aclosing(mediator.stream(Slow())) as rows:
        async for _ in rows:
            break
    assert journal.entries == ["cleanup started", "cleanup finished"]


async def test_plain_break_with_awaiting_cleanup_warns() -> None:
    journal = Journal()
    mediator = make(journal)
    with pytest.warns(ResourceWarning, match="async with"):
        async for _ in mediator.stream(Slow()):
            break
        gc.collect()
    assert journal.entries == ["cleanup started"]


async def test_cancelled_consumer_closes_handler() -> None:
    journal = Journal()
    mediator = make(journal)
    delivered = []
    with anyio.fail_after(5):
        with anyio.CancelScope() as scope:
            async for row in mediator.stream(Export(5)):
                delivered.append(row.n)
                scope.cancel()
                await anyio.sleep_forever()
    assert scope.cancelled_caught
    assert delivered == [0]
    assert journal.entries[-1] == "closed"


async def test_timeout_while_handler_waits_closes_it() -> None:
    journal = Journal()
    mediator = make(journal)
    delivered = []
    with anyio.fail_after(5):
        with anyio.move_on_after(0.05) as scope:
            async with mediator.stream(Blocked()) as rows:
                async for row in rows:
                    delivered.append(row.n)
    assert scope.cancelled_caught
    assert delivered == [0]
    assert journal.entries == ["closed"]


async def test_timeout_while_consumer_waits_closes_handler() -> None:
    journal = Journal()
    mediator = make(journal)
    with anyio.fail_after(5):
        with anyio.move_on_after(0.05) as scope:
            async for _ in mediator.stream(Export(3)):
                await anyio.sleep_forever()
    assert scope.cancelled_caught
    assert journal.entries[-1] == "closed"


async def test_handler_error_after_delivered_items() -> None:
    journal = Journal()
    mediator = make(journal)
    delivered = []
    with pytest.raises(ValueError, match="row 2 is broken"):
        async for row in mediator.stream(Export(5, fail_at=2)):
            delivered.append(row.n)
    assert delivered == [0, 1]
    # the failing item's event was not dispatched, the generator was closed
    assert journal.entries[-2:] == ["event 1", "closed"]
    assert "event 2" not in journal.entries


class Boom(anycqrs.EventHandler[Exported]):
    async def handle(self, event: Exported) -> None:
        if event.n == 1:
            raise RuntimeError("event handler failed")


async def test_event_failure_carries_item_and_closes_stream() -> None:
    journal = Journal()
    container = lagom.Container()
    container[Journal] = journal
    requests = anycqrs.RequestMap()
    requests.bind(Export, ExportHandler)
    events = anycqrs.EventMap()
    events.bind(Exported, Boom)
    mediator = bootstrap_streaming(
        di_container=container, queries_mapper=requests, domain_events_mapper=events
    )
    delivered = []
    with pytest.raises(EventDispatchError) as caught:
        async for row in mediator.stream(Export(5)):
            delivered.append(row.n)
    assert delivered == [0]
    assert caught.value.response == Row(1)
    assert isinstance(caught.value.exceptions[0], RuntimeError)
    assert journal.entries[-1] == "closed"


async def test_trailing_event_failure() -> None:
    container = lagom.Container()
    container[Journal] = Journal()
    requests = anycqrs.RequestMap()
    requests.bind(Export, ExportHandler)
    events = anycqrs.EventMap()

    class FailOnFinish(anycqrs.EventHandler[Finished]):
        async def handle(self, event: Finished) -> None:
            raise RuntimeError("no")

    events.bind(Finished, FailOnFinish)
    mediator = bootstrap_streaming(
        di_container=container, queries_mapper=requests, domain_events_mapper=events
    )
    rows = []
    with pytest.raises(EventDispatchError) as caught:
        async for row in mediator.stream(Export(2)):
            rows.append(row)
    assert rows == [Row(0), Row(1)]
    assert caught.value.response is None


class Tag:
    def __init__(self, journal: Journal, name: str) -> None:
        self.journal = journal
        self.name = name

    async def __call__(self, message: Any, call_next: Any) -> Any:
        self.journal.entries.append(f"{self.name} sees {message.n}")
        result = await call_next(message)
        return Row(result.n * 10) if self.name == "inner" else result


async def test_middlewares_wrap_each_item() -> None:
    journal = Journal()
    mediator = make(journal, middlewares=[Tag(journal, "outer"), Tag(journal, "inner")])
    rows = [row.n async for row in mediator.stream(Export(2))]
    assert rows == [0, 10]
    assert journal.entries[:4] == ["produce 0", "event 0", "outer sees 0", "inner sees 0"]


class Reject:
    async def __call__(self, message: Any, call_next: Any) -> Any:
        if message.n == 1:
            raise PermissionError("row 1 is secret")
        return await call_next(message)


async def test_middleware_error_closes_stream() -> None:
    journal = Journal()
    mediator = make(journal, middlewares=[Reject()])
    delivered = []
    with pytest.raises(PermissionError):
        async for row in mediator.stream(Export(4)):
            delivered.append(row.n)
    assert delivered == [0]
    assert journal.entries[-1] == "closed"


async def test_unbound_request_raises_at_stream_call() -> None:
    mediator = make(Journal())

    @attrs.frozen
    class Unknown(anycqrs.Request[Row]):
        pass

    with pytest.raises(RequestHandlerDoesNotExist):
        mediator.stream(Unknown())


class NotStreaming(anycqrs.RequestHandler[Export, Row]):
    async def handle(self, request: Export) -> Row:
        return Row(0)


def test_non_streaming_binding_rejected() -> None:
    requests = anycqrs.RequestMap()
    requests.bind(Export, NotStreaming)
    with pytest.raises(BindingError, match="does not stream"):
        StreamingRequestMediator(requests)


def test_streaming_handler_for_other_request_rejected() -> None:
    requests = anycqrs.RequestMap()
    requests.bind(Slow, ExportHandler)
    with pytest.raises(BindingError, match="handles Export, not Slow"):
        StreamingRequestMediator(requests)


@attrs.frozen
class ExportAgain(Export):
    pass


async def test_plain_mediator_rejects_a_streaming_handler() -> None:
    requests = anycqrs.RequestMap()
    requests.bind(Export, ExportHandler)
    requests.bind(
        ExportAgain, anycqrs.StreamingRequestHandlerFallback(ExportHandler, ExportHandler)
    )
    mediator = anycqrs.RequestMediator(requests)
    for request in (Export(3), ExportAgain(3)):
        with pytest.raises(BindingError, match=r"streaming handler .*StreamingRequestMediator"):
            await mediator.send(request)


class DuckStreamer:
    """Not a StreamingRequestHandler subclass, but ``handle`` is an async generator."""

    events: tuple[anycqrs.Event, ...] = ()

    async def handle(self, request: Export) -> AsyncIterator[Row]:
        yield Row(7)


class AsyncContainer:
    """A container whose resolve really is asynchronous."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.resolved: list[type] = []

    async def resolve(self, type_: type) -> Any:
        await anyio.sleep(0)
        self.resolved.append(type_)
        if type_ is DuckStreamer:
            return DuckStreamer()
        return type_(self.journal)


async def test_async_container_and_duck_typed_handler() -> None:
    journal = Journal()
    container = AsyncContainer(journal)
    requests = anycqrs.RequestMap()
    requests.bind(Export, DuckStreamer)
    mediator = StreamingRequestMediator(requests, container=container)
    assert [row async for row in mediator.stream(Export(1))] == [Row(7)]
    assert container.resolved == [DuckStreamer]


async def test_with_container_resolves_from_the_new_container() -> None:
    journal = Journal()
    mediator = make(Journal())
    other = lagom.Container()
    other[Journal] = journal
    scoped = mediator.with_container(other)
    assert scoped.request_map is mediator.request_map
    assert [row.n async for row in scoped.stream(Export(1))] == [0]
    assert journal.entries[0] == "produce 0"
    assert scoped.message_broker is mediator.message_broker
    assert scoped.event_dispatcher is not mediator.event_dispatcher


class FailingResolve:
    async def resolve(self, type_: type) -> Any:
        raise LookupError("cannot build")


async def test_resolution_failure_ends_stream() -> None:
    requests = anycqrs.RequestMap()
    requests.bind(Export, ExportHandler)
    mediator = StreamingRequestMediator(requests, container=FailingResolve())
    stream = mediator.stream(Export(1))
    with pytest.raises(LookupError):
        await stream.__anext__()
    with pytest.raises(StopAsyncIteration):
        await stream.__anext__()


async def test_notification_events_reach_the_broker() -> None:
    @attrs.frozen
    class RowSent:
        n: int

    @attrs.frozen
    class Send(anycqrs.Request[Row]):
        pass

    class SendHandler(StreamingRequestHandler[Send, Row]):
        async def handle(self, request: Send) -> AsyncIterator[Row]:
            for n in range(2):
                self.emit(anycqrs.NotificationEvent(payload=RowSent(n), topic="rows"))
                yield Row(n)

    requests = anycqrs.RequestMap()
    requests.bind(Send, SendHandler)
    mediator = bootstrap_streaming(queries_mapper=requests)
    broker = mediator.message_broker
    seen = []
    async for row in mediator.stream(Send()):
        seen.append((row.n, len(broker.messages)))  # type: ignore[attr-defined]
    assert seen == [(0, 1), (1, 2)]


async def test_no_scope_leaks_into_the_consumer_under_parallel_dispatch() -> None:
    """Parallel dispatch uses a task group per item; the consumer's own
    cancel scope keeps working between items (no stack corruption)."""
    journal = Journal()
    mediator = make(journal, concurrent_event_handle_enable=True)
    with anyio.fail_after(5):
        async with mediator.stream(Export(3)) as rows:
            async for _row in rows:
                with anyio.CancelScope() as inner:
                    inner.cancel()
                    await anyio.sleep(1)
                assert inner.cancelled_caught
    assert journal.entries[-1] == "finished 3"


def test_bootstrap_streaming_mirrors_bootstrap() -> None:
    import inspect

    from anycqrs.requests.bootstrap import bootstrap

    plain = inspect.signature(bootstrap).parameters
    streaming = inspect.signature(bootstrap_streaming).parameters
    assert [(p.name, p.kind, p.default) for p in plain.values()] == [
        (p.name, p.kind, p.default) for p in streaming.values()
    ]
    assert isinstance(bootstrap_streaming(), StreamingRequestMediator)
