"""The recovering process of test_recovery_links_to_the_origin (a script, not
collected): ``python _recover.py DB BACKEND`` recovers the sagas in the SQLite
storage DB with its own TracerProvider and prints the spans and the contexts
the steps saw as JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

sys.path.insert(0, str(Path(__file__).parent))
from _recovery_saga import SEEN, saga_map

from anycqrs.saga.bootstrap import bootstrap
from anycqrs.saga.storage import SqliteSagaStorage


async def main(db: str) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    mediator = bootstrap(
        sagas_mapper=saga_map(), saga_storage=SqliteSagaStorage(db), tracer_provider=provider
    )
    recovered = await mediator.recover_pending(stale_after=0.0)
    spans = [
        {
            "name": s.name,
            "trace_id": format(s.context.trace_id, "032x"),
            "parent": format(s.parent.span_id, "016x") if s.parent else None,
            "links": [
                [format(link.context.trace_id, "032x"), format(link.context.span_id, "016x")]
                for link in s.links
            ],
            "attributes": dict(s.attributes or {}),
        }
        for s in exporter.get_finished_spans()
    ]
    seen = [[step, [c.message_id, c.correlation_id, c.causation_id]] for step, c in SEEN]
    print(json.dumps({"recovered": recovered, "spans": spans, "seen": seen}))


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], backend=sys.argv[2])
