"""Every ```python block of README.md and docs/**/*.md runs (or type-checks).

The convention, the one the pages are written to:

- the blocks of one page run in order in one namespace, like a notebook (a page
  runs its async code with `anyio.run(main)`);
- a block right after a line `<!-- snippet: skip -->` is deliberately partial and
  is not run;
- a block right after `<!-- snippet: compile -->` needs a live service (a broker, a
  database server): it is compiled, and type-checked with mypy together with the
  page's other blocks, so a misspelt name or a wrong argument still fails.

A block with a top-level `await` (`async for`, `async with`) is read as the body of
an async function, the way `python -m asyncio` reads it: it runs in an event loop of
its own, so it may use what earlier blocks defined but not keep a task group or a
stream open for a later block.

Each page runs under asyncio and under trio: `anyio.run` called without a backend
gets the test's backend, so a page can't quietly depend on asyncio.
"""

from __future__ import annotations

import ast
import functools
import inspect
import re
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest

ROOT = Path(__file__).parent.parent
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
MARKER = re.compile(r"^\s*<!--\s*snippet:\s*(?P<kind>skip|compile)\s*-->\s*$")
PYTHON = {"python", "py", "python3"}


@attrs.frozen
class Block:
    """One fenced Python block of a page."""

    page: str
    line: int  # 1-based line of the block's first code line
    code: str
    kind: str  # "run", "compile" or "skip"


def _blocks(path: Path) -> list[Block]:
    """The Python blocks of `path`, each with the marker that precedes it."""
    lines = path.read_text(encoding="utf-8").splitlines()
    page = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)
    blocks: list[Block] = []
    previous = ""  # the last non-blank line outside a block
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None:
            if lines[i].strip():
                previous = lines[i]
            i += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        language = opening["info"].strip().split(" ")[0].strip("{}.").lower()
        body: list[str] = []
        i += 1
        while i < len(lines):
            closing = FENCE.match(lines[i])
            if closing and closing["fence"].startswith(fence) and not closing["info"].strip():
                break
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i])
            i += 1
        start = i - len(body) + 1
        i += 1
        if language in PYTHON:
            marker = MARKER.match(previous)
            kind = marker["kind"] if marker else "run"
            blocks.append(Block(page, start, "\n".join(body) + "\n", kind))
        previous = ""
    return blocks


def _pages() -> list[Path]:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    return [page for page in pages if any(b.kind != "skip" for b in _blocks(page))]


PAGES = _pages()


def _module_source(blocks: list[Block]) -> str:
    """The page's runnable and compile-only blocks as the body of one async function
    (so top-level `await` type-checks), each block at its own line numbers (blank
    lines pad the gaps), so mypy's errors point into the page."""
    out = ["async def __page__() -> None:"]
    for block in blocks:
        if block.kind == "skip":
            continue
        out.extend([""] * (block.line - 1 - len(out)))
        out.extend(f"    {line}" if line.strip() else "" for line in block.code.splitlines())
    return "\n".join(out) + "\n"


def run_page(page: Path, backend: str) -> None:
    """Run `page`'s blocks in order in one fresh module, `anyio.run` defaulting to
    `backend`; compile-only blocks are compiled, not run."""
    original = anyio.run

    @functools.wraps(original)
    def run(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("backend", backend)
        return original(func, *args, **kwargs)

    anyio.run = run  # type: ignore[assignment]  # in the page's own interpreter only
    # A real module in sys.modules, so attrs, typing.get_type_hints and pickling
    # find the page's classes.
    module = types.ModuleType("__docs_page__")
    sys.modules[module.__name__] = module
    for block in _blocks(page):
        if block.kind == "skip":
            continue
        # Line numbers of the page, so a traceback points at the right line.
        code = compile(
            "\n" * (block.line - 1) + block.code,
            str(page),
            "exec",
            flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
            dont_inherit=True,  # not this module's `from __future__ import annotations`
        )
        if block.kind != "run":
            continue
        if code.co_flags & inspect.CO_COROUTINE:
            # A block with a top-level `await` is the body of an async function:
            # it runs in one event loop of its own, as in `python -m asyncio`.
            original(functools.partial(eval, code, module.__dict__), backend=backend)
        else:
            exec(code, module.__dict__)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(ROOT).as_posix() for p in PAGES])
