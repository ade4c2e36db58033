"""Health checks without brokers: the consumer probe's transitions on a
controlled clock, the registry, the outbox monitor's verdict, and the ASGI
endpoint (httpx's ASGI transport, and a real hypercorn server) under asyncio
and trio."""

from __future__ import annotations

import socket
from typing import Any

import anyio
import httpx
import pytest

from anycqrs.observability import ConsumerProbe, Health, HealthApp, HealthCheck, HealthReport

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Static:
    def __init__(self, check: HealthCheck) -> None:
        self.check = check

    def health(self) -> HealthCheck:
        return self.check


class Raising:
    def health(self) -> HealthCheck:
        raise RuntimeError("broken probe")


class TestConsumerProbe:
    """The transitions a consumer reports, on a controlled clock."""

    def test_not_running_is_live_but_not_ready(self) -> None:
        check = ConsumerProbe("c").check()
        assert (check.live, check.ready, check.reasons) == (True, False, ("not running",))

    def test_running_and_polling_is_healthy(self) -> None:
        clock = Clock()
        probe = ConsumerProbe("c", stalled_after=10, clock=clock)
        probe.started()
        clock.now += 9
        probe.polled()
        clock.now += 9
        check = probe.check()
        assert check.status == "pass" and check.details["seconds_since_progress"] == 9

    def test_stalled_loop_is_not_live(self) -> None:
        clock = Clock()
        probe = ConsumerProbe("c", stalled_after=10, clock=clock)
        probe.started()
        clock.now += 10.5
        check = probe.check()
        assert (check.live, check.ready) == (False, False)
        assert check.reasons == ("poll loop stalled: no progress for 10.5s",)
        probe.polled()
        assert probe.check().status == "pass"

    def test_disconnected_is_not_ready_and_never_stalled(self) -> None:
        clock = Clock()
        probe = ConsumerProbe("c", stalled_after=10, clock=clock)
        probe.started()
        probe.disconnected("ECONNREFUSED")
        clock.now += 60  # reconnecting for a minute: not a stall
        check = probe.check()
        assert (check.live, check.ready) == (True, False)
        assert "connection lost 60.0s ago, reconnecting (ECONNREFUSED)" in check.reasons[0]
        assert not probe.is_connected
        probe.connected()
        assert probe.check().status == "pass"

    def test_unassigned_for_too_long_is_not_ready(self) -> None:
        probe = ConsumerProbe("c", unassigned_after=30, clock=Clock())
        probe.started()
        assert probe.check(unassigned_for=29).ready
        check = probe.check(unassigned_for=31)
        assert check.live and not check.ready
        assert check.reasons == ("no partitions assigned for 31.0s",)

    def test_stopped(self) -> None:
        probe = ConsumerProbe("c")
        probe.started()
        probe.stopped()
        assert probe.check().reasons == ("not running",)

    def test_thresholds_are_validated(self) -> None:
        with pytest.raises(ValueError, match="stalled_after"):
            ConsumerProbe("c", stalled_after=0)


class TestHealth:
    """The registry and its report."""

    def test_report_aggregates(self) -> None:
        ok = HealthCheck("a", live=True, ready=True)
        busy = HealthCheck("b", live=True, ready=False, reasons=("warming up",))
        health = Health([Static(ok)])
        assert health.health().ready
        health.add(Static(busy))
        report = health.health()
        assert (report.live, report.ready, report.status) == (True, False, "fail")
        assert report.to_dict()["checks"][1] == {
            "name": "b",
            "status": "fail",
            "live": True,
            "ready": False,
            "reasons": ["warming up"],
            "details": {},
        }

    def test_a_raising_source_is_not_live(self) -> None:
        report = Health([Raising()]).health()
        assert not report.live and not report.ready
        assert report.checks[0].reasons == ("health check raised RuntimeError: broken probe",)

    def test_empty_is_healthy(self) -> None:
        assert HealthReport.of([]).to_dict() == {
            "status": "pass",
            "live": True,
            "ready": True,
            "checks": [],
        }


def _app(check: HealthCheck) -> tuple[HealthApp, Static]:
    source = Static(check)
    return HealthApp(Health([source])), source


