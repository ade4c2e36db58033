"""The benchmark suite must not rot: run ``python -m benchmarks --quick`` once.

No timing is asserted, only the shape of the output. python-cqrs is installed
only in the ``bench`` nox session, so here its column is normally ``n/a``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

# One worker runs the whole module under pytest-xdist (its module fixture runs once).
pytestmark = pytest.mark.xdist_group("benchmarks-smoke")

ROOT = Path(__file__).absolute().parent.parent
HAS_PYCQRS = importlib.util.find_spec("cqrs") is not None


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    out = tmp_path_factory.mktemp("bench") / "results.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--plain", "--json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(out.read_text(encoding="utf-8")), proc.stdout


def test_document_shape(quick_run: tuple[dict[str, Any], str]) -> None:
    doc, _ = quick_run
    assert doc["schema"] == 1
    assert doc["settings"]["quick"] is True
    assert doc["settings"]["rounds"] == 1
    meta = doc["meta"]
    for key in ("date", "python", "platform", "cpu", "cpu_count", "packages"):
        assert key in meta
    assert meta["packages"]["anyio"]
    assert doc["columns"] == ["asyncio", "trio", "python-cqrs", "peer", "baseline"]
    names = [wl["name"] for wl in doc["workloads"]]
    assert len(names) == len(set(names))
    for expected in (
        "bound/handler.handle",
        "bound/async-gen-100",
        "send/no-events",
        "send/1-event-seq",
        "send/10-events-par",
        "events/mediator-5-handlers",
        "events/fanout-1-10-50",
        "serialization/dict-roundtrip",
    ):
        assert expected in names


def test_every_workload_ran_or_says_why(quick_run: tuple[dict[str, Any], str]) -> None:
    doc, _ = quick_run
    for wl in doc["workloads"]:
        assert wl["status"] in {"ok", "n/a"}, wl
        if wl["status"] == "n/a":
            assert wl["reason"], wl
            continue
        assert wl["impls"], wl["name"]
        for key, impl in wl["impls"].items():
            assert key in doc["columns"]
            # "error" means the workload itself broke: the suite has rotted.
            assert impl["status"] in {"ok", "n/a"}, (wl["name"], key, impl)
            if impl["status"] == "n/a":
                assert impl["reason"], (wl["name"], key)
                continue
            assert len(impl["rounds_us"]) == 1
            assert impl["median_us"] > 0
            assert impl["min_us"] <= impl["median_us"] <= impl["max_us"]
            assert impl["ops_per_s"] > 0
            if wl["items_per_op"] > 1:
                assert impl["items_per_s"] > impl["ops_per_s"]


def test_core_workloads_ran_under_both_backends(quick_run: tuple[dict[str, Any], str]) -> None:
    doc, _ = quick_run
    by_name = {wl["name"]: wl for wl in doc["workloads"]}
    for name in ("send/no-events", "send/1-event-seq", "events/mediator-1-handler"):
        impls = by_name[name]["impls"]
        assert impls["asyncio"]["status"] == "ok"
        assert impls["trio"]["status"] == "ok"
        assert "trio/asyncio" in by_name[name]["ratios"]
        pycqrs = impls["python-cqrs"]
        if HAS_PYCQRS:
            assert pycqrs["status"] == "ok"
            assert "python-cqrs/asyncio" in by_name[name]["ratios"]
        else:
            assert pycqrs["status"] == "n/a"
            assert "python-cqrs" in pycqrs["reason"]


def test_targets_are_reported(quick_run: tuple[dict[str, Any], str]) -> None:
    doc, _ = quick_run
    send = next(wl for wl in doc["workloads"] if wl["name"] == "send/no-events")
    kinds = {t["kind"] for t in send["targets"]}
    assert {"max_us", "min_speedup", "max_ratio"} <= kinds
    for target in send["targets"]:
        assert_verdict(target)
        if target["kind"] == "max_us":
            assert target["measured"] is not None
    for wl in doc["workloads"]:
        for target in wl.get("targets", ()):
            assert_verdict(target)


UPPER_BOUNDS = {"max_us", "max_ratio", "max_item_overhead_us"}
LOWER_BOUNDS = {"min_speedup", "min_baseline_fraction", "min_items_per_s", "min_peer_speedup"}


def assert_verdict(target: dict[str, Any]) -> None:
    """A target's verdict follows from what was measured: n/a when nothing
    was, otherwise the comparison its kind names (rounded as reported)."""
    measured, limit, ok = target["measured"], target["limit"], target["ok"]
    assert target["kind"] in UPPER_BOUNDS | LOWER_BOUNDS, target
    if measured is None:
        assert ok is None, target
        return
    assert isinstance(ok, bool), target
    tolerance = 0.0005 * max(1.0, abs(limit))  # "measured" is rounded to 3 places
    if abs(measured - limit) <= tolerance:
        return  # too close to call after rounding
    expected = measured <= limit if target["kind"] in UPPER_BOUNDS else measured >= limit
    assert ok is expected, target


def test_table_printed(quick_run: tuple[dict[str, Any], str]) -> None:
    _, stdout = quick_run
    assert "anycqrs benchmarks" in stdout
    assert "send/no-events" in stdout


def test_only_and_list() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--list", "--only", "send/*"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = proc.stdout.strip().splitlines()
    assert lines
    assert all(line.startswith("send/") for line in lines)
