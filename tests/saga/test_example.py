"""examples/saga_order.py runs under both backends."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "saga_order.py"


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_saga_order_example(backend: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), "--backend", backend, "--database", str(tmp_path / "s.db")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "SendInvoice -> invoice:12000" in out
    assert "failed: no courier takes a piano today; reservation=None payment=None" in out
    assert "status after the break: RUNNING" in out
    assert "recovered: 1" in out
    assert out.count(": COMPLETED (version") == 2 and out.count(": FAILED (version") == 1
    assert "Ship ..> " not in out and "ChargeCard ..> SendInvoice : fallback" in out
    assert out.rstrip().endswith("done")
    assert (tmp_path / "s.db").exists()
