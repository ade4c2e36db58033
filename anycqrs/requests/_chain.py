"""Chain of responsibility: a list of handlers, the first that handles wins."""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic

from typing_extensions import TypeVar

from .._handlers import EventSource, declared_args
from .._routing import Resolve
from ..errors import BindingError
from ..messages import Event

__all__ = ["CORRequestHandler", "ChainRoute", "chain_route"]

ReqT = TypeVar("ReqT", contravariant=True)
ResT = TypeVar("ResT", default=Any)


class _Run:
    """The state of one pass through a chain: who ran, how to build the next."""

    __slots__ = ("ran", "resolve", "types")

    def __init__(self, types: tuple[type, ...], resolve: Resolve) -> None:
        self.types = types
        self.resolve = resolve
        self.ran: list[Any] = []


class CORRequestHandler(EventSource, abc.ABC, Generic[ReqT, ResT]):
    """A link of a chain of responsibility.

    Bind a list of them: ``requests.bind(Pay, [CardHandler, WalletHandler,
    InvoiceHandler])``. The mediator calls the first link; a link either
    returns a result (the chain stops: it handled the request) or passes the
    request on with ``return await self.next(request)``. ``next`` returns
    ``None`` past the last link, so an unhandled request yields ``None``.

    Each link is resolved from the container only when it is reached. The
    events of every link that actually ran are dispatched (in chain order)
    after the chain returns; none if a link raised.

    Example::

        class CardHandler(anycqrs.CORRequestHandler[Pay, Receipt]):
            async def handle(self, request: Pay) -> Receipt | None:
                if request.method != "card":
                    return await self.next(request)
                self.emit(PaidByCard(amount=request.amount))
                return Receipt(ok=True)
    """

    _anycqrs_run: _Run | None = None
    _anycqrs_index: int = 0

    @abc.abstractmethod
    async def handle(self, request: ReqT, /) -> ResT | None:
        """Handle ``request``, or ``return await self.next(request)``."""

    async def next(self, request: ReqT, /) -> ResT | None:
        """Pass ``request`` to the next link; ``None`` past the end of the chain."""
        run = self._anycqrs_run
        if run is None:
            return None
        index = self._anycqrs_index + 1
        types = run.types
        if index >= len(types):
            return None
        handler = await run.resolve(types[index])
        handler._anycqrs_run = run
        handler._anycqrs_index = index
        run.ran.append(handler)
        result: ResT | None = await handler.handle(request)
        return result


def _collect(ran: Sequence[Any]) -> Sequence[Event]:
    events: list[Event] = []
    for handler in ran:
        produced = handler.events
        if produced:
            events.extend(produced)
            if isinstance(produced, list):
                produced.clear()
    return events


class ChainRoute:
    """The route a list of :class:`CORRequestHandler` classes compiles to.

    Built by ``RequestMap.bind(Request, [A, B, C])``; you rarely need it
    directly.
    """

    __slots__ = ("_types",)

    def __init__(self, handler_types: Sequence[type]) -> None:
        self._types = tuple(handler_types)

    def __repr__(self) -> str:
        return "[" + ", ".join(t.__qualname__ for t in self._types) + "]"

    def handler_types(self) -> Sequence[type]:
        """The links, in order."""
        return self._types

    def validate(self, message_type: Any) -> None:
        """Every link must accept ``message_type`` (by its declared request type)."""
        for handler in self._types:
            declared = declared_args(handler, CORRequestHandler)
            if (
                declared
                and isinstance(declared[0], type)
                and isinstance(message_type, type)
                and not issubclass(message_type, declared[0])
            ):
                raise BindingError(
                    f"chain link {handler.__name__} handles {declared[0].__name__}, "
                    f"not {message_type.__name__}"
                )

    def build(self, resolve: Resolve) -> Callable[[Any], Awaitable[tuple[Any, Sequence[Event]]]]:
        """The endpoint: runs the chain, returns ``(response, events of the links that ran)``."""
        types = self._types
        first = types[0]

        async def endpoint(request: Any) -> tuple[Any, Sequence[Event]]:
            run = _Run(types, resolve)
            handler = await resolve(first)
            handler._anycqrs_run = run
            handler._anycqrs_index = 0
            ran = run.ran
            ran.append(handler)
            response = await handler.handle(request)
            if len(ran) == 1:
                events = handler.events
                if not events:
                    return response, ()
            return response, _collect(ran)

        return endpoint


def chain_route(handlers: Sequence[Any]) -> ChainRoute:
    """Compile a list of :class:`CORRequestHandler` classes into a route.

    Raises:
        BindingError: the list is empty, has duplicates, or holds something
            other than ``CORRequestHandler`` subclasses; or the links declare
            incompatible response types.
    """
    handlers = tuple(handlers)
    if not handlers:
        raise BindingError("a chain of responsibility needs at least one handler")
    for handler in handlers:
        if not (isinstance(handler, type) and issubclass(handler, CORRequestHandler)):
            raise BindingError(
                f"{getattr(handler, '__qualname__', handler)!r} is not a CORRequestHandler "
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
        names = ", ".join(sorted(r.__name__ for r in responses))
        raise BindingError(
            "the links of a chain must return one response type (or subclasses of one), "
            f"got {names}"
        )
    return ChainRoute(handlers)
