"""The relay: claims due outbox rows, publishes them, records the outcome."""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import anyio
import anyio.abc
import attrs

from .._persistence import in_thread, utcnow
from .._retry import RetryPolicy
from ..brokers import Message, MessageBroker
from ..brokers._message import publish_many, publishes_batches
from ..observability import _propagation, _tracing
from ..observability._health import ConsumerProbe, HealthCheck
from ._model import DEFAULT_RETRY, OutboxRecord, OutboxSettlement
from ._protocols import OutboxStore

__all__ = ["OutboxRelay"]

logger = logging.getLogger("anycqrs.outbox")


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__qualname__}: {exc}"
    return text if len(text) <= 2000 else text[:1997] + "..."


@attrs.frozen
class _Batch:
    """A claimed batch, decoded in the worker thread."""

    records: Sequence[OutboxRecord]
    messages: Sequence[tuple[OutboxRecord, Message]]
    undecodable: Sequence[tuple[int, str]]


class OutboxRelay:
    """Publishes outbox rows to a message broker: at least once, in id order,
    with retries, backoff and dead-lettering.

    Each batch costs two worker-thread hops: one claims (and decodes) up to
    ``batch_size`` due rows, one records the outcome. Between them the batch
    is published at once (one ``send_many`` call where the broker has it). If
    that fails, it is sent again message by message so one rejected message
    holds back nobody (with ``send_many`` brokers, messages the failed batch
    delivered may then be delivered twice: consumers deduplicate on
    ``message_id``).

    Retries follow the one `anycqrs.RetryPolicy`: after a row's *n*-th failed
    attempt it is due again in ``retry.delay_before(n)`` seconds (backoff and
    jitter; the wait is the row's ``next_attempt_at``, so it survives
    restarts). A row is dead-lettered (status ``dead``, row and ``last_error``
    kept) when the policy gives up: after ``retry.attempts`` attempts
    (``None``: never), or at once for an error outside ``retry.retry_on``.
    A row that can't be decoded is dead-lettered at once and never blocks
    the others.

    Cancellation: the batch in flight is finished (publish bounded by
    ``publish_timeout``, outcome written under a shielded scope bounded by
    ``settle_timeout``), so a graceful stop neither loses nor re-sends it.

    Args:
        store: the relay side of an outbox (`SqliteOutboxStore`,
            `PostgresOutboxStore` or your own `OutboxStore`).
        broker: any `anycqrs.brokers.MessageBroker`.
        batch_size: rows claimed per batch.
        retry: attempts, backoff and retryable errors of one row (default:
            10 attempts, 1 s doubling up to 5 minutes).
        max_attempts: attempts before a row is dead-lettered; when given it
            replaces ``retry.attempts``.
        poll_interval: seconds `run` waits when nothing is due.
        lease: seconds a claim lasts; must exceed ``publish_timeout`` (a
            relay that dies leaves its rows to others after the lease).
        publish_timeout: bound of one batch's publish; unsent messages of a
            batch that times out count as failed.
        settle_timeout: bound of writing a batch's outcome after cancellation.
        clock: the current time (aware UTC); injectable for tests.
        limiter: thread limiter for the blocking store calls (default: anyio's).
        stalled_after: seconds without a finished pass or batch before
            `health()` says not live (`None`: never).

    `health()` (an `anycqrs.observability.HealthCheck`) is not ready while
    the relay is not running, its store cannot be queried, or its last batch
    could not publish anything (the broker is down); its backlog's age is
    `anycqrs.observability.OutboxMonitor`'s job.
        tracer_provider: an OpenTelemetry `TracerProvider` for the
            `outbox publish` span of each batch (linked to each row's
            creation context; default: the global one, read now; none set:
            no span).

    Example:
        ```python
        relay = OutboxRelay(SqliteOutboxStore("app.db"), broker, batch_size=200)
        async with anyio.create_task_group() as tg:
            await tg.start(relay.run)
            ...
            tg.cancel_scope.cancel()  # graceful: the batch in flight finishes
        ```
    """

    __slots__ = (
        "_batch_size",
        "_broker",
        "_broker_down",
        "_clock",
        "_lease",
        "_limiter",
        "_poll_interval",
        "_probe",
        "_publish_timeout",
        "_retry",
        "_settle_timeout",
        "_store",
        "_token",
        "_tracer",
        "_wakeup",
    )

    def __init__(
        self,
        store: OutboxStore,
        broker: MessageBroker,
        *,
        batch_size: int = 100,
        retry: RetryPolicy | None = None,
        max_attempts: int | None = None,
        poll_interval: float = 1.0,
        lease: float = 120.0,
        publish_timeout: float = 60.0,
        settle_timeout: float = 10.0,
        clock: Callable[[], datetime] = utcnow,
        limiter: anyio.CapacityLimiter | None = None,
        stalled_after: float | None = 300.0,
        tracer_provider: Any = None,
    ) -> None:
        self._tracer = _tracing.tracer(tracer_provider)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        policy = DEFAULT_RETRY if retry is None else retry
        if max_attempts is not None:
            if isinstance(max_attempts, bool) or not isinstance(max_attempts, int):
                raise TypeError(f"max_attempts must be an int, got {max_attempts!r}")
            if max_attempts < 1:
                raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
            policy = attrs.evolve(policy, attempts=max_attempts)
        if poll_interval < 0 or publish_timeout <= 0 or settle_timeout <= 0:
            raise ValueError("poll_interval must be >= 0 and the timeouts > 0")
        if lease <= publish_timeout:
            raise ValueError(
                f"lease ({lease}s) must exceed publish_timeout ({publish_timeout}s), "
                "or another relay could claim a batch that is still being published"
            )
        self._store = store
        self._broker = broker
        self._batch_size = batch_size
        self._retry = policy
        self._poll_interval = poll_interval
        self._lease = lease
        self._publish_timeout = publish_timeout
        self._settle_timeout = settle_timeout
        self._clock = clock
        self._limiter = limiter
        self._token = f"relay-{uuid.uuid4().hex}"
        self._wakeup: anyio.Event | None = None
        self._probe = ConsumerProbe(
            f"OutboxRelay({type(store).__name__})",
            stalled_after=stalled_after,
            unassigned_after=None,
        )
        self._broker_down: str | None = None

    @property
    def store(self) -> OutboxStore:
        """Where the relay reads from."""
        return self._store

    @property
    def broker(self) -> MessageBroker:
        """Where the relay publishes."""
        return self._broker

    @property
    def retry(self) -> RetryPolicy:
        """How failed rows are retried (``max_attempts`` applied)."""
        return self._retry

    def health(self) -> HealthCheck:
        """The relay's health now (see the class docs): a cheap read."""
        return self._probe.check()

    def wake(self) -> None:
        """Cut the current idle wait of `run` short (call it from the
        event loop after committing new rows for lower latency)."""
        if self._wakeup is not None:
            self._wakeup.set()

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Relay until cancelled.

        Creates the schema if missing, reports readiness (start it with
        ``await task_group.start(relay.run)``), then publishes what is due and
        waits ``poll_interval`` (or until `wake`) whenever nothing is left.
        Store errors (e.g. a lost database connection) are logged and retried
        after ``poll_interval``; the relay keeps running.
        """
        await in_thread(self._store.ensure_schema, limiter=self._limiter)
        probe = self._probe
        probe.started()
        task_status.started()
        try:
            while True:
                wakeup = self._wakeup = anyio.Event()
                try:
                    busy = await self._drain(None)
                except Exception as error:
                    logger.exception(
                        "Outbox relay pass failed; retrying in %ss", self._poll_interval
                    )
                    probe.disconnected(f"outbox store: {_describe(error)}")
                    busy = False
                else:
                    if self._broker_down is None:
                        probe.connected()
                    else:
                        probe.disconnected(f"publishing failed: {self._broker_down}")
                probe.polled()
                if not busy:
                    with anyio.move_on_after(self._poll_interval):
                        await wakeup.wait()
        finally:
            probe.stopped()

    async def publish_pending(self, limit: int | None = None) -> int:
        """Publish what is due now, in batches, and return how many messages
        were sent.

        Stops when a batch comes back short or not fully published (failed rows
        wait for their backoff), or after ``limit`` rows were handled.
        """
        sent, _ = await self._drain_counted(limit)
        return sent

    async def _drain(self, limit: int | None) -> bool:
        _, busy = await self._drain_counted(limit)
        return busy

    async def _drain_counted(self, limit: int | None) -> tuple[int, bool]:
        remaining = math.inf if limit is None else limit
        sent_total = 0
        while remaining > 0:
            size = int(min(self._batch_size, remaining))
            claimed, sent = await self._one_batch(size)
            sent_total += sent
            remaining -= claimed
            if claimed < size or sent < claimed:
                return sent_total, False
        return sent_total, True

    def _claim(self, limit: int) -> _Batch:
        records = self._store.claim(
            limit=limit, now=self._clock(), lease=self._lease, token=self._token
        )
        messages: list[tuple[OutboxRecord, Message]] = []
        undecodable: list[tuple[int, str]] = []
        for record in records:
            try:
                messages.append((record, record.to_message()))
            except Exception as exc:  # noqa: BLE001 - a bad row is dead-lettered
                undecodable.append((record.id, f"undecodable row: {_describe(exc)}"))
        return _Batch(records, messages, undecodable)

    async def _one_batch(self, limit: int) -> tuple[int, int]:
        batch = await in_thread(self._claim, limit, limiter=self._limiter)
        if not batch.records:
            return 0, 0
        for row_id, error in batch.undecodable:
            logger.error("Outbox row %s dead-lettered: %s", row_id, error)
        # The batch is claimed: finish it even if we are cancelled meanwhile,
        # within publish_timeout (one shielded scope with a deadline).
        messages = [message for _, message in batch.messages]
        errors: dict[int, Exception] = {}
        progress = [0]
        deadline = anyio.current_time() + self._publish_timeout
        with anyio.CancelScope(shield=True, deadline=deadline) as scope:
            if self._tracer is None:
                await self._publish(messages, errors, progress)
            else:
                await self._traced_publish(messages, errors, progress)
        if scope.cancelled_caught:
            timeout = TimeoutError(f"publish did not finish within {self._publish_timeout}s")
            errors.update({index: timeout for index in range(progress[0], len(messages))})
        settlement = self._settlement(batch, errors)
        with anyio.CancelScope(shield=True), anyio.fail_after(self._settle_timeout):
            await in_thread(self._settle, settlement, limiter=self._limiter)
        if settlement.sent:
            self._broker_down = None
        elif errors:
            self._broker_down = _describe(next(iter(errors.values())))
        self._probe.polled()
        return len(batch.records), len(settlement.sent)

    def _settle(self, settlement: OutboxSettlement) -> None:
        self._store.settle(self._token, settlement, now=self._clock())

    def _settlement(self, batch: _Batch, errors: dict[int, Exception]) -> OutboxSettlement:
        now = self._clock()
        policy = self._retry
        sent: list[int] = []
        retry: list[tuple[int, datetime, str]] = []
        dead = list(batch.undecodable)
        for index, (record, message) in enumerate(batch.messages):
            exc = errors.get(index)
            if exc is None:
                sent.append(record.id)
                continue
            failures = record.attempts + 1
            error = _describe(exc)
            if not policy.should_retry(exc, failures):
                logger.error(
                    "Outbox message %s (%s) dead-lettered after %d attempts: %s",
                    message.message_id,
                    message.message_name,
                    failures,
                    error,
                )
                dead.append((record.id, error))
            else:
                logger.debug(
                    "Publishing outbox message %s (%s) failed (attempt %d of %s): %s",
                    message.message_id,
                    message.message_name,
                    failures,
                    "unlimited" if policy.attempts is None else policy.attempts,
                    error,
                )
                due = now + timedelta(seconds=policy.delay_before(failures))
                retry.append((record.id, due, error))
        if retry or dead:
            first = retry[0][2] if retry else dead[0][1]
            logger.warning(
                "Outbox relay: %d of %d message(s) not published (%d to retry, %d dead-lettered, "
                "%d sent); first error: %s",
                len(retry) + len(dead),
                len(batch.records),
                len(retry),
                len(dead),
                len(sent),
                first,
            )
        return OutboxSettlement(sent=sent, retry=retry, dead=dead)

    async def _traced_publish(
        self, messages: Sequence[Message], errors: dict[int, Exception], progress: list[int]
    ) -> None:
        """`_publish` inside the batch's `publish` span, linked to each row's
        creation context (the broker's `send` spans are its children's
        peers: each is a child of its row's creation context)."""
        attributes = {
            "messaging.system": "outbox",
            "messaging.operation.type": "send",
            "messaging.operation.name": "publish",
            "messaging.batch.message_count": len(messages),
        }
        links = [_tracing.link(_propagation.extract(message.headers)) for message in messages]
        with _tracing.span(
            self._tracer, "outbox publish", _tracing.PRODUCER, attributes, links=links
        ) as span:
            await self._publish(messages, errors, progress)
            if errors:
                span.set_attribute("anycqrs.outbox.failed", len(errors))

    async def _publish(
        self, messages: Sequence[Message], errors: dict[int, Exception], progress: list[int]
    ) -> None:
        """Publish ``messages``, recording ``{index: error}`` for those that
        failed and in ``progress[0]`` how many were attempted (for timeouts)."""
        broker = self._broker
        if len(messages) > 1 and publishes_batches(broker):
            try:
                await publish_many(broker, messages)
            except Exception as exc:  # noqa: BLE001 - isolated below
                logger.warning(
                    "Batch publish of %d outbox messages failed (%s); retrying one by one",
                    len(messages),
                    _describe(exc),
                )
            else:
                progress[0] = len(messages)
                return
        for index, message in enumerate(messages):
            try:
                await broker.send_message(message)
            except Exception as exc:  # noqa: BLE001 - recorded on the row
                errors[index] = exc
            progress[0] = index + 1
