"""The project's own files say nothing untrue: no placeholder URLs, an install
section that works without a published release."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).absolute().parent.parent


def tracked_text_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "*.md", "*.yml", "*.yaml", "*.toml", "*.py", "*.cfg", "*.txt"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [ROOT / name for name in listed]


def test_no_placeholder_urls() -> None:
    files = tracked_text_files()
    assert any(f.name == "mkdocs.yml" for f in files)
    marker = "." + "invalid"  # spelled in two parts so this file doesn't match itself
    offenders = [
        str(f.relative_to(ROOT))
        for f in files
        if f.exists() and marker in f.read_text(encoding="utf-8", errors="replace")
    ]
    assert offenders == []


def test_readme_installs_from_a_checkout() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    install = readme.split("## Install", 1)[1].split("\n## ", 1)[0]
    assert "python -m pip install ." in install
    assert "pip install anycqrs" not in install
