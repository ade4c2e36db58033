"""Draw a trace waterfall (SVG, no plotting library) from exported spans.

The spans come from the Kafka test of `tests/observability/test_tracing.py`,
which writes them as JSON when `ANYCQRS_TRACE_SPANS_OUT` names a file:

    ANYCQRS_TRACE_SPANS_OUT=/tmp/spans.json python -m pytest \\
        tests/observability/test_tracing.py -k "kafka and asyncio"
    python docs/scripts/trace_waterfall.py /tmp/spans.json docs/img/trace-waterfall.svg

Rows are spans in tree order (a child under its parent, siblings by start
time), bars are drawn to scale on one time axis; each span kind has its
colour. Spans that only link to the trace (the relay's batch span) are drawn
where they ran, marked as linked.
"""

from __future__ import annotations

import json
import sys
from html import escape
from pathlib import Path
from typing import Any

COLOURS = {
    "SERVER": "#4c78a8",
    "INTERNAL": "#72b7b2",
    "PRODUCER": "#f58518",
    "CONSUMER": "#54a24b",
    "CLIENT": "#b279a2",
}
ROW, LABEL, WIDTH, TOP = 22, 330, 980, 40


def ordered(spans: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """Spans in tree order with their depth (roots first, by start time)."""
    ids = {span["span_id"] for span in spans}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for span in spans:
        parent = span["parent"] if span["parent"] in ids else None
        children.setdefault(parent, []).append(span)
    rows: list[tuple[int, dict[str, Any]]] = []

    def walk(parent: str | None, depth: int) -> None:
        for span in sorted(children.get(parent, []), key=lambda s: s["start"]):
            rows.append((depth, span))
            walk(span["span_id"], depth + 1)

    walk(None, 0)
    return rows


def _duration(ns: float) -> str:
    if ns >= 1e9:
        return f"{ns / 1e9:.2f} s"
    if ns >= 1e6:
        return f"{ns / 1e6:.1f} ms"
    return f"{ns / 1e3:.0f} µs"


def draw(spans: list[dict[str, Any]]) -> str:
    """The SVG text of the waterfall."""
    rows = ordered(spans)
    start = min(span["start"] for span in spans)
    end = max(span["end"] for span in spans)
    scale = (WIDTH - LABEL - 90) / max(end - start, 1)
    height = TOP + ROW * len(rows) + 40
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        'font-family="Helvetica, Arial, sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
        '<text x="10" y="22" font-size="14" font-weight="bold">One trace: HTTP request → '
        "command → outbox → relay → Kafka → consumer → handler → saga</text>",
    ]
    for index, (depth, span) in enumerate(rows):
        y = TOP + index * ROW
        x = LABEL + (span["start"] - start) * scale
        width = max((span["end"] - span["start"]) * scale, 1.5)
        colour = COLOURS.get(span["kind"], "#999999")
        linked = span["parent"] is None and depth == 0 and index > 0
        name = escape(span["name"]) + (" (linked)" if linked else "")
        if index % 2 == 0:
            out.append(f'<rect x="0" y="{y}" width="{WIDTH}" height="{ROW}" fill="#f4f4f4"/>')
        out.append(f'<text x="{10 + depth * 14}" y="{y + 15}">{name}</text>')
        out.append(
            f'<rect x="{x:.1f}" y="{y + 4}" width="{width:.1f}" height="{ROW - 8}" '
            f'rx="2" fill="{colour}"/>'
        )
        out.append(
            f'<text x="{x + width + 4:.1f}" y="{y + 15}" fill="#555">'
            f"{_duration(span['end'] - span['start'])}</text>"
        )
    legend_y = TOP + ROW * len(rows) + 22
    x = 10
    for kind, colour in COLOURS.items():
        out.append(f'<rect x="{x}" y="{legend_y - 10}" width="12" height="12" fill="{colour}"/>')
        out.append(f'<text x="{x + 16}" y="{legend_y}">{kind.lower()}</text>')
        x += 100
    out.append(
        f'<text x="{WIDTH - 10}" y="{legend_y}" text-anchor="end" fill="#555">'
        f"total {_duration(end - start)}</text>"
    )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> None:
    source, target = argv[1], argv[2]
    spans = json.loads(Path(source).read_text())
    Path(target).write_text(draw(spans))


if __name__ == "__main__":
    main(sys.argv)
