"""The runnable examples run, under both backends."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_order_service_demo(backend: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "order_service.py"),
            "--backend",
            backend,
            "--database",
            str(tmp_path / "orders.sqlite3"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert all(line.startswith(f"[{backend}] ") for line in lines)
    assert any("placed for ada: 3600 cents" in line for line in lines)
    assert any("thank-you note queued for grace" in line for line in lines)
    assert any("outbox relay published 2 message(s)" in line for line in lines)
    assert sum("saga step Ship" in line for line in lines) == 1
    assert any("compensated: stock released" in line for line in lines)
    assert any(line.endswith("ada, 3600 cents, shipped") for line in lines)
    assert any(line.endswith("grace, 99000 cents, cancelled") for line in lines)
    assert lines[-1] == f"[{backend}] done"


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_inbox_outbox_example(backend: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "inbox_outbox.py"),
            "--backend",
            backend,
            "--database",
            str(tmp_path / "inbox.sqlite3"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines == [
        f"[{backend}] dead-lettered offset 3: DeserializationError",
        f"[{backend}] shipments: [1, 2, 3]",
        f"[{backend}] outbox relay published 3 message(s): OrderShipped [1, 2, 3]",
        f"[{backend}] done",
    ]


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_production_service(
    backend: str, postgres_dsn: str, kafka_bootstrap: str, unique: str
) -> None:
    """The Starlette service: outbox per request on a pool, relay and consumer in the
    lifespan, the saga streamed as SSE, Kafka logs through logging."""
    result = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "production_service.py"),
            "--postgres",
            postgres_dsn,
            "--kafka",
            kafka_bootstrap,
            "--topic",
            f"shop-{backend}-{unique}",
            "--prefix",
            f"shop_{unique}",
            "--backend",
            backend,
            "--self-test",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("order ") and lines[0].endswith("placed (201)")
    order_id = lines[0].split()[1]
    assert lines[1] == f"order {order_id} consumed from Kafka"
    steps = [json.loads(line.removeprefix("shipping ")) for line in lines[2:-1]]
    parcel = f"parcel-{order_id}"
    assert steps == [
        {"order_id": int(order_id), "step": "PackParcel", "result": parcel},
        {
            "order_id": int(order_id),
            "step": "BookCourier",
            "result": f"courier-for-parcel-{order_id}",
        },
    ]
    assert lines[-1] == "done"
    assert "INFO anycqrs.brokers.kafka: Kafka partitions assigned" in result.stderr
    assert "INFO shop: relay and consumer running" in result.stderr


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_cli_tool(backend: str, tmp_path: Path) -> None:
    """The order desk CLI: place, count, publish once, count again."""

    def cli(*args: str) -> list[str]:
        command = [sys.executable, str(EXAMPLES / "cli_trio.py"), "--backend", backend]
        result = subprocess.run(
            [*command, "--database", str(tmp_path / "shop.sqlite3"), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.splitlines()

    assert cli("place", "ada", "3") == ["order 1 placed for ada"]
    assert cli("place", "grace", "1") == ["order 2 placed for grace"]
    assert cli("pending") == ["pending: 2"]
    published = cli("publish")
    assert published[-1] == "published 2 message(s)"
    assert published[0] == (
        "published OrderPlaced to orders: {'customer': 'ada', 'order_id': 1, 'quantity': 3}"
    )
    assert cli("pending") == ["pending: 0"]


def test_testing_your_app_example() -> None:
    """The testing recipe's tests pass (each under asyncio and trio)."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(EXAMPLES / "testing_your_app.py"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=EXAMPLES.parent,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 passed" in result.stdout
