"""Machine facts, the JSON document, and the stdout table (rich if installed)."""

from __future__ import annotations

import datetime
import os
import platform
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import Any

from ._harness import COLUMNS, Settings, WorkloadResult

PACKAGES = (
    "anycqrs",
    "anyio",
    "trio",
    "attrs",
    "cattrs",
    "lagom",
    "orjson",
    "confluent-kafka",
    "psycopg",
    "python-cqrs",
    "faststream",
    "di",
    "dataclass-wizard",
)

HEADERS = {
    "asyncio": "anycqrs asyncio",
    "trio": "anycqrs trio",
    "python-cqrs": "python-cqrs 5.3",
    "peer": "other library",
    "baseline": "raw baseline",
}


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        if name == "anycqrs":
            try:
                import anycqrs

                return str(anycqrs.__version__) + " (source tree)"
            except ImportError:
                return None
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine_facts() -> dict[str, Any]:
    """Python, packages and machine, for the report."""
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "loadavg_start": _load(),
        "packages": {name: _version(name) for name in PACKAGES},
    }


def document(
    results: Sequence[WorkloadResult], settings: Settings, meta: dict[str, Any]
) -> dict[str, Any]:
    """The ``--json`` document."""
    by_name = {r.workload.name: r for r in results}
    meta = dict(meta, loadavg_end=_load())
    return {
        "schema": 1,
        "meta": meta,
        "settings": {
            "rounds": settings.rounds,
            "round_seconds": settings.round_seconds,
            "quick": settings.quick,
        },
        "columns": list(COLUMNS),
        "workloads": [r.as_dict(by_name) for r in results],
    }


def _fmt_us(value: float) -> str:
    if value >= 1000:
        return f"{value / 1000:.2f} ms"
    if value >= 100:
        return f"{value:.0f} µs"
    if value >= 10:
        return f"{value:.1f} µs"
    return f"{value:.2f} µs"


def _fmt_rate(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:.2f}M/s"
    if value >= 1e3:
        return f"{value / 1e3:.1f}k/s"
    return f"{value:.0f}/s"


def cell(impl: dict[str, Any] | None, *, per_item: bool = False) -> str:
    """``median (min–max)`` µs/op and ops/s, or ``n/a``."""
    if impl is None:
        return "–"
    if impl["status"] != "ok":
        return "n/a" if impl["status"] == "n/a" else "error"
    if per_item and "median_us_per_item" in impl:
        return (
            f"{_fmt_us(impl['median_us'])} ({_fmt_us(impl['median_us_per_item'])}/item)\n"
            f"{_fmt_us(impl['min_us'])}–{_fmt_us(impl['max_us'])}, "
            f"{_fmt_rate(impl['items_per_s'])} items"
        )
    return (
        f"{_fmt_us(impl['median_us'])}\n"
        f"{_fmt_us(impl['min_us'])}–{_fmt_us(impl['max_us'])}, {_fmt_rate(impl['ops_per_s'])}"
    )


def ratio_cell(wl: dict[str, Any]) -> str:
    parts = []
    ratios = wl["ratios"]
    if "python-cqrs/asyncio" in ratios:
        parts.append(f"×{ratios['python-cqrs/asyncio']['median']:.1f} asyncio")
    if "python-cqrs/trio" in ratios:
        parts.append(f"×{ratios['python-cqrs/trio']['median']:.1f} trio")
    for key in ("peer/asyncio", "peer/trio"):
        if key in ratios:
            parts.append(f"×{ratios[key]['median']:.1f} peer ({key.split('/')[1]})")
    if "trio/asyncio" in ratios:
        parts.append(f"trio/asyncio {ratios['trio/asyncio']['median']:.2f}")
    return "\n".join(parts) or "–"


def target_cell(wl: dict[str, Any]) -> str:
    lines = []
    for t in wl["targets"]:
        mark = {True: "✓", False: "✗", None: "?"}[t["ok"]]
        measured = "n/a" if t["measured"] is None else f"{t['measured']:g}"
        lines.append(f"{mark} {t['target']} ({measured})")
    return "\n".join(lines) or "–"


def _used_columns(doc: dict[str, Any]) -> list[str]:
    return [c for c in doc["columns"] if any(c in wl["impls"] for wl in doc["workloads"])]


