"""Poison and bad input among good events, with the dead-letter topic checked.

One consumer (a `KafkaEventConsumer` with a dead-letter topic) reads a topic
holding 300 good events and, between them, every kind of bad record:
malformed JSON, random bytes, an empty and a null value, a value over 1 MiB
and one just under librdkafka's 1,000,000-byte default, an unknown event
name, wrong payload types (a string, and the lenient conversions DESIGN.md
forbids: ``"42"``, ``1.9``, ``true`` for an ``int``), a 30-digit integer
(handled exactly or dead-lettered, never changed), garbage and non-UTF-8
headers, a non-UTF-8 key.

Every good event must be handled once. Every bad record must land in the
dead-letter topic with its original value and key and the ``anycqrs.error.*``
headers (a record too large for the DLQ may be truncated, marked so), and
never be handled as an event. Records that are valid events with odd headers
or keys may be handled or dead-lettered, but not lost; a dead-lettered
non-UTF-8 key must say it is about the key. The consumer must never crash
(a crash is restarted twice to show whether it crash-loops).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from anycqrs.brokers import Message
from anycqrs.brokers.kafka import encode_message

from .harness import (
    Child,
    Pool,
    Settings,
    Tansu,
    create_topic,
    lag,
    produce_raw,
    read_topic,
    unique,
    wait_until,
)
from .ledger import Outcome
from .model import handled, odd, order_of, tick

GOOD = 300
MIB = 1024 * 1024


@dataclass
class Bad:
    """One bad record: what it is, its value, key and headers, what must
    happen to it (``"dlq"`` or ``"either"``), and the ``n`` it would be
    recorded as if it were (wrongly) handled."""

    label: str
    value: bytes | None
    key: bytes | None
    headers: list[tuple[str, bytes]]
    expect: str = "dlq"
    as_n: int | None = None


def _event_json(n: Any, topic: str, name: str = "Tick") -> bytes:
    payload = Message.from_event(tick(0, topic)).payload
    payload["payload"]["n"] = n
    payload["event_name"] = name
    return json.dumps(payload).encode()


def bad_records(topic: str, rng: Any) -> list[Bad]:
    tick_header = [("event_name", b"Tick")]
    return [
        Bad("malformed-json", b'{"event_name": "Tick", "payload": {"n": ', b"p", tick_header),
        Bad("random-bytes", rng.randbytes(256), b"p", []),
        Bad("empty-value", b"", b"p", tick_header),
        Bad("null-value", None, b"p", tick_header),
        Bad(
            "unknown-event-name",
            _event_json(1, topic, "NoSuchEvent"),
            b"p",
            [("event_name", b"NoSuchEvent")],
        ),
        Bad("wrong-type-str", _event_json("not a number", topic), b"p", tick_header),
        Bad("wrong-type-list", _event_json([1, 2], topic), b"p", tick_header),
        Bad("lenient-str-int", _event_json("100042", topic), b"p", tick_header, as_n=100042),
        Bad("lenient-float", _event_json(100019.9, topic), b"p", tick_header, as_n=100019),
        Bad("lenient-bool", _event_json(True, topic), b"p", tick_header, as_n=1),
        Bad("huge-int", _event_json(10**30, topic), b"p", tick_header, "either", as_n=10**30),
        Bad(
            "garbage-headers",
            _event_json(100050, topic),
            b"p",
            [*tick_header, ("x-junk", rng.randbytes(32)), ("x-\u00e9", b"\xff\xfe\x00")],
            expect="either",
            as_n=100050,
        ),
        Bad(
            "non-utf8-event-name-header",
            _event_json(100051, topic),
            b"p",
            [("event_name", b"\xff\xfeTick")],
            expect="either",
            as_n=100051,
        ),
        Bad(
            "non-utf8-key",
            _event_json(100052, topic),
            b"\xff\xfe\xfd",
            tick_header,
            expect="either",
            as_n=100052,
        ),
        # last, so that a consumer that crashes on them has checked the rest
        Bad("oversize-value", b"x" * (MIB + 1), b"p", tick_header),
        Bad("near-limit-value", b"y" * 999_700, b"p", tick_header),
    ]


def scenario(settings: Settings) -> Outcome:
    outcome = Outcome("kafka-poison")
    rng = settings.rng(outcome.name)
    ledger = str(settings.workdir / "poison.ledger")
    with Tansu() as tansu:
        topic, dlq, group = f"faults-{unique()}", f"faults-dlq-{unique()}", f"faults-g-{unique()}"
        limit = str(4 * MIB)
        create_topic(tansu.bootstrap, topic, 2, **{"max.message.bytes": limit})
        create_topic(tansu.bootstrap, dlq, 1)
        bad = bad_records(topic, rng)
        good = [
            encode_message(Message.from_event(tick(n, topic))) for n in range(1000, 1000 + GOOD)
        ]
        records: list[tuple[str, Any, Any, Any]] = []
        every = GOOD // len(bad)
        for i, record in enumerate(good):
            records.append(record)
            if i % every == every - 1 and i // every < len(bad):
                b = bad[i // every]
                records.append(
                    (topic, b.value, b.key, [*b.headers, ("faults.label", b.label.encode())])
                )
        errors = produce_raw(tansu.bootstrap, records, **{"message.max.bytes": 4 * MIB})
        if errors:
            outcome.problem(f"could not produce the input: {errors[:2]}")

        def spawn(generation: int) -> Child:
            return Child(
                settings.workdir,
                f"poison-consumer-{generation}",
                "kafka_group",
                "consume",
                backend=("trio", "asyncio")[generation % 2],
                bootstrap=tansu.bootstrap,
                topic=topic,
                group=group,
                ledger=ledger,
                dlq=dlq,
            )

        pool = Pool(spawn, 1)
        wanted = set(range(1000, 1000 + GOOD))

        def done() -> bool:
            pool.replace_crashed(limit=2)
            if len(pool.crashes) > 2:
                return True
            return wanted <= set(handled(ledger)) and lag(tansu.bootstrap, group, topic, 2) == 0

        started = time.monotonic()
        try:
            if not wait_until(done, 60, 0.5):
                outcome.problem("the consumer did not handle and commit every record within 60 s")
            pool.replace_crashed(limit=2)
            crashed = list(pool.crashes)
        finally:
            pool.stop()
        outcome.faults = len(bad)
        if crashed:
            outcome.problem(f"the consumer crashed {len(crashed)} time(s); first: {crashed[0]}")
        dead = read_topic(tansu.bootstrap, dlq, 1)
        seen = handled(ledger)
        for value in odd(ledger):
            outcome.problem(f"an event was handled with a payload of the wrong type: n={value}")
        outcome.notes.append(
            f"drained in {time.monotonic() - started:.0f} s, {len(dead)} dead letters"
        )
    check_dead_letters(outcome, bad, dead, seen, wanted, stuck=bool(crashed))
    return outcome


def check_dead_letters(
    outcome: Outcome,
    bad: list[Bad],
    dead: list[Any],
    seen: list[int],
    wanted: set[int],
    stuck: bool = False,
) -> None:
    """Account for every record: good ones handled, bad ones dead-lettered
    intact (or, where allowed, handled) and never both lost."""
    by_label: dict[str, list[Any]] = {}
    for msg in dead:
        headers = dict(msg.headers() or [])
        label = headers.get("faults.label")
        if label is None:
            outcome.problem(
                f"a good event was dead-lettered: {headers.get('anycqrs.error.message')!r}"
            )
            continue
        by_label.setdefault(label.decode(), []).append(msg)
    seen_set = set(seen)
    changed = seen_set - wanted - {b.as_n for b in bad}
    if changed:
        outcome.problem(f"events handled with values never sent (changed in decoding?): {changed}")
    accounted = []
    for number, b in enumerate(bad):
        ident = 10**6 + number
        letters = by_label.get(b.label, [])
        was_handled = b.as_n is not None and b.as_n in seen_set
        if was_handled and b.expect == "dlq":
            outcome.problem(f"{b.label}: handled as event n={b.as_n} instead of dead-lettered")
            accounted.append(ident)
            continue
        if letters:
            accounted.append(ident)
            _check_letter(outcome, b, letters[0])
        elif was_handled:
            accounted.append(ident)
        else:
            behind = " (its partition may be stuck behind the crash)" if stuck else ""
            if changed and b.as_n is not None:
                behind = " with its own value (see the changed values)"
            outcome.problem(f"{b.label}: neither dead-lettered nor handled{behind}")
    good_seen = [n for n in seen if n in wanted]
    outcome.tally(
        list(wanted) + [10**6 + i for i in range(len(bad))], good_seen + accounted, order_of
    )


def _check_letter(outcome: Outcome, b: Bad, msg: Any) -> None:
    headers = dict(msg.headers() or [])
    error = (headers.get("anycqrs.error.message") or b"").decode(errors="replace")
    if "anycqrs.error.type" not in headers:
        outcome.problem(f"{b.label}: dead letter without anycqrs.error.type")
    if msg.key() != b.key:
        outcome.problem(f"{b.label}: dead letter key {msg.key()!r} != {b.key!r}")
    value = msg.value()
    if value != b.value and not (b.value is None and value in (None, b"")):
        marked = any("trunc" in name or b"trunc" in (v or b"") for name, v in headers.items())
        if not marked:
            outcome.problem(f"{b.label}: dead letter value changed and not marked truncated")
    if b.label == "non-utf8-key" and "key" not in error.lower():
        outcome.problem(f"non-utf8-key: a valid event dead-lettered with {error[:120]!r}")
