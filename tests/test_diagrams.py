"""Mermaid diagrams: structure checks, plus a real Mermaid parse when available.

The optional parse runs ``tests/mermaid_validate.mjs`` with node in a folder
holding ``node_modules/mermaid`` and ``node_modules/jsdom`` (``npm install
mermaid@11 jsdom`` there): ``$ANYCQRS_MERMAID_DIR``, default
``~/.cache/anycqrs-mermaid``. Without node or that folder it is skipped on a
developer's machine and fails in CI (``.ci/run`` installs them).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import attrs
import pytest

import anycqrs
from anycqrs.diagrams import CoRMermaid
from anycqrs.errors import BindingError
from anycqrs.requests import CORRequestHandler

VALIDATOR = Path(__file__).with_name("mermaid_validate.mjs")
ARROW = re.compile(r"^(\w+)(->>|-->>)(\w+): (.+)$")


def mermaid_dir() -> Path | None:
    path = Path(os.environ.get("ANYCQRS_MERMAID_DIR", "~/.cache/anycqrs-mermaid")).expanduser()
    if shutil.which("node") is None:
        return None
    if not (path / "node_modules" / "mermaid").is_dir():
        return None
    if not (path / "node_modules" / "jsdom").is_dir():
        return None
    return path


def mermaid_parse(*diagrams: str) -> str:
    """Parse the diagrams with the real Mermaid parser; skip if unavailable."""
    folder = mermaid_dir()
    if folder is None:
        reason = "node with mermaid and jsdom is not installed (see this module's docstring)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason + "; .ci/run installs them with npm")
        pytest.skip(reason)
    result = subprocess.run(
        ["node", "--input-type=module", "-e", VALIDATOR.read_text()],
        input="\n%%SPLIT%%\n".join(diagrams),
        capture_output=True,
        text=True,
        cwd=folder,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def check_sequence(text: str) -> None:
    """Structure of a sequenceDiagram: header, participants declared before
    use, well-formed messages, balanced ``alt``/``else``/``end`` blocks."""
    lines = text.rstrip("\n").split("\n")
    assert lines[0] == "sequenceDiagram"
    participants: set[str] = set()
    stack: list[str] = []
    for line in lines[1:]:
        assert line.startswith("    "), line
        body = line.strip()
        if body.startswith("participant "):
            name = body.split()[1]
            assert re.fullmatch(r"[A-Za-z_]\w*", name), name
            participants.add(name)
        elif body.startswith("alt "):
            stack.append("alt")
        elif body.startswith("else "):
            assert stack and stack[-1] == "alt", line
        elif body == "end":
            assert stack.pop() == "alt"
        else:
            match = ARROW.match(body)
            assert match, line
            assert match.group(1) in participants and match.group(3) in participants, line
    assert not stack


def check_class_diagram(text: str) -> None:
    lines = text.rstrip("\n").split("\n")
    assert lines[0] == "classDiagram"
    depth = 0
    declared: set[str] = set()
    for line in lines[1:]:
        body = line.strip()
        if body == "}":
            depth -= 1
            continue
        if depth:
            # an annotation, a method (return type optional) or an attribute
            assert re.fullmatch(r"<<\w+>>|[+\-#~]\w+\([^()]*\)( \w+)?|[+\-#~]?\w+( \w+)?", body), (
                line
            )
            continue
        if body.startswith("class "):
            name = body.split()[1]
            declared.add(name)
            if body.endswith("{"):
                depth += 1
            continue
        match = re.fullmatch(r"(\w+) (<\|--|-->|\.\.>) (\w+) ?(: \w+)?", body)
        assert match, line
        assert match.group(1) in declared and match.group(3) in declared, line
    assert depth == 0


@attrs.frozen
class Receipt(anycqrs.Response):
    ok: bool


@attrs.frozen
class Pay(anycqrs.Request[Receipt]):
    method: str


class CardHandler(CORRequestHandler[Pay, Receipt]):
    async def handle(self, request: Pay) -> Receipt | None:
        return await self.next(request)


class WalletHandler(CORRequestHandler[Pay, Receipt]):
    async def handle(self, request: Pay) -> Receipt | None:
        return await self.next(request)


class InvoiceHandler(CORRequestHandler[Pay, Receipt]):
    async def handle(self, request: Pay) -> Receipt | None:
        return Receipt(True)


def test_cor_sequence() -> None:
    text = CoRMermaid([CardHandler, WalletHandler, InvoiceHandler]).sequence()
    check_sequence(text)
    assert "    Client->>CardHandler: handle(Pay)" in text
    assert "CardHandler->>WalletHandler: next(Pay)" in text
    assert "WalletHandler->>InvoiceHandler: next(Pay)" in text
    assert "InvoiceHandler-->>WalletHandler: None" in text
    assert "CardHandler-->>Client: Receipt" in text
    assert text.count("alt ") == 3 and text.count("\n" + " " * 4 + "end") == 1


def test_cor_class_diagram() -> None:
    text = CoRMermaid([CardHandler, WalletHandler, InvoiceHandler]).class_diagram()
    check_class_diagram(text)
    assert "CORRequestHandler <|-- WalletHandler" in text
    assert "CardHandler --> WalletHandler : next" in text
    assert "WalletHandler --> InvoiceHandler : next" in text
    assert "+handle(Pay request) Receipt" in text


def test_single_link_and_untyped_handlers() -> None:
    class Untyped(CORRequestHandler):  # type: ignore[type-arg]
        async def handle(self, request: object) -> None:
            return None

    diagram = CoRMermaid([Untyped])
    assert diagram.handlers == (Untyped,)
    check_sequence(diagram.sequence())
    check_class_diagram(diagram.class_diagram())
    assert "handle(request)" in diagram.sequence()


def test_names_are_made_safe_and_unique() -> None:
    first = type("Client", (CardHandler,), {})
    second = type("Client", (WalletHandler,), {})
    weird = type("9-lives", (InvoiceHandler,), {})
    diagram = CoRMermaid([first, second, weird])
    text = diagram.sequence()
    check_sequence(text)
    check_class_diagram(diagram.class_diagram())
    assert "participant Client_2 as Client" in text
    assert "participant Client_3 as Client" in text
    assert "participant _9_lives as 9-lives" in text


def test_invalid_input() -> None:
    with pytest.raises(BindingError, match="at least one"):
        CoRMermaid([])
    with pytest.raises(BindingError, match="not a CORRequestHandler"):
        CoRMermaid([object])


def test_mermaid_parses_the_diagrams() -> None:
    diagram = CoRMermaid([CardHandler, WalletHandler, InvoiceHandler])
    single = CoRMermaid([CardHandler])
    odd = CoRMermaid([type("Client", (CardHandler,), {}), type("9-lives", (InvoiceHandler,), {})])
    texts = [d.sequence() for d in (diagram, single, odd)]
    texts += [d.class_diagram() for d in (diagram, single, odd)]
    output = mermaid_parse(*texts)
    assert output.count("ok ") == 6


def test_the_validator_rejects_broken_text() -> None:
    with pytest.raises(AssertionError, match="Parse error"):
        mermaid_parse("sequenceDiagram\n    A->>B oops no colon\n")
