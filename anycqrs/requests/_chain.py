"""Chain of responsibility: a list of handlers, the first that handles wins."""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import Any, Generic

from typing_extensions import TypeVar

from .._endpoint import Endpoints, resolution_failed
from .._handlers import EventSource, declared_args, take_events
from .._routing import RequestEndpoint, describe
from ..errors import BindingError
from ..messages import Event

__all__ = ["CORRequestHandler", "ChainRoute", "chain_route"]

ReqT = TypeVar("ReqT", contravariant=True)
ResT = TypeVar("ResT", default=Any)


class _Links:
    """A compiled chain: its handler types and how to build them."""

    __slots__ = ("factories", "resolve", "types")

    def __init__(
        self,
        types: tuple[type, ...],
        resolve: Endpoints,
        factories: tuple[Callable[[], Any], ...] | None,
    ) -> None:
        self.types = types
        self.resolve = resolve
        self.factories = factories


class CORRequestHandler(EventSource, abc.ABC, Generic[ReqT, ResT]):
    """A link of a chain of responsibility.

    Bind a list of them: `requests.bind(Pay, [CardHandler, WalletHandler,
    InvoiceHandler])`. The mediator calls the first link; a link either
    returns a result (the chain stops: it handled the request) or passes the
    request on with `return await self.next(request)`. `next` returns
    `None` past the last link, so an unhandled request yields `None`.

    Each link is resolved from the container only when it is reached. The
    events of every link that actually ran are dispatched (in chain order)
    after the chain returns; none if a link raised.

    Example:
        ```python
        class CardHandler(anycqrs.CORRequestHandler[Pay, Receipt]):
            async def handle(self, request: Pay) -> Receipt | None:
                if request.method != "card":
                    return await self.next(request)
                self.emit(PaidByCard(amount=request.amount))
                return Receipt(ok=True)
        ```
    """

    _anycqrs_links: _Links | None = None
    _anycqrs_index: int = 0
    _anycqrs_child: CORRequestHandler[Any, Any] | None = None

    @abc.abstractmethod
    async def handle(self, request: ReqT, /) -> ResT | None:
        """Handle `request`, or `return await self.next(request)`."""

    async def next(self, request: ReqT, /) -> ResT | None:
        """Pass `request` to the next link; `None` past the end of the chain."""
        links = self._anycqrs_links
        if links is None:
            return None
        index = self._anycqrs_index + 1
        if index >= len(links.types):
            return None
        factories = links.factories
        try:
            if factories is not None:
                handler = factories[index]()
            else:
                handler = await links.resolve(links.types[index])
        except Exception as error:
            resolution_failed(links.types[index], request, error)
            raise
        handler._anycqrs_links = links
        handler._anycqrs_index = index
        self._anycqrs_child = handler
        result: ResT | None = await handler.handle(request)
        return result


def _collect(first: CORRequestHandler[Any, Any]) -> Sequence[Event]:
    """The events of every link that ran, in chain order (each link left with none)."""
    events: list[Event] = []
    handler: CORRequestHandler[Any, Any] | None = first
    while handler is not None:
        events.extend(take_events(handler))
        handler = handler._anycqrs_child
    return events


class ChainRoute:
    """The route a list of `CORRequestHandler` classes compiles to.

    Built by `RequestMap.bind(Request, [A, B, C])`; you rarely need it
    directly.
    """

    __slots__ = ("_types",)

    streaming = False

    def __init__(self, handler_types: Sequence[type]) -> None:
        self._types = tuple(handler_types)

    def __repr__(self) -> str:
        return "[" + ", ".join(t.__qualname__ for t in self._types) + "]"

    def handler_types(self) -> Sequence[type]:
        """The links, in order."""
        return self._types

    def validate(self, message_type: Any) -> None:
        """Every link must accept `message_type` (by its declared request type)."""
        for handler in self._types:
            declared = declared_args(handler, CORRequestHandler)
            if (
                declared
                and isinstance(declared[0], type)
                and isinstance(message_type, type)
                and not issubclass(message_type, declared[0])
            ):
                raise BindingError(
                    f"chain link {handler.__qualname__} handles {declared[0].__qualname__}, "
                    f"not {message_type.__qualname__}"
                )

    def build(self, endpoints: Endpoints) -> RequestEndpoint:
        """The endpoint: runs the chain, returns `(response, events of the links that ran)`.

        Each link is built through `endpoints` when it is reached; with a
        scoped container, the whole chain runs in one scope."""
        types = self._types
        factories = tuple(endpoints.factory(t) for t in types) if endpoints.sync else None
        resolve = endpoints

        links = _Links(types, resolve, factories)
        first = factories[0] if factories is not None else None

        async def endpoint(request: Any) -> tuple[Any, Sequence[Event]]:
            try:
                handler = first() if first is not None else await resolve(types[0])
            except Exception as error:
                resolution_failed(types[0], request, error)
                raise
            handler._anycqrs_links = links
            try:
                response = await handler.handle(request)
            finally:  # a failed chain's events are dropped with it (singleton links)
                ran = handler._anycqrs_child is not None or handler.events
                events = _collect(handler) if ran else ()
            return response, events

        return endpoints.scoped(endpoint)  # a chain is one unit of work


def chain_route(handlers: Sequence[Any]) -> ChainRoute:
    """Compile a list of `CORRequestHandler` classes into a route.

    Raises:
        BindingError: the list is empty, has duplicates, or holds something
            other than `CORRequestHandler` subclasses; or the links declare
            incompatible response types.
    """
    handlers = tuple(handlers)
    if not handlers:
        raise BindingError("a chain of responsibility needs at least one handler")
    for handler in handlers:
        if not (isinstance(handler, type) and issubclass(handler, CORRequestHandler)):
            raise BindingError(
                f"{describe(handler)} is not a CORRequestHandler "
                "subclass; every link of a chain must be one"
            )
    if len(set(handlers)) != len(handlers):
        raise BindingError(
            "a chain of responsibility lists a handler twice: "
            + ", ".join(h.__qualname__ for h in handlers)
        )
    responses = {
        args[1]
        for h in handlers
        if len(args := declared_args(h, CORRequestHandler)) > 1 and isinstance(args[1], type)
    }
    if responses and not any(all(issubclass(r, top) for r in responses) for top in responses):
        names = ", ".join(sorted(r.__qualname__ for r in responses))
        raise BindingError(
            "the links of a chain must return one response type (or subclasses of one), "
            f"got {names}"
        )
    return ChainRoute(handlers)
