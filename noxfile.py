"""Project tasks: ``nox -s tests``, ``nox -s demo``, ``nox -s lint`` ...

``nox -s tests`` runs the whole suite on the current Python, with coverage;
``nox -s tests-3.10`` ... ``tests-3.13`` run it on other interpreters.
"""

from __future__ import annotations

import os
from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests", "lint", "typecheck"]

ROOT = Path(__file__).parent
VERSIONS = ("3.10", "3.11", "3.12", "3.13")
BENCH_EXTRA = [
    "python-cqrs==5.3.0",
    "pyinstrument",
    "matplotlib",
    "rich",
    "hdrhistogram>=0.10",
    "faststream[confluent]>=0.5",
]


def _interpreter(version: str) -> str:
    """An interpreter for ``version``: pyenv's when there is one (its shims hide
    the versions that aren't selected), else whatever nox finds on PATH."""
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    for candidate in sorted(root.glob(f"{version}.*"), reverse=True):
        executable = candidate / "bin" / f"python{version}"
        if executable.exists():
            return str(executable)
    return version


def _install(session: nox.Session, *extra: str) -> None:
    session.install("-e", ".[dev]", *extra)


def _pytest(session: nox.Session) -> None:
    _install(session)
    # The suite waits on brokers and databases far more than it computes: four xdist
    # workers (tests of one xdist_group stay on one worker) cut its wall time in half.
    args = session.posargs or ["-q", "-n", "4", "--dist", "loadgroup"]
    session.run(
        "python",
        "-m",
        "pytest",
        "--cov=anycqrs",
        "--cov-report=term",
        "--cov-fail-under=95",
        *args,
    )


@nox.session
def tests(session: nox.Session) -> None:
    """Run the whole test suite on the current Python, with coverage (>= 90 %)."""
    _pytest(session)


for _version in VERSIONS:
    nox.session(python=_interpreter(_version), name=f"tests-{_version}")(_pytest)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff==0.17.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """Strict mypy on anycqrs/."""
    _install(session)
    session.run("mypy")


DOCS_TOOLS = ["mkdocs-material>=9.5", "mkdocstrings[python]>=0.26", "ruff", "pytest"]


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation strictly (warnings are errors) into site/, and check it.

    tests/test_docs_site.py builds it once more and crawls the HTML: no raw reST
    roles, no broken internal link or anchor, no placeholder URL. (ruff formats the
    API signatures.) The snippets of every page run in the default suite
    (tests/test_docs_snippets.py).
    """
    session.install("-e", ".", *DOCS_TOOLS)
    quiet = {"NO_MKDOCS_2_WARNING": "1"}
    session.run("mkdocs", "build", "--strict", "--site-dir", str(ROOT / "site"), env=quiet)
    session.run(
        "python",
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "tests/test_docs_site.py",
        env={"ANYCQRS_DOCS_REQUIRED": "1"},
    )


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks: anycqrs (asyncio, trio) side by side with python-cqrs 5.3."""
    _install(session, *BENCH_EXTRA)
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session
def faults(session: nox.Session) -> None:
    """The fault suite (tests/faults): multi-process scenarios with a ledger each.

    ``nox -s faults`` runs the short mode (a few minutes); ``nox -s faults -- --long``
    (or ``ANYCQRS_FAULTS_MODE=long``) the long one. Other arguments go to
    ``python -m tests.faults`` (``--only NAME``, ``--seed N``). Needs PostgreSQL
    (``ANYCQRS_TEST_POSTGRES_DSN``) and RabbitMQ on 127.0.0.1; Kafka is a Tansu
    broker the suite starts itself. Not one of the default sessions.
    """
    _install(session)
    session.run("python", "-m", "tests.faults", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """The order-service demo on embedded defaults (SQLite, in-memory broker),
    once under asyncio and once under trio."""
    session.install("-e", ".", "trio>=0.25")
    for backend in ("asyncio", "trio"):
        session.run("python", "examples/order_service.py", "--backend", backend)
