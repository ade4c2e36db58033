"""`CorrelationMiddleware`: one correlation scope per HTTP request (pure ASGI)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ._context import correlation_scope

__all__ = ["CorrelationMiddleware"]

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]


class CorrelationMiddleware:
    """An ASGI middleware that handles each HTTP (and websocket) request in
    a `correlation_scope`: its correlation id is the request's
    `X-Correlation-ID` header, else its `X-Request-ID`, else a new UUID, and
    it is echoed back in the response's `X-Correlation-ID` header. Commands
    sent while handling the request, and everything that follows from them,
    carry it. Runs under asyncio and trio (no framework dependency).

    Args:
        app: the ASGI application.
        headers: request headers read for the id, first match wins.
        response_header: the response header naming it (`None`: none).

    Example:
        ```python
        from starlette.applications import Starlette
        from starlette.middleware import Middleware

        app = Starlette(routes=[...], middleware=[Middleware(CorrelationMiddleware)])
        ```
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        headers: tuple[str, ...] = ("x-correlation-id", "x-request-id"),
        response_header: str | None = "x-correlation-id",
    ) -> None:
        self.app = app
        self._names = tuple(name.lower().encode("latin-1") for name in headers)
        self._response = response_header.lower().encode("latin-1") if response_header else None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope.get("type") not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        found: str | None = None
        given = dict(scope.get("headers") or ())
        for name in self._names:
            value = given.get(name)
            if value:
                found = bytes(value).decode("latin-1")
                break
        with correlation_scope(found) as context:
            response = self._response
            if response is None:
                await self.app(scope, receive, send)
                return
            echoed = (response, context.correlation_id.encode("latin-1"))

            async def send_with_id(message: MutableMapping[str, Any]) -> None:
                if message.get("type") == "http.response.start":
                    message["headers"] = [*message.get("headers", ()), echoed]
                await send(message)

            await self.app(scope, receive, send_with_id)