def print_table(doc: dict[str, Any], *, use_rich: bool | None = None) -> None:
    """Print the results table (rich if available and wanted, else plain)."""
    if use_rich is None:
        try:
            import rich  # noqa: F401

            use_rich = True
        except ImportError:
            use_rich = False
    columns = _used_columns(doc)
    meta = doc["meta"]
    title = (
        f"anycqrs benchmarks — {meta['date']} — Python {meta['python']} — "
        f"{meta['cpu']} ({meta['cpu_count']} CPUs) — rounds {doc['settings']['rounds']}"
        + (" (quick)" if doc["settings"]["quick"] else "")
    )
    versions = ", ".join(f"{k} {v}" for k, v in meta["packages"].items() if v)
    rows = []
    for wl in doc["workloads"]:
        if wl["status"] != "ok":
            rows.append([wl["name"], *["n/a" for _ in columns], f"n/a: {wl['reason']}", ""])
            continue
        rows.append(
            [
                wl["name"],
                *[cell(wl["impls"].get(c), per_item=wl["items_per_op"] > 1) for c in columns],
                ratio_cell(wl),
                target_cell(wl),
            ]
        )
    headers = ["workload", *[HEADERS[c] for c in columns], "speed-up / ratio", "targets"]
    if use_rich:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title, caption=versions, show_lines=True)
        for header in headers:
            table.add_column(header, overflow="fold")
        for row in rows:
            table.add_row(*row)
        Console(width=max(160, Console().width)).print(table)
    else:
        print(title)
        print(versions)
        for row in rows:
            print("-" * 100)
            for header, value in zip(headers, row):
                if value:
                    print(f"  {header:>18}: " + value.replace("\n", "\n" + " " * 22))
    na = [
        (wl["name"], key, impl.get("reason"))
        for wl in doc["workloads"]
        for key, impl in wl["impls"].items()
        if impl["status"] != "ok"
    ]
    for name, key, reason in na:
        print(f"n/a {name} [{key}]: {reason}")


def _md_cell(impl: dict[str, Any] | None, items: int) -> str:
    if impl is None:
        return "–"
    if impl["status"] != "ok":
        return "n/a"
    text = f"{_fmt_us(impl['median_us'])} ({_fmt_us(impl['min_us'])}–{_fmt_us(impl['max_us'])})"
    if items > 1:
        text += f"<br>{_fmt_us(impl['median_us_per_item'])}/item, {_fmt_rate(impl['items_per_s'])}"
    else:
        text += f"<br>{_fmt_rate(impl['ops_per_s'])}"
    return text


def markdown(doc: dict[str, Any]) -> str:
    """The results as a Markdown table (for ``docs/benchmarks.md``)."""
    columns = _used_columns(doc)
    lines = [
        "| workload | " + " | ".join(HEADERS[c] for c in columns) + " | python-cqrs ÷ anycqrs"
        " (median of rounds) | trio ÷ asyncio | targets |",
        "|---" * (len(columns) + 4) + "|",
    ]
    for wl in doc["workloads"]:
        if wl["status"] != "ok":
            lines.append(
                f"| `{wl['name']}` | "
                + " | ".join("n/a" for _ in columns)
                + f" | {wl['reason']} | | |"
            )
            continue
        ratios = wl["ratios"]
        speed = " / ".join(
            f"×{ratios[k]['median']:.1f} {k.split('/')[1]}"
            + (" (÷ other library)" if k.startswith("peer/") else "")
            for k in ("python-cqrs/asyncio", "python-cqrs/trio", "peer/asyncio", "peer/trio")
            if k in ratios
        )
        trio = f"{ratios['trio/asyncio']['median']:.2f}" if "trio/asyncio" in ratios else "–"
        targets = "<br>".join(
            f"{ {True: '✅', False: '❌', None: '–'}[t['ok']] } {t['target']}"
            + ("" if t["measured"] is None else f" ({t['measured']:g})")
            for t in wl["targets"]
        )
        cells = " | ".join(_md_cell(wl["impls"].get(c), wl["items_per_op"]) for c in columns)
        lines.append(f"| `{wl['name']}` | {cells} | {speed or '–'} | {trio} | {targets or '–'} |")
    return "\n".join(lines) + "\n"
