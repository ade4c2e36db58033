"""The type checker sees what ``send`` returns (``Request[Res]`` -> ``Res``)."""

from __future__ import annotations

from pathlib import Path

import pytest

# One worker runs the whole module under pytest-xdist (its module fixture runs once).
pytestmark = pytest.mark.xdist_group("mypy")

api = pytest.importorskip("mypy.api")

SAMPLES = Path(__file__).parent / "typing_samples"


@pytest.fixture(scope="module")
def mypy_output(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One strict mypy run over every sample: each sample's lines, by file name.
    Its own cache directory: mypy's cache is an SQLite file that another
    mypy run (the docs snippets' check, on another xdist worker) may hold
    locked."""
    cache = tmp_path_factory.mktemp("mypy-cache")
    stdout, stderr, _status = api.run(
        [
            "--strict",
            "--no-incremental",
            f"--cache-dir={cache}",
            "--python-version",
            "3.10",
            str(SAMPLES),
        ]
    )
    lines: dict[str, str] = {}
    for line in (stdout + stderr).splitlines():
        name = Path(line.split(":", 1)[0]).name
        lines[name] = lines.get(name, "") + line + "\n"
    return lines


def test_send_is_typed_by_the_request(mypy_output: dict[str, str]) -> None:
    output = mypy_output.get("send_types.py", "")
    assert 'Revealed type is "send_types.UserCreated"' in output, output
    assert 'Revealed type is "Any"' in output, output
    assert "error:" not in output, output  # reveal_type notes only, no errors


def test_wrong_result_type_is_rejected(mypy_output: dict[str, str]) -> None:
    output = mypy_output.get("send_wrong.py", "")
    assert "error:" in output, mypy_output
    assert 'incompatible type "CreateUser"; expected "Request[str]"' in output, output
