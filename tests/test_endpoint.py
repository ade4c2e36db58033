"""The one handler endpoint: resolve → middlewares → handle → take events."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import lagom
import pytest

import anycqrs
from anycqrs._endpoint import Endpoints, HandlerEndpoint, take_list
from anycqrs.container import LagomContainer, as_container
from anycqrs.messages import Event
from anycqrs.middlewares import CallNext, MiddlewareChain

pytestmark = pytest.mark.anyio


@attrs.frozen
class Ping(anycqrs.Request[str]):
    text: str


@attrs.frozen
class Pinged(anycqrs.DomainEvent):
    text: str


class PingHandler(anycqrs.RequestHandler[Ping, str]):
    async def handle(self, request: Ping) -> str:
        self.emit(Pinged(text=request.text))
        return request.text.upper()


class Step:
    """A saga-step-like handler: `act` then, maybe, `compensate` on the same instance."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self._events: list[Event] = []

    @property
    def events(self) -> Sequence[Event]:
        return self._events

    async def act(self, context: list[str]) -> str:
        self.calls.append("act")
        self._events.append(Pinged(text="acted"))
        context.append("act")
        return "done"

    async def compensate(self, context: list[str]) -> None:
        self.calls.append("compensate")
        context.append("compensate")


class AsyncContainer:
    async def resolve(self, type_: type[Any]) -> Any:
        return type_()


class Recorder:
    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    async def __call__(self, message: Any, call_next: CallNext) -> Any:
        self.log.append(f"{self.name}>")
        result = await call_next(message)
        self.log.append(f"<{self.name}")
        return result


def containers() -> list[Any]:
    return [pytest.param(LagomContainer(), id="sync"), pytest.param(AsyncContainer(), id="async")]


class TestRun:
    """`run(message)`: one handler, its result, its events taken exactly once."""

    @pytest.mark.parametrize("container", containers())
    async def test_result_and_events_taken_once(self, container: Any) -> None:
        endpoints = Endpoints(as_container(container))
        endpoint = endpoints.get(PingHandler)
        result, events = await endpoint.run(Ping(text="hi"))
        assert result == "HI"
        assert events == (Pinged(text="hi"),)
        again, more = await endpoint.run(Ping(text="ho"))
        assert (again, more) == ("HO", (Pinged(text="ho"),))

    async def test_a_singleton_handler_gives_its_events_once(self) -> None:
        raw = lagom.Container()
        shared = PingHandler()
        raw[PingHandler] = shared
        endpoint = Endpoints(as_container(raw)).get(PingHandler)
        _, first = await endpoint.run(Ping(text="a"))
        _, second = await endpoint.run(Ping(text="b"))
        assert first == (Pinged(text="a"),)
        assert second == (Pinged(text="b"),)
        assert not shared.events

    async def test_take_clears_the_list(self) -> None:
        handler = PingHandler()
        await handler.handle(Ping(text="x"))
        assert take_list(handler) == (Pinged(text="x"),)
        assert take_list(handler) == ()
        assert HandlerEndpoint.take(handler) == ()


class TestSameInstance:
    """A saga step resolves one instance, acts through the chain, compensates it later."""

    @pytest.mark.parametrize("container", containers())
    async def test_act_then_compensate_on_the_same_instance(self, container: Any) -> None:
        log: list[str] = []
        chain = MiddlewareChain([Recorder("outer", log)])
        endpoints = Endpoints(as_container(container))
        act = endpoints.get(Step, method="act", middlewares=chain)
        compensate = endpoints.get(Step, method="compensate")
        handler = await act.resolve()
        context: list[str] = []
        assert await act.invoke(handler, context) == "done"
        assert act.take(handler) == (Pinged(text="acted"),)
        assert act.take(handler) == ()
        await compensate.invoke(handler, context)
        assert handler.calls == ["act", "compensate"]
        assert context == ["act", "compensate"]
        assert log == ["outer>", "<outer"]  # compensate ran without the chain

    async def test_resolve_gives_a_new_instance_each_time(self) -> None:
        endpoint = Endpoints(LagomContainer()).get(Step, method="act")
        assert await endpoint.resolve() is not await endpoint.resolve()