class TestAsgi:
    """`HealthApp` through httpx's ASGI transport."""

    async def test_probes(self) -> None:
        app, source = _app(HealthCheck("c", live=True, ready=True))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            live = await client.get("/livez")
            ready = await client.get("/readyz")
            assert (live.status_code, ready.status_code) == (200, 200)
            assert ready.json()["status"] == "pass"
            assert ready.headers["content-type"] == "application/json"
            source.check = HealthCheck("c", live=True, ready=False, reasons=("disconnected",))
            assert (await client.get("/livez")).status_code == 200
            ready = await client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["checks"][0]["reasons"] == ["disconnected"]
            source.check = HealthCheck("c", live=False, ready=False)
            assert (await client.get("/livez")).status_code == 503
            head = await client.head("/readyz")
            assert head.status_code == 503 and head.content == b""
            assert (await client.get("/nope")).status_code == 404
            assert (await client.post("/readyz")).status_code == 405

    async def test_mounted_in_starlette(self) -> None:
        from starlette.applications import Starlette
        from starlette.routing import Mount

        app, source = _app(HealthCheck("c", live=True, ready=True))
        web = Starlette(routes=[Mount("/health", app=app)])
        transport = httpx.ASGITransport(app=web)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            assert (await client.get("/health/readyz")).status_code == 200
            source.check = HealthCheck("c", live=True, ready=False)
            assert (await client.get("/health/readyz")).status_code == 503
            assert (await client.get("/health/livez")).status_code == 200


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class TestHypercorn:
    """`HealthApp` served by a real hypercorn, on the test's own event loop."""

    async def test_serves_probes(self, anyio_backend: str) -> None:
        from hypercorn.config import Config

        if anyio_backend == "trio":
            from hypercorn.trio import serve
        else:
            from hypercorn.asyncio import serve  # type: ignore[assignment]

        app, source = _app(HealthCheck("c", live=True, ready=True))
        config = Config()
        port = _free_port()
        config.bind = [f"127.0.0.1:{port}"]
        config.accesslog = None
        stop = anyio.Event()
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: serve(app, config, shutdown_trigger=stop.wait))
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                    while True:
                        try:
                            response = await client.get("/readyz")
                            break
                        except httpx.ConnectError:
                            await anyio.sleep(0.05)
                    assert response.status_code == 200
                    source.check = HealthCheck("c", live=True, ready=False)
                    assert (await client.get("/readyz")).status_code == 503
                    assert (await client.get("/livez")).status_code == 200
                stop.set()


class Switch:
    """A broker that refuses while `down` (the relay's publishing side)."""

    def __init__(self) -> None:
        self.down = True
        self.sent: list[Any] = []

    async def send_message(self, message: Any) -> None:
        if self.down:
            raise ConnectionError("broker unreachable")
        self.sent.append(message)


class TestRelay:
    """`OutboxRelay.health()`: running, publishing, its store reachable."""

    async def test_broker_down_and_back(self, tmp_path: Any) -> None:
        import contextlib
        import sqlite3

        import attrs

        import anycqrs
        from anycqrs.outbox import OutboxRelay, SqliteOutbox, SqliteOutboxStore

        @attrs.frozen
        class Placed:
            order_id: int

        path = tmp_path / "app.db"
        store = SqliteOutboxStore(path)
        broker = Switch()
        relay = OutboxRelay(store, broker, poll_interval=0.01, retry=anycqrs.RetryPolicy(delay=0))
        assert relay.health().reasons == ("not running",)
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                await tg.start(relay.run)
                assert relay.health().ready
                with contextlib.closing(sqlite3.connect(path)) as connection, connection:
                    SqliteOutbox(connection).add(
                        anycqrs.NotificationEvent(payload=Placed(1), topic="orders")
                    )
                relay.wake()
                while relay.health().ready:
                    await anyio.sleep(0.01)
                check = relay.health()
                assert check.live
                assert "publishing failed: ConnectionError: broker unreachable" in check.reasons[0]
                broker.down = False
                while not broker.sent:
                    await anyio.sleep(0.01)
                while not relay.health().ready:
                    await anyio.sleep(0.01)
                tg.cancel_scope.cancel()
        assert relay.health().reasons == ("not running",)
        store.close()