def test_page_runs(page: Path, backend: str, tmp_path: Path) -> None:
    """The page's blocks run in order in one namespace, in a fresh interpreter (as a
    reader's script would: `import anycqrs` alone doesn't bring `anycqrs.requests.
    bootstrap` along just because another test imported it), from an empty directory."""
    result = subprocess.run(
        [sys.executable, __file__, str(page), backend],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_pages_typecheck(tmp_path: Path) -> None:
    """mypy over every page that has a compile-only block (all its blocks as one
    module): a compile-only block can't run here, so the type checker is what checks
    its names, attributes and arguments."""
    sources: dict[Path, str] = {}
    for page in PAGES:
        blocks = _blocks(page)
        if any(block.kind == "compile" for block in blocks):
            target = tmp_path / (re.sub(r"\W", "_", page.relative_to(ROOT).as_posix()) + ".py")
            target.write_text(_module_source(blocks), encoding="utf-8")
            sources[target] = page.relative_to(ROOT).as_posix()
    if not sources:
        pytest.skip("no page has a compile-only block")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--no-error-summary",
            "--hide-error-context",
            "--show-error-codes",
            "--no-incremental",
            f"--cache-dir={tmp_path / 'mypy-cache'}",  # its own: the cache is a locked SQLite file
            "--follow-imports=silent",
            "--ignore-missing-imports",
            "--allow-redefinition",
            "--disable-error-code=no-redef",
            "--disable-error-code=top-level-await",
            "--config-file=",
            *map(str, sources),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=ROOT,
    )
    report = result.stdout
    for target, page in sources.items():
        report = report.replace(str(target), page)
    assert result.returncode == 0, report + result.stderr


def test_outbox_page_shows_the_postgres_schema_the_code_creates() -> None:
    """docs/outbox.md's PostgreSQL schema is the DDL `PostgresOutbox` runs."""
    from anycqrs._persistence import table_name
    from anycqrs.outbox._postgres import _schema

    def words(sql: str) -> str:
        return " ".join(sql.replace("(", " ( ").replace(")", " ) ").split())

    page = (ROOT / "docs" / "outbox.md").read_text(encoding="utf-8")
    shown = [b for b in re.findall(r"```sql\n(.*?)```", page, re.S) if "CREATE TABLE" in b]
    assert len(shown) == 1
    created = "; ".join(_schema(table_name("anycqrs_outbox", "table"))) + ";"
    assert words(shown[0]) == words(created)


def test_blocks_follow_the_convention(tmp_path: Path) -> None:
    """The parser: markers apply to the very next block only, indented fences (in
    lists) are dedented, other languages are ignored, line numbers are the page's."""
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n"
        "\n"
        "```python\n"
        "a = 1\n"
        "```\n"
        "<!-- snippet: skip -->\n"
        "```python\n"
        "partial(\n"
        "```\n"
        "```python\n"
        "b = a + 1\n"
        "```\n"
        "<!-- snippet: compile -->\n"
        "\n"
        "* a list item:\n"
        "\n"
        "  ```python\n"
        "  if b:\n"
        "      await service()\n"
        "  ```\n"
        "```console\n"
        "$ not python\n"
        "```\n",
        encoding="utf-8",
    )
    blocks = _blocks(page)
    assert [(b.kind, b.line) for b in blocks] == [("run", 4), ("skip", 8), ("run", 11), ("run", 18)]
    assert blocks[3].code == "if b:\n    await service()\n"  # the list item's marker is
    # not "right before" the block: the item's text came in between


def test_a_failing_block_fails_its_page(tmp_path: Path) -> None:
    """A block that raises makes the page's run fail, naming the page's line."""
    page = tmp_path / "broken.md"
    page.write_text("# Broken\n\n```python\nimport anycqrs\nanycqrs.nope\n```\n")
    result = subprocess.run(
        [sys.executable, __file__, str(page), "trio"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert f'File "{page}", line 5' in result.stderr


if __name__ == "__main__":
    run_page(Path(sys.argv[1]), sys.argv[2])
