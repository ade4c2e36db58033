"""The engine behind `KafkaMessageBroker` and the consumer's dead-letter
producer, `KafkaProducerCore`.

One librdkafka `Producer` and one delivery-report thread that polls it. A
publish is a *batch*: its records are produced (in one worker-thread hop, or
inline on the event loop for a handful of records, since `produce` never
blocks) and the caller awaits one `anyio.Event`. The delivery thread
counts the reports of each batch and, after every `poll`, wakes the event
loop once for all the batches that finished (`anyio.from_thread.run_sync`
with the loop's token): one hop per poll, never one per message.

A batch too large to produce inline goes to a worker thread that serves
delivery reports itself while it produces, then flushes until the batch is
confirmed (no `linger.ms` wait: nothing more is coming). The delivery
thread stands down meanwhile, so the two don't trade the GIL per report.

A full local queue (`BufferError`) is backpressure: the producing thread
serves delivery reports until there is room again; nothing is dropped.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import count
from operator import attrgetter
from types import FunctionType
from typing import Any, Generic, TypeVar, cast

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
from confluent_kafka import KafkaError, KafkaException, Producer

from ...errors import BrokerDeliveryError, BrokerError
from ...observability._metrics import ProducerMetrics
from ._wire import Headers, Record

__all__ = ["Failure", "KafkaProducerCore", "record_id"]

logger = logging.getLogger("anycqrs.brokers.kafka")

T = TypeVar("T")

INLINE_RECORDS = 32
"""Batches up to this size are produced on the event loop (`produce` only
enqueues; a thread hop would cost more than the work)."""

ENCODE_RUN = 512
"""How many items `encode` gets at a time (one call for their ids' text,
not one per record)."""


def _header_text(headers: Headers | None, name: str) -> str | None:
    for key, value in headers or ():
        if key == name and value is not None:
            return value if isinstance(value, str) else value.decode(errors="replace")
    return None


def record_id(record: Record) -> str | None:
    """The `message_id` header of a record (how failures of raw records are named)."""
    return _header_text(record[3], "message_id")


class Failure:
    """One record of a batch that was not delivered."""

    __slots__ = ("code", "index", "reason")

    def __init__(self, index: int, reason: str, code: int | None) -> None:
        self.index = index
        """Its position in the batch."""
        self.reason = reason
        self.code = code
        """The `KafkaError` code, `None` when it never reached librdkafka."""


class _Batch:
    """Delivery bookkeeping of one publish (touched by the polling threads).

    Each record's delivery callback carries its position in the batch
    (librdkafka drops the headers of failed messages, so a report cannot be
    matched by its content): one function per batch, bound to the index
    (`reporter`).

    A delivered record takes no lock: it sets its byte of `_settled` and
    draws from `_reports` (each one step under the GIL); whoever draws the
    last number finishes the batch. Failures, rare, are recorded under
    `_lock`."""

    __slots__ = ("_done", "_lock", "_reports", "_settled", "event", "failures", "size")

    def __init__(self, size: int, done: deque[_Batch]) -> None:
        self._lock = threading.Lock()
        self._done = done
        self._settled = bytearray(size)  # 1 once a record's outcome is known
        self._reports = count(1)
        self.size = size
        self.failures: list[Failure] = []
        self.event = anyio.Event()

    @property
    def remaining(self) -> int:
        """How many records' outcome is still unknown."""
        return self.size - self._settled.count(1)

    def reporter(self) -> Callable[[int], Callable[[KafkaError | None, Any], None]]:
        """What makes record `index`'s delivery callback: `reporter()(index)`
        binds `index` to one function of the batch, a method object (a third
        of a `partial`'s cost, and one object fewer per record in flight)."""
        lock, failures, settled = self._lock, self.failures, self._settled
        reports, size, done = self._reports, self.size, self._done

        def report(index: int, err: KafkaError | None, _msg: Any) -> None:
            if err is not None:
                with lock:
                    failures.append(Failure(index, f"{err.name()}: {err.str()}", err.code()))
            settled[index] = 1
            if next(reports) == size:
                done.append(self)

        return cast(FunctionType, report).__get__

    def not_produced(self, start: int, stop: int, reason: str, code: int | None) -> bool:
        """Record `start..stop` as never handed to librdkafka; True when the
        batch is now complete."""
        with self._lock:
            self.failures.extend(Failure(i, reason, code) for i in range(start, stop))
        self._settled[start:stop] = b"\x01" * (stop - start)
        reports, size, last = self._reports, self.size, False
        for _ in range(start, stop):
            last = next(reports) == size or last
        return last

    def abandon(self, reason: str) -> None:
        """Fail every record whose outcome is still unknown."""
        with self._lock:
            settled = self._settled
            self.failures.extend(Failure(i, reason, None) for i, s in enumerate(settled) if not s)
            settled[:] = b"\x01" * len(settled)


