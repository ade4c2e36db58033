from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .._handlers import declared_args
from .._routing import Route, describe
from ..errors import BindingError
from ..events._handler import EventHandler
from ._handler import RequestHandler


class RequestMap:
    """Which handler serves which request type: exactly one binding per type.

    A binding is a `RequestHandler` class, a list of `CORRequestHandler`
    classes (a chain of responsibility) or a `RequestHandlerFallback`.

    Example:
        ```python
        commands = RequestMap()
        commands.bind(CreateUser, CreateUserHandler)
        ```
    """

    __slots__ = ("_bindings",)

    def __init__(self) -> None:
        self._bindings: dict[type, Any] = {}

    def bind(self, request_type: type, handler: Any) -> None:
        """Bind `handler` to `request_type`.

        Raises:
            BindingError: `request_type` is already bound, or the handler
                can't serve it (wrong declared request type, not a handler).
        """
        if not isinstance(request_type, type):
            raise BindingError(f"{describe(request_type)} is not a request class")
        if request_type in self._bindings:
            raise BindingError(
                f"{request_type.__qualname__} is already bound to "
                f"{describe(self._bindings[request_type])}; a request has exactly one handler"
            )
        handler = as_route(handler)
        if isinstance(handler, Route):
            handler.validate(request_type)
        else:
            check_request_handler_class("", handler)
            check_request_handler(handler, request_type)
        self._bindings[request_type] = handler

    def get(self, request_type: type) -> Any:
        """The binding of `request_type`, or `None`."""
        return self._bindings.get(request_type)

    def items(self) -> Iterator[tuple[type, Any]]:
        """`(request_type, binding)` pairs in bind order."""
        return iter(self._bindings.items())

    def __contains__(self, request_type: object) -> bool:
        return request_type in self._bindings

    def __len__(self) -> int:
        return len(self._bindings)

    def __repr__(self) -> str:
        inner = ", ".join(f"{describe(k)}: {describe(v)}" for k, v in self._bindings.items())
        return f"RequestMap({{{inner}}})"


def as_route(handler: Any) -> Any:
    """A list (or tuple) of `CORRequestHandler` classes compiled into its
    chain route; anything else as is."""
    if isinstance(handler, (list, tuple)):
        from ._chain import chain_route

        return chain_route(handler)
    return handler


def check_request_handler_class(owner: str, handler: Any) -> None:
    """Raise `BindingError` unless `handler` is a request handler class (not
    an instance, not an event handler)."""
    if not (isinstance(handler, type) and callable(getattr(handler, "handle", None))):
        raise BindingError(
            f"{owner}{describe(handler)} is not a request handler: bind a RequestHandler "
            "subclass, a list of CORRequestHandler subclasses or a RequestHandlerFallback"
        )
    if issubclass(handler, EventHandler):
        raise BindingError(
            f"{owner}{handler.__qualname__} is an EventHandler, not a RequestHandler: "
            "bind it in an EventMap"
        )


def check_request_handler(handler: type, request_type: type, base: type = RequestHandler) -> None:
    """Raise `BindingError` if `handler` declares another request type."""
    declared = declared_args(handler, base)
    if declared and isinstance(declared[0], type) and not issubclass(request_type, declared[0]):
        raise BindingError(
            f"{handler.__qualname__} handles {declared[0].__qualname__}, "
            f"not {request_type.__qualname__}"
        )
