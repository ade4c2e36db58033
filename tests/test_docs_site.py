"""The documentation site builds strictly and reads clean.

`nox -s docs` runs this module (it needs mkdocs-material and mkdocstrings; without
them, in the default suite, it skips — unless ANYCQRS_DOCS_REQUIRED=1, which the
nox session sets, so a missing tool fails there instead of skipping).

One strict build (every mkdocs / mkdocstrings warning is an error: a cross-reference
that doesn't resolve, a page missing from the nav, a link to a missing page), then a
crawl of the built HTML:

- no raw reST role (`:class:`, `:attr:` ...) and no `Example::` literal block left in
  the text a reader sees;
- every internal link points at a page that exists, and its `#anchor` at an id on
  that page;
- no placeholder URL (the reserved placeholder domain).
"""

from __future__ import annotations

import html.parser
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).parent.parent
ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|mod|exc|data|obj):`?")
LITERAL_BLOCK = re.compile(r"\w::(?:\s|$)")
PLACEHOLDER = "." + "invalid"  # spelled in two parts so this file doesn't match itself

if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("mkdocstrings") is None:
    if os.environ.get("ANYCQRS_DOCS_REQUIRED") == "1":
        raise RuntimeError("mkdocs and mkdocstrings are required here (ANYCQRS_DOCS_REQUIRED=1)")
    pytest.skip("mkdocs or mkdocstrings not installed (nox -s docs)", allow_module_level=True)


class _Page(html.parser.HTMLParser):
    """The ids, links and visible text of one HTML page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.text: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("id"):
            self.ids.add(str(values["id"]))
        if values.get("name") and tag == "a":
            self.ids.add(str(values["name"]))
        if tag == "a" and values.get("href"):
            self.links.append(str(values["href"]))
        if tag in {"script", "style"}:
            self._hidden += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in {"script", "style"}:
            self._hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.text.append(data)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built once with `mkdocs build --strict`."""
    target = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(target)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return target


@pytest.fixture(scope="module")
def pages(site: Path) -> dict[Path, _Page]:
    parsed = {}
    for file in sorted(site.rglob("*.html")):
        page = _Page()
        page.feed(file.read_text(encoding="utf-8"))
        parsed[file] = page
    assert len(parsed) > 10
    return parsed


def test_no_raw_rest_roles_or_literal_blocks(site: Path, pages: dict[Path, _Page]) -> None:
    """What a reader sees has no `:class:` roles and no `Example::` blocks."""
    found = []
    for file, page in pages.items():
        text = " ".join(page.text)
        for pattern in (ROLE, LITERAL_BLOCK):
            for match in pattern.finditer(text):
                context = text[max(0, match.start() - 40) : match.end() + 40]
                found.append(f"{file.relative_to(site)}: ...{context}...")
    assert not found, "\n".join(found)


def test_internal_links_and_anchors_resolve(site: Path, pages: dict[Path, _Page]) -> None:
    """Every link inside the site reaches an existing page and, with `#x`, an id on it."""
    broken = []
    for file, page in pages.items():
        for href in page.links:
            url = urlsplit(href)
            if url.scheme or url.netloc or href.startswith(("mailto:", "javascript:")):
                continue
            if url.path.startswith("/"):  # root-relative (the 404 page's links)
                target = site / unquote(url.path).lstrip("/")
                if target.is_dir():
                    target = target / "index.html"
            elif url.path:
                target = (file.parent / unquote(url.path)).resolve()
                if target.is_dir():
                    target = target / "index.html"
            else:
                target = file
            if not target.is_file():
                broken.append(f"{file.relative_to(site)}: {href} (no such page)")
                continue
            if url.fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else set()
                if unquote(url.fragment) not in ids:
                    broken.append(f"{file.relative_to(site)}: {href} (no such anchor)")
    assert not broken, "\n".join(broken)


def test_no_placeholder_urls(site: Path) -> None:
    """No placeholder URL in the built site."""
    hits = [
        str(file.relative_to(site))
        for file in site.rglob("*")
        if file.suffix in {".html", ".xml", ".json"}
        and PLACEHOLDER in file.read_text(encoding="utf-8", errors="replace")
    ]
    assert not hits


def test_api_pages_have_a_heading_per_class(pages: dict[Path, _Page], site: Path) -> None:
    """Each API page names its classes as headings (ids of the objects' paths)."""
    page = pages[site / "api" / "mediators" / "index.html"]
    assert {"anycqrs.RequestMediator", "anycqrs.RequestMediator.send"} <= page.ids