class KafkaProducerCore(Generic[T]):
    """Produces items of type `T` (encoded by `encode`) and awaits their
    delivery reports. Used inside `async with`.

    Args:
        config: librdkafka configuration, passed through.
        encode: turns a run of items (at most `ENCODE_RUN`) into their
            `Record`s, in order; runs in the producing thread for large
            batches.
        identify: the message id of an item (names it in failures).
        flush_timeout: seconds the shielded flush on exit may take.
        poll_interval: seconds each delivery-thread `poll` may block.
        name: used in errors and the thread name.
        meter_provider: where sent messages, delivery failures and the
            queue depth are measured (default: the global provider, read
            at `start`).
    """

    def __init__(
        self,
        config: Mapping[str, Any],
        encode: Callable[[Sequence[T]], Iterable[Record]],
        identify: Callable[[T], str | None],
        *,
        flush_timeout: float = 30.0,
        poll_interval: float = 0.05,
        name: str = "kafka",
        meter_provider: Any = None,
    ) -> None:
        self._config = dict(config)
        self._encode = encode
        self._identify = identify
        self._flush_timeout = flush_timeout
        self._poll_interval = poll_interval
        self._name = name
        self._producer: Producer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._done: deque[_Batch] = deque()
        self._pending: set[_Batch] = set()
        self._producers = 0  # threads producing a large batch (they poll themselves)
        self._token: anyio.lowlevel.EventLoopToken | None = None
        self._meter_provider = meter_provider
        self._metrics: ProducerMetrics | None = None

    @property
    def running(self) -> bool:
        return self._producer is not None and not self._stopping.is_set()

    async def start(self) -> None:
        if self._producer is not None:
            raise BrokerError(f"{self._name} is already started")
        self._token = anyio.lowlevel.current_token()
        self._metrics = ProducerMetrics.create(self._meter_provider, "kafka")
        self._stopping.clear()
        try:
            self._producer = await anyio.to_thread.run_sync(Producer, self._config)
        except (KafkaException, ValueError, TypeError) as exc:
            raise BrokerError(f"Cannot create the Kafka producer: {exc}") from exc
        self._thread = threading.Thread(
            target=self._poll_loop, name=f"anycqrs-{self._name}-delivery", daemon=True
        )
        self._thread.start()

    async def stop(self) -> None:
        """Stop the delivery thread and flush, shielded, within `flush_timeout`.

        Batches still unconfirmed afterwards fail with `BrokerDeliveryError`.
        """
        producer, thread = self._producer, self._thread
        if producer is None:
            return
        with anyio.CancelScope(shield=True):
            self._stopping.set()
            if thread is not None:
                await anyio.to_thread.run_sync(thread.join)
            left = await anyio.to_thread.run_sync(producer.flush, self._flush_timeout)
            self._finish(self._drain())
            for batch in list(self._pending):
                batch.abandon("not delivered before shutdown")
                self._pending.discard(batch)
                batch.event.set()
            self._producer = None
            self._thread = None
        if left:
            logger.warning(
                "%s: %d message(s) still undelivered after a %.1fs flush",
                self._name,
                left,
                self._flush_timeout,
            )

    def _poll_loop(self) -> None:
        producer = self._producer
        assert producer is not None
        poll, stopping, done = producer.poll, self._stopping, self._done
        interval = self._poll_interval
        poll(0)  # serve what librdkafka logged while starting
        while not stopping.is_set():
            if self._producers:
                stopping.wait(0.005)
            else:
                poll(interval)
            if done:
                batches = self._drain()
                try:
                    anyio.from_thread.run_sync(self._finish, batches, token=self._token)
                except anyio.RunFinishedError:  # pragma: no cover - loop gone without stop()
                    return

    def _drain(self) -> list[_Batch]:
        done = self._done
        batches = []
        while done:
            batches.append(done.popleft())
        return batches

    def _finish(self, batches: list[_Batch]) -> None:
        for batch in batches:
            self._pending.discard(batch)
            batch.event.set()

    def _produce(self, batch: _Batch, items: Sequence[T], start: int, block: bool) -> int:
        """Produce `items[start:]`; returns where it stopped (`len(items)`
        unless `block` is false and the local queue filled up).

        Blocking (in a worker thread), it serves delivery reports itself as
        it goes, the way a plain producer loop does: cheaper than handing
        the GIL back and forth with the delivery thread, which stands down
        meanwhile."""
        producer = self._producer
        assert producer is not None
        produce, poll = producer.produce, producer.poll
        encode, report = self._encode, batch.reporter()
        i = start
        n = len(items)
        while i < n:
            for topic, value, key, headers in encode(items[i : i + ENCODE_RUN]):
                while True:
                    try:
                        # Positional: with keywords, the binding's argument
                        # parser builds and hashes a string per keyword name
                        # it looks up (≈ 1.5k instructions a record). Its
                        # order is (topic, value, key, partition, callback,
                        # on_delivery, timestamp, headers); -1 is any
                        # partition, 0 now.
                        produce(topic, value, key, -1, report(i), None, 0, headers)
                    except BufferError:
                        if not block:
                            return i
                        # Backpressure: serve delivery reports until there
                        # is room; the caller may give up meanwhile (nothing
                        # more is queued).
                        poll(0.01)
                        try:
                            anyio.from_thread.check_cancelled()
                        except BaseException:
                            if batch.not_produced(i, n, "cancelled before it was produced", None):
                                self._done.append(batch)
                            raise
                        continue
                    except (KafkaException, TypeError, ValueError) as exc:
                        code = exc.args[0].code() if isinstance(exc, KafkaException) else None
                        if batch.not_produced(i, i + 1, f"rejected by the client: {exc}", code):
                            self._done.append(batch)
                    break
                if block and not i & 7:
                    poll(0)
                i += 1
        return n

    def _produce_and_flush(self, batch: _Batch, items: Sequence[T], start: int) -> None:
        """Produce `items[start:]` in a worker thread, then flush until the
        batch is confirmed: the whole batch is queued, so waiting out
        `linger.ms` for more would only add latency. Returns early when the
        producer stops or the caller is cancelled (delivery is still awaited
        or flushed on exit)."""
        self._produce(batch, items, start, True)
        producer = self._producer
        assert producer is not None
        while batch.remaining and not self._stopping.is_set():
            producer.flush(self._poll_interval)
            anyio.from_thread.check_cancelled()

    async def produce(self, items: Sequence[T]) -> None:
        """Produce `items` in order and return once all were confirmed.

        Raises:
            BrokerDeliveryError: some were not delivered (the others were;
                `positions` says which failed).
            BrokerError: the producer is not running.
        """
        failures = await self.deliver(items)
        if failures:
            identify = self._identify
            raise BrokerDeliveryError(
                [(identify(items[f.index]), f.reason) for f in failures],
                len(items) - len(failures),
                what=self._name,
                positions=[f.index for f in failures],
            )

    async def deliver(self, items: Sequence[T]) -> list[Failure]:
        """Produce `items` in order, wait for every delivery report and
        return the failures, in batch order.

        Raises:
            BrokerError: the producer is not running.
        """
        if not items:
            return []
        if not self.running:
            raise BrokerError(f"{self._name} is not running; use `async with` around it")
        batch = _Batch(len(items), self._done)
        self._pending.add(batch)
        start = 0
        if len(items) <= INLINE_RECORDS:
            start = self._produce(batch, items, 0, block=False)
        if start < len(items):
            self._producers += 1
            try:
                await anyio.to_thread.run_sync(self._produce_and_flush, batch, items, start)
            finally:
                self._producers -= 1
        if batch.remaining == 0 and not batch.event.is_set():
            # Everything finished (or failed) before we waited: no wake-up is
            # needed, but the delivery thread may still report the batch.
            self._pending.discard(batch)
        else:
            await batch.event.wait()
        metrics = self._metrics
        if metrics is not None:
            producer = self._producer
            failed = len(batch.failures)
            metrics.delivered(len(items) - failed, failed, 0 if producer is None else len(producer))
        return sorted(batch.failures, key=_index)


_index = attrgetter("index")
