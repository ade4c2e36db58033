"""The FastAPI and FastStream recipes run (the examples, as scripts)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent.parent.parent / "examples"


def run(*arguments: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, *arguments], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_fastapi_request_scoped_mediator(backend: str, tmp_path: Path) -> None:
    lines = run(
        str(EXAMPLES / "fastapi_app.py"),
        "--database",
        str(tmp_path / "orders.sqlite3"),
        "--backend",
        backend,
    )
    assert lines == [
        "POST tea: 200 {'placed': '2 x tea'}",
        # the handler inserted the row, then raised: the request's transaction rolled back
        "POST cake: 422 {'detail': 'cannot order 0 x cake'}",
        "GET: {'orders': ['2 x tea']}",
        # the event handler wrote in the command's transaction
        "audit: ['placed 2 x tea']",
    ]


EXPECTED_BOOKINGS = [
    "booked order 1: 100 cents",
    "booked order 2: 200 cents",
    "booked order 3: 300 cents",
    "done",
]


def test_faststream_subscriber_with_test_broker() -> None:
    assert run(str(EXAMPLES / "faststream_app.py")) == EXPECTED_BOOKINGS


def test_faststream_subscriber_on_kafka(kafka_bootstrap: str, unique: str) -> None:
    lines = run(
        str(EXAMPLES / "faststream_app.py"),
        "--bootstrap",
        kafka_bootstrap,
        "--topic",
        f"faststream-{unique}",
    )
    # FastStream logs its subscriber's progress to stdout too
    assert [line for line in lines if line.startswith(("booked", "done"))] == EXPECTED_BOOKINGS
