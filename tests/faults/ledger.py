"""Ledgers: what a scenario sent and what its processes handled, and the
table of outcomes.

Child processes append one line per handled event to a ledger file opened
with ``O_APPEND`` (one ``write`` per line, so lines of concurrent processes
never interleave and the file's order is the order the events were handled).
A process SIGKILLed after handling an event but before acknowledging it
handles nothing twice in the ledger; its successor may: that is a duplicate,
allowed by at-least-once. An event sent (acknowledged by the system under
test) and never handled is lost.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path


class LedgerFile:
    """An append-only ledger of text lines shared by several processes."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, *fields: object) -> None:
        """Append one line (its fields joined by spaces), atomically."""
        os.write(self._fd, (" ".join(map(str, fields)) + "\n").encode())

    def close(self) -> None:
        os.close(self._fd)


def read_lines(path: Path | str) -> list[list[str]]:
    """Every complete line of a ledger file, split into fields."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return []
    lines = text.split("\n")
    return [line.split(" ") for line in lines[:-1] if line]


def order_violations(handled: Iterable[int], order_of: Callable[[int], tuple[object, int]]) -> int:
    """How many events were handled for the first time after a later event of
    their key: ``order_of(event)`` gives ``(key, sequence number)``.

    Redeliveries (an event handled again) are not violations: only the order
    in which each event was *first* handled counts.
    """
    seen: set[int] = set()
    latest: dict[object, int] = {}
    violations = 0
    for event in handled:
        if event in seen:
            continue
        seen.add(event)
        key, seq = order_of(event)
        if seq < latest.get(key, -1):
            violations += 1
        else:
            latest[key] = seq
    return violations


@dataclass
class Outcome:
    """The figures of one scenario run."""

    name: str
    sent: int = 0
    handled: int = 0
    lost: int = 0
    duplicated: int = 0
    order_violations: int = 0
    faults: int = 0
    seconds: float = 0.0
    order_promised: bool = True
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def tally(
        self,
        sent: Iterable[int],
        handled: Sequence[int],
        order_of: Callable[[int], tuple[object, int]] | None = None,
    ) -> None:
        """Fill sent / handled / lost / duplicated (and order violations) from
        the ids sent and the ids handled, in handling order."""
        wanted = set(sent)
        distinct = set(handled)
        self.sent = len(wanted)
        self.handled = len(handled)
        self.lost = len(wanted - distinct)
        self.duplicated = len(handled) - len(distinct)
        unexpected = distinct - wanted
        if unexpected:
            self.problems.append(
                f"{len(unexpected)} handled event(s) were never sent, e.g. {min(unexpected)}"
            )
        if order_of is not None:
            self.order_violations = order_violations(handled, order_of)

    def problem(self, text: str) -> None:
        self.problems.append(text)

    @property
    def passed(self) -> bool:
        return (
            not self.problems
            and self.lost == 0
            and (self.order_violations == 0 or not self.order_promised)
        )

    def reasons(self) -> list[str]:
        """Why the scenario failed (empty when it passed)."""
        reasons = []
        if self.lost:
            reasons.append(f"{self.lost} event(s) lost")
        if self.order_violations and self.order_promised:
            reasons.append(f"{self.order_violations} per-key order violation(s)")
        return reasons + self.problems


COLUMNS = ("scenario", "sent", "handled", "lost", "dup", "order", "faults", "secs", "result")


def table(outcomes: Sequence[Outcome]) -> str:
    """The outcomes as a plain-text table, then the reasons of each failure."""
    rows = [COLUMNS]
    for o in outcomes:
        order = str(o.order_violations) if o.order_promised else "-"
        rows.append(
            (
                o.name,
                str(o.sent),
                str(o.handled),
                str(o.lost),
                str(o.duplicated),
                order,
                str(o.faults),
                f"{o.seconds:.0f}",
                "PASS" if o.passed else "FAIL",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = []
    for n, row in enumerate(rows):
        cells = [
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths))
        ]
        lines.append("  ".join(cells))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    if any(not o.order_promised for o in outcomes):
        lines.append("(order -: the scenario promises no per-key order)")
    for o in outcomes:
        for reason in o.reasons():
            lines.append(f"FAIL {o.name}: {reason}")
        for note in o.notes:
            lines.append(f"note {o.name}: {note}")
    return "\n".join(lines)
