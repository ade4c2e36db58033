"""Plot ops/s per workload for anycqrs-asyncio, anycqrs-trio and python-cqrs.

Usage::

    python -m benchmarks --json results.json
    python benchmarks/plot.py results.json docs/img/bench.svg

Horizontal bars on a log scale (the workloads span four orders of
magnitude), one group per workload, with the speed-up over python-cqrs
printed next to the anycqrs-asyncio bar. Needs matplotlib (installed by the
``bench`` nox session). The output format follows the file extension
(``.svg`` or ``.png``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

SERIES = (
    ("asyncio", "anycqrs (asyncio)", "#1f77b4"),
    ("trio", "anycqrs (trio)", "#2ca02c"),
    ("python-cqrs", "python-cqrs 5.3 (asyncio)", "#d62728"),
    ("peer", "other library (Kafka consume: FastStream, confluent, batch)", "#ff7f0e"),
    ("baseline", "raw baseline (Kafka: plain confluent-kafka)", "#7f7f7f"),
)


def _rate(impl: dict[str, Any] | None) -> float | None:
    if not impl or impl.get("status") != "ok":
        return None
    return float(impl.get("items_per_s", impl["ops_per_s"]))


def plot(doc: dict[str, Any], out: Path, *, include_bounds: bool = False) -> Path:
    """Draw ``doc`` (the ``--json`` document) into ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = [
        wl
        for wl in doc["workloads"]
        if wl["status"] == "ok"
        and any(_rate(wl["impls"].get(key)) for key, _, _ in SERIES)
        and (include_bounds or not wl["name"].startswith("bound/"))
        and "/latency-" not in wl["name"]  # percentiles, not rates
    ]
    series = [s for s in SERIES if any(_rate(wl["impls"].get(s[0])) for wl in workloads)]
    height = 0.8 / max(len(series), 1)
    fig, ax = plt.subplots(figsize=(11, 0.4 * len(workloads) + 1.6))
    for index, (key, label, color) in enumerate(series):
        ys, xs = [], []
        for row, wl in enumerate(workloads):
            rate = _rate(wl["impls"].get(key))
            if rate:
                ys.append(row + (index - (len(series) - 1) / 2) * height)
                xs.append(rate)
        ax.barh(ys, xs, height=height, label=label, color=color)
    for row, wl in enumerate(workloads):
        ratio = wl["ratios"].get("python-cqrs/asyncio")
        rate = _rate(wl["impls"].get("asyncio"))
        if ratio and rate:
            y = row + (0 - (len(series) - 1) / 2) * height
            ax.text(rate * 1.08, y, f"×{ratio['median']:.1f}", va="center", fontsize=7)
    names = [wl["name"] + (" (items/s)" if wl["items_per_op"] > 1 else "") for wl in workloads]
    ax.set_yticks(range(len(workloads)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("operations per second (log scale; higher is better)")
    meta = doc["meta"]
    pycqrs = meta["packages"].get("python-cqrs") or "not installed"
    ax.set_title(
        f"anycqrs {meta['packages'].get('anycqrs')} vs python-cqrs {pycqrs} — "
        f"Python {meta['python']}, {meta['cpu']} ({meta['cpu_count']} CPUs), {meta['date'][:10]}",
        fontsize=9,
    )
    ax.grid(axis="x", which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="the --json output of python -m benchmarks")
    parser.add_argument("out", type=Path, nargs="?", default=Path("docs/img/bench.svg"))
    parser.add_argument("--bounds", action="store_true", help="also plot the lower bounds")
    args = parser.parse_args(argv)
    doc = json.loads(args.results.read_text(encoding="utf-8"))
    print(plot(doc, args.out, include_bounds=args.bounds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