class TestFastPath:
    """The fast path applies only with a sync factory, no middleware and the standard list."""

    def test_sync_container_plain_handler(self) -> None:
        endpoint = Endpoints(LagomContainer()).get(PingHandler)
        assert endpoint.sync
        assert endpoint.fast is endpoint.make

    def test_async_container(self) -> None:
        endpoint = Endpoints(as_container(AsyncContainer())).get(PingHandler)
        assert not endpoint.sync
        assert endpoint.fast is None

    def test_middlewares(self) -> None:
        chain = MiddlewareChain([Recorder("m", [])])
        assert Endpoints(LagomContainer()).get(PingHandler, middlewares=chain).fast is None
        assert Endpoints(LagomContainer(), chain).get(PingHandler).fast is None

    def test_own_events_property(self) -> None:
        endpoint = Endpoints(LagomContainer()).get(Step, method="act")
        assert endpoint.fast is None
        assert not endpoint.standard
        assert Endpoints(LagomContainer()).get(PingHandler).standard

    def test_sync_resolve_containers_are_wrapped_as_factories(self) -> None:
        class SyncResolve:
            def resolve(self, type_: type[Any]) -> Any:
                return type_()

        endpoint = Endpoints(as_container(SyncResolve())).get(PingHandler)
        assert endpoint.fast is not None
        assert isinstance(endpoint.fast(), PingHandler)

    def test_one_cache(self) -> None:
        endpoints = Endpoints(LagomContainer())
        assert repr(endpoints.get(Step, method="act")) == "HandlerEndpoint(Step.act)"
        assert endpoints.get(PingHandler) is endpoints.get(PingHandler)
        assert endpoints.get(Step, method="act") is not endpoints.get(Step, method="compensate")
        act, compensate = (
            endpoints.get(Step, method="act"),
            endpoints.get(Step, method="compensate"),
        )
        assert act.make is compensate.make
        other = endpoints.with_container(LagomContainer())
        assert other.get(PingHandler) is not endpoints.get(PingHandler)

    def test_bindings_are_compiled_once_and_fast_ones_noted(self) -> None:
        from anycqrs.requests._chain import chain_route

        class Link(anycqrs.CORRequestHandler[Ping, str]):
            async def handle(self, request: Ping) -> str | None:
                return await self.next(request)

        endpoints = Endpoints(LagomContainer())
        assert endpoints.binding(PingHandler) is endpoints.get(PingHandler).run
        assert endpoints.fast == {PingHandler: endpoints.get(PingHandler).make}
        route = chain_route([Link])
        assert endpoints.binding(route) is endpoints.binding(route)
        assert route not in endpoints.fast
        endpoints.binding(Step)
        assert Step not in endpoints.fast  # its own events list: no fast path


class TestMiddlewares:
    """The chain wraps each handler call, outermost first, and may replace the result."""

    @pytest.mark.parametrize("container", containers())
    async def test_order(self, container: Any) -> None:
        log: list[str] = []

        class Upper:
            async def __call__(self, message: Any, call_next: CallNext) -> Any:
                log.append("upper>")
                return (await call_next(message)) + "!"

        chain = MiddlewareChain([Recorder("a", log), Recorder("b", log), Upper()])
        endpoint = Endpoints(as_container(container), chain).get(PingHandler)
        result, events = await endpoint.run(Ping(text="x"))
        assert result == "X!"
        assert events == (Pinged(text="x"),)
        assert log == ["a>", "b>", "upper>", "<b", "<a"]

    async def test_handler_error_drops_its_events(self) -> None:
        class Boom(anycqrs.RequestHandler[Ping, str]):
            async def handle(self, request: Ping) -> str:
                self.emit(Pinged(text="lost"))
                raise ValueError("boom")

        endpoint = Endpoints(LagomContainer()).get(Boom)
        with pytest.raises(ValueError, match="boom"):
            await endpoint.run(Ping(text="x"))
