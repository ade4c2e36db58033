"""One retry policy for everything that retries (public as ``anycqrs.RetryPolicy``).

[`RetryPolicy`][anycqrs.RetryPolicy] says how often and how patiently something is tried
again: saga steps (``act``) and compensations, consumers re-running a failed
handler, RabbitMQ (re)connections and the outbox relay re-publishing a row.
It is a frozen value; the loop that applies it is private to anycqrs, so every
part of the library backs off the same way and logs the same way.

The delay before retry *n* (``n >= 1``, the first retry) is:

```python
min(delay * multiplier ** (n - 1), max_delay) * (1 + jitter * random())
```

Example:
    ```python
    from anycqrs import RetryPolicy

    policy = RetryPolicy(attempts=5, delay=0.2, multiplier=2.0, max_delay=5.0,
                         retry_on=(TimeoutError, ConnectionError))
    assert list(policy.delays()) == [0.2, 0.4, 0.8, 1.6]
    assert RetryPolicy(attempts=None).attempts is None  # retry forever
    ```
"""

from __future__ import annotations

import math
import random
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import anyio
import attrs

from ._validate import exception_types, non_negative, positive_int

__all__ = ["NO_RETRY", "RetryPolicy", "retry_call"]


def _attempts(_inst: Any, attribute: attrs.Attribute[int | None], value: int | None) -> None:
    if value is not None:
        positive_int(_inst, attribute, value)  # type: ignore[arg-type]


@attrs.frozen(init=False)
class RetryPolicy:
    """How something is retried: attempts, exponential backoff, which errors.

    Attributes:
        attempts: total attempts, the first included (``1`` = no retry,
            ``None`` = unlimited).
        delay: seconds before the first retry.
        multiplier: factor applied to the delay after each retry (``1`` =
            constant delay).
        max_delay: upper bound of any single delay, in seconds.
        jitter: extra random fraction of each delay (``0.1`` stretches a
            delay by up to 10 %), so many workers don't retry in lockstep.
        retry_on: exception types worth retrying; anything else fails at once.

    ``backoff=`` is accepted as the former name of ``multiplier`` (saga step
    policies of 0.1); it is deprecated.

    Example:
        ```python
        import anycqrs

        class PayStep(anycqrs.SagaStepHandler):
            retry_policy = anycqrs.RetryPolicy(attempts=3, delay=0.2,
                                               retry_on=(ConnectionError,))
        ```
    """

    attempts: int | None = attrs.field(validator=_attempts)
    delay: float = attrs.field(validator=non_negative)
    multiplier: float = attrs.field(validator=non_negative)
    max_delay: float = attrs.field(validator=non_negative)
    jitter: float = attrs.field(validator=non_negative)
    retry_on: tuple[type[BaseException], ...] = attrs.field(converter=exception_types)

    def __init__(
        self,
        attempts: int | None = 3,
        delay: float = 0.1,
        multiplier: float = 2.0,
        *,
        max_delay: float = 30.0,
        jitter: float = 0.0,
        retry_on: Any = (Exception,),
        backoff: float | None = None,
    ) -> None:
        if backoff is not None:
            import warnings

            warnings.warn(
                "RetryPolicy(backoff=...) is deprecated; use multiplier=...",
                DeprecationWarning,
                stacklevel=2,
            )
            multiplier = backoff
        self.__attrs_init__(attempts, delay, multiplier, max_delay, jitter, retry_on)

    @property
    def backoff(self) -> float:
        """Deprecated name of `multiplier`."""
        return self.multiplier

    def delay_before(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (``1`` = the first retry).

        Jitter, when set, is applied to the result.
        """
        try:
            base = self.delay * self.multiplier ** (max(retry, 1) - 1)
        except OverflowError:
            base = math.inf
        base = min(base, self.max_delay)
        if self.jitter:
            base *= 1.0 + random.random() * self.jitter
        return base

    def delays(self) -> Iterator[float]:
        """The delays before each retry, in order (endless when ``attempts`` is ``None``)."""
        retry = 0
        while self.attempts is None or retry < self.attempts - 1:
            retry += 1
            yield self.delay_before(retry)

    def should_retry(self, error: BaseException, failures: int = 1) -> bool:
        """Whether another attempt follows ``failures`` failed ones ending in ``error``."""
        if not isinstance(error, self.retry_on):
            return False
        return self.attempts is None or failures < self.attempts


NO_RETRY = RetryPolicy(attempts=1)
"""A policy that never retries."""


T = TypeVar("T")

Sleep = Callable[[float], Awaitable[Any]]
"""How the retry loop waits (``anyio.sleep``; tests inject a fake)."""

OnRetry = Callable[[BaseException, int, float], object]
"""Told ``(error, failures so far, delay)`` before each wait (for logging)."""


async def retry_call(
    policy: RetryPolicy,
    call: Callable[[], Awaitable[T]],
    *,
    failures: int = 0,
    error: BaseException | None = None,
    retryable: Callable[[BaseException], bool] | None = None,
    on_retry: OnRetry | None = None,
    sleep: Sleep = anyio.sleep,
) -> T:
    """Await ``call()`` until it succeeds or ``policy`` gives up.

    The one loop behind every retry in anycqrs. ``failures`` and ``error``
    say that attempts were already made (a hot path tries once inline and
    only enters the loop on failure): the loop then starts by waiting.
    ``retryable`` narrows ``policy.retry_on`` further (a RabbitMQ login
    failure is a ``ConnectionError`` that no retry fixes). Cancellation is
    never retried.

    Raises:
        Exception: the last error, unchanged, once the policy gives up.
    """
    while True:
        if error is not None:
            if not policy.should_retry(error, failures) or (
                retryable is not None and not retryable(error)
            ):
                raise error
            delay = policy.delay_before(failures)
            if on_retry is not None:
                on_retry(error, failures, delay)
            await sleep(delay)
        try:
            return await call()
        except Exception as exc:  # noqa: BLE001 - judged by the policy above
            failures += 1
            error = exc
