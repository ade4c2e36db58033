"""Stream a request's results to an HTTP client as Server-Sent Events.

A Starlette app whose ``GET /orders/{order_id}/progress?steps=N`` streams the
progress of an order: a ``StreamingRequestHandler`` yields one
``OrderProgress`` per step (and emits an event for each, handled before the
step reaches the client); :class:`anycqrs.sse.SSEResponse` turns the stream
into ``text/event-stream`` frames.

Run it (uvicorn under asyncio, or hypercorn under trio)::

    python examples/streaming_sse.py --backend asyncio --port 8000
    python examples/streaming_sse.py --backend trio --port 8000
    curl -N http://127.0.0.1:8000/orders/7/progress?steps=3
"""

from __future__ import annotations

import argparse
import functools
import socket
from collections.abc import AsyncIterator
from typing import Any

import anyio
import attrs
import lagom
import sniffio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

import anycqrs
from anycqrs.requests import StreamingRequestHandler, StreamingRequestMediator
from anycqrs.requests.bootstrap import bootstrap_streaming
from anycqrs.sse import SSEResponse


@attrs.frozen
class OrderProgress(anycqrs.Response):
    order_id: int
    step: int
    status: str


@attrs.frozen
class TrackOrder(anycqrs.Request[OrderProgress]):
    order_id: int
    steps: int = 3


@attrs.frozen
class ProgressRecorded(anycqrs.DomainEvent):
    order_id: int
    step: int


class ProgressLog:
    """Where the event handler records progress (a singleton); create it in
    async code (it holds an ``anyio.Event``)."""

    def __init__(self) -> None:
        self.steps: list[tuple[int, int]] = []
        self.closed: list[int] = []
        self.stream_closed = anyio.Event()


class TrackOrderHandler(StreamingRequestHandler[TrackOrder, OrderProgress]):
    def __init__(self, log: ProgressLog) -> None:
        self.log = log

    async def handle(self, request: TrackOrder) -> AsyncIterator[OrderProgress]:
        try:
            for step in range(1, request.steps + 1):
                await anyio.sleep(0)  # a real handler would await work here
                self.emit(ProgressRecorded(order_id=request.order_id, step=step))
                status = "delivered" if step == request.steps else "in transit"
                yield OrderProgress(order_id=request.order_id, step=step, status=status)
        finally:
            self.log.closed.append(request.order_id)
            self.log.stream_closed.set()


class RecordProgress(anycqrs.EventHandler[ProgressRecorded]):
    def __init__(self, log: ProgressLog) -> None:
        self.log = log

    async def handle(self, event: ProgressRecorded) -> None:
        self.log.steps.append((event.order_id, event.step))


def create_mediator(log: ProgressLog | None = None) -> StreamingRequestMediator:
    container = lagom.Container()
    container[ProgressLog] = log if log is not None else ProgressLog()

    def queries(requests: anycqrs.RequestMap) -> None:
        requests.bind(TrackOrder, TrackOrderHandler)

    def events(events: anycqrs.EventMap) -> None:
        events.bind(ProgressRecorded, RecordProgress)

    return bootstrap_streaming(
        di_container=container, queries_mapper=queries, domain_events_mapper=events
    )


def create_app(mediator: StreamingRequestMediator | None = None) -> Starlette:
    """The Starlette app."""
    streaming = mediator if mediator is not None else create_mediator()

    async def progress(request: Request) -> SSEResponse:
        order_id = int(request.path_params["order_id"])
        steps = int(request.query_params.get("steps", "3"))
        return SSEResponse(
            streaming.stream(TrackOrder(order_id=order_id, steps=steps)),
            event_id=lambda item, _position: f"{item.order_id}-{item.step}",
        )

    return Starlette(routes=[Route("/orders/{order_id:int}/progress", progress)])


async def serve(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    shutdown: anyio.Event,
    task_status: anyio.abc.TaskStatus[str] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` until ``shutdown`` is set: uvicorn under asyncio,
    hypercorn under trio. Reports the base URL through ``task_status``."""
    if sniffio.current_async_library() == "trio":
        import hypercorn.config
        import hypercorn.trio

        config = hypercorn.config.Config()
        config.bind = [f"{host}:{port}"]
        config.accesslog = None
        async with anyio.create_task_group() as group:
            binds = await group.start(
                functools.partial(hypercorn.trio.serve, app, config, shutdown_trigger=shutdown.wait)
            )
            task_status.started(binds[0])
        return

    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning"))

    async def stop() -> None:
        await shutdown.wait()
        server.should_exit = True

    try:
        async with anyio.create_task_group() as group:
            group.start_soon(stop)
            task_status.started(f"http://{host}:{sock.getsockname()[1]}")
            await server.serve(sockets=[sock])
            group.cancel_scope.cancel()
    finally:
        sock.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()

    async def run() -> None:
        shutdown = anyio.Event()  # servers stop on SIGINT / SIGTERM themselves
        async with anyio.create_task_group() as group:
            url = await group.start(
                functools.partial(
                    serve, create_app(), host=args.host, port=args.port, shutdown=shutdown
                )
            )
            print(f"serving on {url}/orders/7/progress?steps=3")

    anyio.run(run, backend=args.backend)


if __name__ == "__main__":
    main()
