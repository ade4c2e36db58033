"""The observability path with OpenTelemetry blocked (run as a script by
test_correlation.py, not collected): ``python _untraced_path.py BOOTSTRAP
TOPIC GROUP TMPDIR BACKEND`` prints the contexts the handlers saw and the
outbox row's headers as JSON."""

from __future__ import annotations

import sys

sys.modules["opentelemetry"] = None  # type: ignore[assignment]  # as if not installed

import json  # noqa: E402
import sqlite3  # noqa: E402
from pathlib import Path  # noqa: E402

import anyio  # noqa: E402
import anyio.to_thread  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from _path import Seen, build, post  # noqa: E402

from anycqrs.brokers.kafka import KafkaEventConsumer, KafkaMessageBroker  # noqa: E402
from anycqrs.observability import _tracing  # noqa: E402


def _create_topic(bootstrap: str, topic: str) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, num_partitions=1)]).values():
        future.result(30)


async def main(bootstrap: str, topic: str, group: str, tmp: str) -> None:
    assert not _tracing.available()
    await anyio.to_thread.run_sync(_create_topic, bootstrap, topic)
    seen = Seen()
    parts = build(Path(tmp), topic, None, seen, lambda: None)
    response = await post(parts["app"], 5, "req-untraced")
    assert response.status_code == 200
    conn: sqlite3.Connection = parts["conn"]
    (headers,) = conn.execute("SELECT headers FROM anycqrs_outbox").fetchone()
    (message_id,) = conn.execute("SELECT message_id FROM anycqrs_outbox").fetchone()
    async with KafkaMessageBroker({"bootstrap.servers": bootstrap}) as broker:
        assert await parts["relay"](broker).publish_pending() == 1
    consumer = KafkaEventConsumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
        },
        [topic],
        parts["event_mediator"],
    )
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            await tg.start(consumer.run)
            await seen.finished.wait()
            tg.cancel_scope.cancel()
    print(
        json.dumps(
            {
                "row": {"message_id": message_id, "headers": json.loads(headers)},
                "seen": [
                    [where, None if c is None else [c.message_id, c.correlation_id, c.causation_id]]
                    for where, c in seen.contexts
                ],
            }
        )
    )


if __name__ == "__main__":
    bootstrap, topic, group, tmp, backend = sys.argv[1:6]
    anyio.run(main, bootstrap, topic, group, tmp, backend=backend)
