from __future__ import annotations

import functools
import importlib.util
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import attrs
import httpx
import pytest

import anycqrs
from anycqrs.sse import SSEResponse, sse_frame

pytestmark = pytest.mark.anyio

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "streaming_sse.py"


def load_example() -> Any:
    spec = importlib.util.spec_from_file_location("streaming_sse_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


example = load_example()


def parse(text: str) -> list[dict[str, Any]]:
    """Parse an event-stream body (comments kept as ``{"comment": ...}``)."""
    frames = []
    for block in text.split("\n\n"):
        if not block:
            continue
        frame: dict[str, Any] = {}
        for line in block.split("\n"):
            field, _, value = line.partition(": ")
            if field == "":
                frame["comment"] = value
            elif field == "data":
                frame["data"] = frame.get("data", "") + value
            else:
                frame[field] = value
        frames.append(frame)
    return frames


def test_sse_frame_fields() -> None:
    assert sse_frame({"n": 1}, event="row", id="7", retry=3000) == (
        b'event: row\nid: 7\nretry: 3000\ndata: {"n":1}\n\n'
    )
    assert sse_frame("line 1\nline 2") == b"data: line 1\ndata: line 2\n\n"
    assert sse_frame(b"raw") == b"data: raw\n\n"
    assert sse_frame("") == b"data: \n\n"
    assert sse_frame(comment="ping") == b": ping\n\n"
    assert sse_frame() == b"\n"
    with pytest.raises(ValueError, match="line break"):
        sse_frame("x", event="two\nlines")


@attrs.frozen
class Tick(anycqrs.Response):
    n: int


async def ticks(count: int, closed: list[str], fail: bool = False) -> AsyncIterator[Tick]:
    try:
        for n in range(count):
            yield Tick(n)
        if fail:
            raise RuntimeError("secret internal detail")
    finally:
        closed.append("closed")


async def test_sse_response_through_asgi_transport() -> None:
    closed: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        response = SSEResponse(
            ticks(2, closed, fail=True),
            event_name=lambda item: f"tick-{item.n}",
            retry=1000,
            ping=None,
            headers={"X-Stream": "yes"},
            status_code=201,
        )
        await response(scope, receive, send)

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        with anyio.fail_after(10):
            response = await client.get("/")
    assert response.status_code == 201
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-stream"] == "yes"
    frames = parse(response.text)
    assert frames == [
        {"event": "tick-0", "id": "1", "retry": "1000", "data": '{"n":0}'},
        {"event": "tick-1", "id": "2", "data": '{"n":1}'},
        {"event": "error", "data": '{"error":"RuntimeError"}'},
    ]
    assert "secret" not in response.text
    assert closed == ["closed"]


async def test_fixed_event_name_and_no_ids() -> None:
    response = SSEResponse(ticks(1, []), event_name="tick", event_id=None, ping=None)
    assert response.frame(Tick(5), 1) == b'event: tick\ndata: {"n":5}\n\n'
    response = SSEResponse(ticks(1, []), event_name=None)
    assert response.frame(Tick(5), 3) == b'id: 3\ndata: {"n":5}\n\n'


async def test_disconnect_closes_the_stream() -> None:
    """The client goes away while the handler waits: the stream is closed."""
    closed: list[str] = []
    first_sent = anyio.Event()
    disconnect = anyio.Event()

    async def slow() -> AsyncIterator[Tick]:
        try:
            yield Tick(0)
            await anyio.sleep_forever()
            yield Tick(1)
        finally:
            closed.append("closed")

    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        await disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(message)
        if message.get("body"):
            first_sent.set()

    response = SSEResponse(slow(), ping=None)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            group.start_soon(response, {"type": "http"}, receive, send)
            await first_sent.wait()
            disconnect.set()
    assert closed == ["closed"]
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]


async def test_pings_while_the_stream_is_silent() -> None:
    pinged = anyio.Event()
    sent: list[bytes] = []

    async def waits_for_ping() -> AsyncIterator[Tick]:
        yield Tick(0)
        await pinged.wait()
        yield Tick(1)

    async def receive() -> dict[str, Any]:
        await anyio.sleep_forever()
        raise AssertionError

    async def send(message: Any) -> None:
        body = message.get("body")
        if body is not None:
            sent.append(body)
            if body == b": ping\n\n":
                pinged.set()

    with anyio.fail_after(10):
        await SSEResponse(waits_for_ping(), ping=0.01)({"type": "http"}, receive, send)
    frames = [f for f in parse(b"".join(sent).decode())]
    assert {"comment": "ping"} in frames
    assert [f["data"] for f in frames if "data" in f] == ['{"n":0}', '{"n":1}']
    assert sent[-1] == b""


async def test_example_served_by_a_real_server(anyio_backend: str) -> None:
    """uvicorn (asyncio) or hypercorn (trio) serving the Starlette example,
    read by httpx as a stream."""
    log = example.ProgressLog()
    app = example.create_app(example.create_mediator(log))
    shutdown = anyio.Event()
    with anyio.fail_after(30):
        async with anyio.create_task_group() as group:
            url = await group.start(functools.partial(example.serve, app, shutdown=shutdown))
            try:
                async with httpx.AsyncClient(base_url=url, timeout=10) as client:
                    async with client.stream("GET", "/orders/7/progress?steps=3") as response:
                        assert response.status_code == 200
                        assert response.headers["content-type"].startswith("text/event-stream")
                        body = ""
                        async for chunk in response.aiter_text():
                            body += chunk
                            if body.count("\n\n") == 1:
                                # step 1 reached the client: its event was handled before
                                assert log.steps[0] == (7, 1)
            finally:
                shutdown.set()
    frames = parse(body)
    assert [f["event"] for f in frames] == ["OrderProgress"] * 3
    assert [f["id"] for f in frames] == ["7-1", "7-2", "7-3"]
    assert [json.loads(f["data"]) for f in frames][-1] == {
        "order_id": 7,
        "step": 3,
        "status": "delivered",
    }
    assert log.steps == [(7, 1), (7, 2), (7, 3)]
    assert log.closed == [7]


async def test_client_leaving_early_closes_the_handler_on_a_real_server() -> None:
    log = example.ProgressLog()
    app = example.create_app(example.create_mediator(log))
    shutdown = anyio.Event()
    with anyio.fail_after(30):
        async with anyio.create_task_group() as group:
            url = await group.start(functools.partial(example.serve, app, shutdown=shutdown))
            try:
                async with httpx.AsyncClient(base_url=url, timeout=10) as client:
                    async with client.stream("GET", "/orders/8/progress?steps=100000") as response:
                        async for chunk in response.aiter_text():
                            if "\n\n" in chunk:
                                break
                # the server notices the disconnect and closes the handler's generator
                await log.stream_closed.wait()
            finally:
                shutdown.set()
    assert log.closed == [8]
    assert len(log.steps) < 100000
