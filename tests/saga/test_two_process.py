"""Two real processes against PostgreSQL: one SIGKILLed mid-saga, others recover."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import psycopg
import pytest

from ._sagas import drop_tables

WORKER = Path(__file__).with_name("_worker.py")
ROOT = Path(__file__).resolve().parents[2]
COUNT = 8


def spawn(*args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, str(WORKER), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def read_until(proc: subprocess.Popen[str], expected: int, timeout: float) -> list[str]:
    """Read ``expected`` lines from ``proc`` (killing it if that takes too long)."""
    watchdog = threading.Timer(timeout, proc.kill)
    watchdog.start()
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        while len(lines) < expected:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.strip())
    finally:
        watchdog.cancel()
    return lines


@pytest.mark.slow
def test_killed_runner_and_recovering_processes(postgres_dsn: str, unique: str) -> None:
    tables = (f"sagas_{unique}", f"log_{unique}", f"effects_{unique}", f"attempts_{unique}")
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE effects_{unique} (key text NOT NULL, what text NOT NULL)")
        conn.execute(f"CREATE TABLE attempts_{unique} (key text NOT NULL, what text NOT NULL)")
    try:
        runner = spawn("run", postgres_dsn, unique, str(COUNT), "asyncio")
        # n % 4 == 0, 2: hang in Pay.act; n % 4 == 1: hang in Pay.compensate;
        # n % 4 == 3: complete.
        lines = read_until(runner, COUNT, timeout=60)
        assert sorted(line.split()[0] for line in lines) == ["DONE"] * 2 + ["HANG"] * 6, (
            lines,
            runner.stderr.read() if runner.poll() is not None and runner.stderr else "",
        )
        runner.send_signal(signal.SIGKILL)
        assert runner.wait(30) == -signal.SIGKILL

        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            statuses = Counter(row[0] for row in conn.execute(f"SELECT status FROM sagas_{unique}"))
        assert statuses == {"COMPLETED": 2, "RUNNING": 4, "COMPENSATING": 2}

        recoverers = [
            spawn("recover", postgres_dsn, unique, "asyncio"),
            spawn("recover", postgres_dsn, unique, "trio"),
        ]
        outputs = []
        for proc in recoverers:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            outputs.append(out)
        recovered = sum(int(o.split()[-1]) for o in outputs)
        assert recovered == 6

        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            sagas = conn.execute(f"SELECT saga_id, status, context FROM sagas_{unique}").fetchall()
            log = conn.execute(
                f"SELECT saga_id, step_name, action, status FROM log_{unique} ORDER BY seq"
            ).fetchall()
            effects = Counter(
                tuple(row) for row in conn.execute(f"SELECT key, what FROM effects_{unique}")
            )
            attempts = Counter(
                tuple(row) for row in conn.execute(f"SELECT key, what FROM attempts_{unique}")
            )
        assert len(sagas) == COUNT
        assert max(effects.values()) == 1, "a step acted twice past its guard"
        assert any(n > 1 for n in attempts.values()), "recovery never re-ran a guarded step"
        for saga_id, status, context in sagas:
            entries = [(s, a, st) for sid, s, a, st in log if sid == saga_id]
            acted = {s for s, a, st in entries if a == "act" and st == "COMPLETED"}
            undone = [s for s, a, st in entries if a == "compensate" and st == "COMPLETED"]
            done = {what for (key, what) in effects if key.startswith(str(saga_id))}
            keys = {key.split(":")[1] for (key, what) in effects if key.startswith(str(saga_id))}
            if context["fail"]:
                assert status == "FAILED"
                assert acted == {"Reserve", "Pay"}
                assert undone == ["Pay", "Reserve"]
                assert ("Ship", "act", "FAILED") in entries
                first_compensation = next(i for i, e in enumerate(entries) if e[1] == "compensate")
                assert all(e[1] == "compensate" for e in entries[first_compensation:])
                assert done == {"act", "compensate"} and keys == {"Reserve", "Pay"}
            else:
                assert status == "COMPLETED"
                assert acted == {"Reserve", "Pay", "Ship"}
                assert undone == []
                assert context["trail"] == ["Reserve", "Pay", "Ship"]
                assert done == {"act"} and keys == {"Reserve", "Pay", "Ship"}
    finally:
        drop_tables(postgres_dsn, *tables)
