"""examples/migrate_from_python_cqrs.py runs, under both backends."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).parent.parent.parent / "examples" / "migrate_from_python_cqrs.py"


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_migration_example(backend: str) -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), "--backend", backend],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("billing (python-cqrs) wrote 3 messages")
    assert '{"eventName":"OrderPaid"' in lines[0]
    assert [line for line in lines if line.startswith("shipping: order")] == [
        f"shipping: order {i} paid ({1000 * i} cents)" for i in (1, 2, 3)
    ]
    assert "shipping (anycqrs) handled 3 messages" in lines
    assert "outbox relay published 3 message(s)" in lines
    assert [line for line in lines if line.startswith("billing (python-cqrs) saw")] == [
        f"billing (python-cqrs) saw order {i} shipped: TRK-000{i}" for i in (1, 2, 3)
    ]
    assert lines[-1] == "done"
