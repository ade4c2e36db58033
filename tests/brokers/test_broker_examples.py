"""The broker examples run against the real brokers, under both backends."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent.parent.parent / "examples"


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_kafka_consumer_cli(backend: str, kafka_bootstrap: str, unique: str) -> None:
    topic = f"example-{backend}-{unique}"
    result = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "kafka_consumer.py"),
            "--bootstrap",
            kafka_bootstrap,
            "--topic",
            topic,
            "--group",
            topic,
            "--produce",
            "6",
            "--count",
            "6",
            "--backend",
            backend,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert sum(line.startswith("order ") for line in result.stdout.splitlines()) == 6
    assert result.stdout.splitlines()[-1] == "done: 6 events"


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_rabbitmq_roundtrip(backend: str, rabbitmq_url: str) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "rabbitmq_roundtrip.py"),
            "--url",
            rabbitmq_url,
            "--backend",
            backend,
            "--count",
            "4",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "done: 4 events"
