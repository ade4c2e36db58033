"""`HealthApp`: the health report as a plain ASGI application (no framework),
for Kubernetes probes."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ._health import Health

__all__ = ["HealthApp"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class HealthApp:
    """Serves `health.health()` as JSON: `GET /livez` answers 200 while every
    component is live, `GET /readyz` 200 while every one is ready, else 503;
    the body is `HealthReport.to_dict()` either way. Other paths are 404,
    other methods 405. It runs under any ASGI server (hypercorn, uvicorn),
    on asyncio and on trio, alone or mounted in your application.

    Args:
        health: the registry to ask.
        live_path: the liveness path.
        ready_path: the readiness path.

    Example:
        ```python
        app = HealthApp(Health([consumer, monitor]))
        # hypercorn: await hypercorn.trio.serve(app, config), or mount it
        # under /health in Starlette: Mount("/health", app=app)
        ```
    """

    __slots__ = ("_health", "_paths")

    def __init__(
        self, health: Health, *, live_path: str = "/livez", ready_path: str = "/readyz"
    ) -> None:
        self._health = health
        self._paths = {live_path: "live", ready_path: "ready"}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI entry point (http and lifespan scopes)."""
        kind = scope["type"]
        if kind == "lifespan":
            await _lifespan(receive, send)
            return
        if kind != "http":
            return
        path, root = scope["path"], scope.get("root_path", "")
        if root and path.startswith(root):  # mounted: the path still holds the mount point
            path = path[len(root) :]
        probe = self._paths.get(path)
        if probe is None:
            await _respond(send, 404, {"error": "not found", "paths": sorted(self._paths)})
            return
        if scope.get("method", "GET") not in ("GET", "HEAD"):
            await _respond(send, 405, {"error": "method not allowed"})
            return
        report = self._health.health()
        ok = report.live if probe == "live" else report.ready
        head = scope.get("method") == "HEAD"
        await _respond(send, 200 if ok else 503, report.to_dict(), head=head)


async def _respond(send: Send, status: int, body: Any, *, head: bool = False) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b"" if head else data})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
