"""Middlewares: one chain type shared by every mediator.

A middleware is any object with `async def __call__(self, message, call_next)`.
It sees the message (a request, an event, a stream item or a saga step's
context, depending on the mediator), may do work before and after, and must
return what `await call_next(message)` returned (or its own replacement):

```python
class Timing:
    async def __call__(self, message, call_next):
        started = time.perf_counter()
        try:
            return await call_next(message)
        finally:
            print(type(message).__name__, time.perf_counter() - started)
```

The first middleware given is the outermost.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any, Protocol

__all__ = ["CallNext", "LoggingMiddleware", "Middleware", "MiddlewareChain"]

CallNext = Callable[[Any], Awaitable[Any]]
"""The rest of the chain: `await call_next(message)` runs it."""


class Middleware(Protocol):
    """Wraps the handling of one message."""

    async def __call__(self, message: Any, call_next: CallNext, /) -> Any:
        """Handle `message`, usually by awaiting `call_next(message)`."""
        ...


class MiddlewareChain:
    """An ordered, immutable list of middlewares (outermost first).

    `wrap` composes them around an endpoint once, so a dispatch costs one
    call per middleware and nothing else.
    """

    __slots__ = ("_middlewares",)

    def __init__(self, middlewares: Iterable[Middleware] = ()) -> None:
        self._middlewares: tuple[Middleware, ...] = tuple(middlewares)

    def __iter__(self) -> Iterator[Middleware]:
        return iter(self._middlewares)

    def __len__(self) -> int:
        return len(self._middlewares)

    def __repr__(self) -> str:
        return f"MiddlewareChain({list(self._middlewares)!r})"

    def wrap(self, endpoint: CallNext) -> CallNext:
        """Return `endpoint` wrapped by every middleware of the chain."""
        handle = endpoint
        for middleware in reversed(self._middlewares):
            handle = _link(middleware, handle)
        return handle


def _link(middleware: Middleware, call_next: CallNext) -> CallNext:
    def handle(message: Any) -> Awaitable[Any]:
        return middleware(message, call_next)

    return handle


class _Lazy:
    """Renders a message for a log record only if the record is emitted."""

    __slots__ = ("_value",)

    def __init__(self, value: Any) -> None:
        self._value = value

    def __str__(self) -> str:
        return repr(self._value)


class LoggingMiddleware:
    """Logs each message, its result and its duration.

    Nothing is formatted unless `logger` is enabled for `level`: with the
    level off, the middleware costs one `isEnabledFor` check.

    Args:
        logger: where to log (default: the `anycqrs` logger).
        level: the level of the records (default `DEBUG`).

    Example:
        ```python
        mediator = bootstrap(middlewares=[LoggingMiddleware(level=logging.INFO)], ...)
        ```
    """

    __slots__ = ("_level", "_logger")

    def __init__(self, logger: logging.Logger | None = None, level: int = logging.DEBUG) -> None:
        self._logger = logger if logger is not None else logging.getLogger("anycqrs")
        self._level = level

    async def __call__(self, message: Any, call_next: CallNext, /) -> Any:
        """Log `message`, run the chain, log the result (or the error)."""
        logger = self._logger
        if not logger.isEnabledFor(self._level):
            return await call_next(message)
        name = type(message).__qualname__
        logger.log(self._level, "handling %s %s", name, _Lazy(message))
        started = time.perf_counter()
        try:
            result = await call_next(message)
        except Exception as exc:
            logger.log(
                self._level,
                "%s failed after %.1f µs: %r",
                name,
                (time.perf_counter() - started) * 1e6,
                exc,
            )
            raise
        logger.log(
            self._level,
            "handled %s in %.1f µs -> %s",
            name,
            (time.perf_counter() - started) * 1e6,
            _Lazy(result),
        )
        return result
