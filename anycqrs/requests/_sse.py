"""Server-Sent Events: turn a stream of results into `text/event-stream`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, MutableMapping
from typing import Any

import anyio

from ..serialization import to_json

__all__ = ["SSEResponse", "sse_frame"]

logger = logging.getLogger("anycqrs.sse")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def _field(name: str, value: str) -> str:
    if "\n" in value or "\r" in value:
        raise ValueError(f"an SSE {name} can't contain a line break: {value!r}")
    return f"{name}: {value}\n"


def sse_frame(
    data: Any = None,
    *,
    event: str | None = None,
    id: str | None = None,
    retry: int | None = None,
    comment: str | None = None,
) -> bytes:
    """Encode one Server-Sent Events frame.

    Args:
        data: the payload. `str` / `bytes` are sent as they are (split on
            line breaks into several `data:` lines); anything else is
            serialized with `anycqrs.to_json` (`to_dict` then JSON).
            `None` sends no `data` line.
        event: the event name (the browser dispatches it to
            `source.addEventListener(name, ...)`).
        id: the event id (sent back by browsers as `Last-Event-ID`).
        retry: the client's reconnection delay in milliseconds.
        comment: a comment line (ignored by clients; used as a keep-alive).

    Example:
        ```python
        >>> sse_frame({"n": 1}, event="row", id="1")
        b'event: row\\nid: 1\\ndata: {"n":1}\\n\\n'
        ```
    """
    lines: list[str] = []
    if comment is not None:
        lines.extend(f": {line}\n" for line in comment.splitlines() or [""])
    if event is not None:
        lines.append(_field("event", event))
    if id is not None:
        lines.append(_field("id", id))
    if retry is not None:
        lines.append(f"retry: {int(retry)}\n")
    if data is not None:
        if isinstance(data, bytes):
            text = data.decode()
        elif isinstance(data, str):
            text = data
        else:
            text = to_json(data).decode()
        lines.extend(f"data: {line}\n" for line in text.splitlines() or [""])
    return ("".join(lines) + "\n").encode()


def _default_event(item: Any) -> str:
    return type(item).__name__


def _default_id(_item: Any, index: int) -> str:
    return str(index)


class SSEResponse:
    """An ASGI response streaming items as Server-Sent Events.

    Give it a mediator stream (or any async iterable); each item becomes one
    frame: `event` is the item's class name (or `event_name`), `id` its
    1-based position (or `event_id(item, position)`), `data` its JSON
    (`anycqrs.to_json`). Works with any ASGI framework that accepts an
    ASGI callable as a response (Starlette, FastAPI, Litestar's `ASGI`...),
    under asyncio and trio.

    * The stream is closed (the handler's `finally` runs) when it ends, when
      it fails, and when the client disconnects.
    * An error after the response started can't change the status code: it
      is logged (logger `anycqrs.sse`) and sent as a last frame
      `event: error` with `data: {"error": "<exception class name>"}`
      (no message, so nothing internal leaks); then the response ends.
    * `ping` sends a comment frame every `ping` seconds of silence, so
      proxies keep the connection open.

    Args:
        items: the async iterable to send (e.g. `mediator.stream(request)`).
        event_name: a fixed event name, or `item -> name` (`None`: no
            `event` line); default: the item's class name.
        event_id: `(item, position) -> id` (`None` result: no `id` line);
            default: the 1-based position.
        retry: reconnection delay (ms) announced in the first frame.
        ping: seconds between keep-alive comments (`None`: never; default 15).
        headers: extra response headers.
        status_code: the HTTP status (default 200).

    Example:
        Starlette:
        ```python
        async def progress(request: Request) -> SSEResponse:
            order_id = int(request.path_params["order_id"])
            return SSEResponse(mediator.stream(TrackOrder(order_id=order_id)))
        ```
    """

    __slots__ = (
        "_event_id",
        "_event_name",
        "_headers",
        "_items",
        "_ping",
        "_retry",
        "status_code",
    )

    media_type = "text/event-stream"

    def __init__(
        self,
        items: AsyncIterable[Any],
        *,
        event_name: str | Callable[[Any], str | None] | None = _default_event,
        event_id: Callable[[Any, int], str | None] | None = _default_id,
        retry: int | None = None,
        ping: float | None = 15.0,
        headers: Iterable[tuple[str, str]] | MutableMapping[str, str] = (),
        status_code: int = 200,
    ) -> None:
        self._items = items
        self._event_name = event_name
        self._event_id = event_id
        self._retry = retry
        self._ping = ping
        pairs = headers.items() if isinstance(headers, MutableMapping) else headers
        self._headers = [(k.lower().encode(), v.encode()) for k, v in pairs]
        self.status_code = status_code

    def frame(self, item: Any, position: int) -> bytes:
        """The frame of `item` (`position` counts from 1)."""
        name = self._event_name
        event = name(item) if callable(name) else name
        make_id = self._event_id
        return sse_frame(
            item,
            event=event,
            id=make_id(item, position) if make_id is not None else None,
            retry=self._retry if position == 1 else None,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the response (the ASGI interface)."""
        lock = anyio.Lock()
        sent = anyio.Event()  # set whenever a frame went out, for the pinger
        async with anyio.create_task_group() as group:

            async def watch_disconnect() -> None:
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        group.cancel_scope.cancel()
                        return

            async def locked_send(message: MutableMapping[str, Any]) -> None:
                async with lock:
                    await send(message)

            async def pinger(interval: float) -> None:
                nonlocal sent
                while True:
                    with anyio.move_on_after(interval):
                        await sent.wait()
                        sent = anyio.Event()
                        continue
                    await locked_send(
                        {"type": "http.response.body", "body": b": ping\n\n", "more_body": True}
                    )

            group.start_soon(watch_disconnect)
            await locked_send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": [
                        (b"content-type", b"text/event-stream; charset=utf-8"),
                        (b"cache-control", b"no-cache"),
                        (b"x-accel-buffering", b"no"),
                        *self._headers,
                    ],
                }
            )
            if self._ping is not None:
                group.start_soon(pinger, self._ping)
            position = 0
            items = self._items
            try:
                async for item in items:
                    position += 1
                    body = self.frame(item, position)
                    await locked_send(
                        {"type": "http.response.body", "body": body, "more_body": True}
                    )
                    sent.set()
            except Exception as exc:
                logger.error("the event stream failed after %d item(s)", position, exc_info=exc)
                body = sse_frame({"error": type(exc).__name__}, event="error")
                await locked_send({"type": "http.response.body", "body": body, "more_body": True})
            finally:
                aclose = getattr(items, "aclose", None)
                if aclose is not None:
                    with anyio.CancelScope(shield=True), anyio.fail_after(10):
                        await aclose()
            await locked_send({"type": "http.response.body", "body": b"", "more_body": False})
            group.cancel_scope.cancel()
