"""The runnable examples run, under both backends."""

from __future__ import annotations

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
