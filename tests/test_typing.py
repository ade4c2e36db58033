"""The type checker sees what ``send`` returns (``Request[Res]`` -> ``Res``)."""

from __future__ import annotations

from pathlib import Path

import pytest

api = pytest.importorskip("mypy.api")

SAMPLES = Path(__file__).parent / "typing_samples"


def _mypy(path: Path) -> tuple[str, int]:
    stdout, stderr, status = api.run(
        ["--strict", "--no-incremental", "--python-version", "3.10", str(path)]
    )
    return stdout + stderr, status


def test_send_is_typed_by_the_request() -> None:
    output, status = _mypy(SAMPLES / "send_types.py")
    assert 'Revealed type is "send_types.UserCreated"' in output, output
    assert 'Revealed type is "Any"' in output, output
    assert status == 0  # reveal_type notes only, no errors
    assert "error:" not in output, output


def test_wrong_result_type_is_rejected() -> None:
    output, status = _mypy(SAMPLES / "send_wrong.py")
    assert status == 1
    assert 'incompatible type "CreateUser"; expected "Request[str]"' in output, output
