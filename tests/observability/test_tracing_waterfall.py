"""The docs' waterfall script draws the spans the Kafka trace test exports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "docs" / "scripts" / "trace_waterfall.py"


def test_draws_rows_in_tree_order(tmp_path: Path) -> None:
    spans = [
        {
            "name": "child",
            "span_id": "b",
            "parent": "a",
            "start": 10,
            "end": 40,
            "kind": "INTERNAL",
        },
        {"name": "root", "span_id": "a", "parent": None, "start": 0, "end": 100, "kind": "SERVER"},
        {
            "name": "linked",
            "span_id": "c",
            "parent": None,
            "start": 50,
            "end": 60,
            "kind": "PRODUCER",
        },
        {
            "name": "grandchild",
            "span_id": "d",
            "parent": "b",
            "start": 20,
            "end": 30,
            "kind": "CONSUMER",
        },
    ]
    source, target = tmp_path / "spans.json", tmp_path / "trace.svg"
    source.write_text(json.dumps(spans))
    subprocess.run([sys.executable, str(SCRIPT), str(source), str(target)], check=True)
    svg = target.read_text()
    assert svg.startswith("<svg")
    order = [svg.index(f">{name}") for name in ("root", "child", "grandchild", "linked (linked)")]
    assert order == sorted(order)
    assert "total 0 µs" in svg  # 100 ns


def test_the_committed_picture_is_a_real_trace() -> None:
    svg = (Path(__file__).parents[2] / "docs" / "img" / "trace-waterfall.svg").read_text()
    for name in ("send PlaceOrder", "create ", "outbox publish (linked)", "process ", "act Ship"):
        assert name in svg
