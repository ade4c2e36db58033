"""(Re)connecting to RabbitMQ on the one `anycqrs.RetryPolicy`.

The producer and the consumer open their first connection, and replace a
lost one, with `reconnect`, which runs `anycqrs._retry.retry_call` (the one
retry loop) with a WARNING log line per retry. The failed connection counts
as the policy's first attempt: `RetryPolicy(attempts=9)` makes up to eight
reconnect attempts, `attempts=None` reconnects forever. Bad credentials and a
forbidden vhost are never retried.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Awaitable, Callable

import anyio
import pika.exceptions

from ..._retry import RetryPolicy, Sleep, retry_call
from ...errors import BrokerError, ConnectionLost

__all__ = ["CONSUMER_RECONNECT", "PRODUCER_RECONNECT", "ReconnectPolicy", "reconnect", "retryable"]

logger = logging.getLogger("anycqrs.brokers.rabbitmq")

PRODUCER_RECONNECT = RetryPolicy(attempts=9, delay=0.1, multiplier=2.0, max_delay=30.0)
"""The producer's default: 8 reconnect attempts, 0.1 s doubling (~25 s in all)."""

CONSUMER_RECONNECT = RetryPolicy(attempts=None, delay=0.1, multiplier=2.0, max_delay=30.0)
"""The consumer's default: reconnect forever, at most 30 s apart."""

_NOT_RETRIED = (
    pika.exceptions.ProbableAuthenticationError,
    pika.exceptions.ProbableAccessDeniedError,
    pika.exceptions.AuthenticationError,
)
"""Connection failures another attempt cannot fix (credentials, vhost)."""


def ReconnectPolicy(  # the deprecated class name, kept for one release
    *,
    initial_delay: float = 0.1,
    multiplier: float = 2.0,
    max_delay: float = 30.0,
    max_attempts: int | None = None,
) -> RetryPolicy:
    """Deprecated: build the equivalent `anycqrs.RetryPolicy` instead.

    `ReconnectPolicy(initial_delay=d, multiplier=m, max_delay=x, max_attempts=n)`
    returns `RetryPolicy(attempts=n + 1, delay=d, multiplier=m, max_delay=x)`
    (`attempts=None` when `n` is `None`): the connection that failed counts
    as the first attempt, so both make `n` reconnect attempts.

    Raises:
        ValueError: `max_attempts` below 1, or a negative delay or multiplier.

    Example:
        ```python
        # before
        reconnect = ReconnectPolicy(initial_delay=0.5, max_delay=10.0, max_attempts=4)
        # now
        reconnect = anycqrs.RetryPolicy(attempts=5, delay=0.5, max_delay=10.0)
        ```
    """
    warnings.warn(
        "ReconnectPolicy is deprecated; pass reconnect=anycqrs.RetryPolicy(attempts="
        "max_attempts + 1 (None: forever), delay=initial_delay, multiplier=..., max_delay=...)",
        DeprecationWarning,
        stacklevel=2,
    )
    if max_attempts is not None and (isinstance(max_attempts, bool) or max_attempts < 1):
        raise ValueError(f"max_attempts must be at least 1 or None, got {max_attempts!r}")
    return RetryPolicy(
        attempts=None if max_attempts is None else max_attempts + 1,
        delay=initial_delay,
        multiplier=multiplier,
        max_delay=max_delay,
    )


def retryable(error: BaseException) -> bool:
    """Whether another connection attempt may fix `error` (not a login refusal)."""
    return isinstance(error, ConnectionLost) and not isinstance(error.__cause__, _NOT_RETRIED)


async def reconnect(
    policy: RetryPolicy | None,
    name: str,
    connect: Callable[[], Awaitable[None]],
    *,
    lost: BaseException | None = None,
    sleep: Sleep = anyio.sleep,
) -> None:
    """Call `connect` until it succeeds or `policy` gives up.

    A first connection (`lost` is `None`) is tried at once; after a lost
    connection (`lost`, the policy's first attempt) the first try waits.
    Each retry is logged at WARNING, and so is the success. `policy=None`
    makes a single attempt.

    Raises:
        BrokerError: the policy gave up after retrying (the last error chained).
        Exception: the first error unchanged when it is not retried (bad
            credentials, a closed producer, `policy=None`).
    """
    if policy is None:
        await connect()
        return
    made = 0
    what = "cannot connect" if lost is None else "connection lost"
    limit = f" of {policy.attempts - 1}" if policy.attempts is not None else ""

    def log(last: BaseException, failures: int, delay: float) -> None:
        nonlocal made
        made = failures
        logger.warning(
            "%s: %s (%s); reconnecting in %.3gs (attempt %d%s)",
            name,
            what,
            last,
            delay,
            failures,
            limit,
        )

    try:
        await retry_call(
            policy,
            connect,
            failures=0 if lost is None else 1,
            error=lost,
            retryable=retryable,
            on_retry=log,
            sleep=sleep,
        )
    except ConnectionLost as last:
        if made == 0:
            raise
        raise BrokerError(f"{name}: cannot reconnect after {made} attempt(s): {last}") from last
    if made:
        logger.warning("%s: reconnected (attempt %d)", name, made)
