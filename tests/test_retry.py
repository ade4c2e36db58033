"""The one retry policy and the loop that runs it (no real delays)."""

from __future__ import annotations

import anyio
import pytest

import anycqrs
from anycqrs._retry import NO_RETRY, RetryPolicy, retry_call


class FakeSleep:
    """Records the delays instead of sleeping."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


class Flaky:
    """Fails ``failures`` times with ``error``, then returns ``"ok"``."""

    def __init__(self, failures: int, error: type[Exception] = ConnectionError) -> None:
        self.left = failures
        self.error = error
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.left:
            self.left -= 1
            raise self.error(f"failure {self.calls}")
        return "ok"


class TestPolicy:
    """The policy's schedule and validation."""

    def test_public_everywhere(self) -> None:
        assert anycqrs.RetryPolicy is RetryPolicy
        assert anycqrs.saga.RetryPolicy is RetryPolicy

    def test_exponential_capped(self) -> None:
        policy = RetryPolicy(attempts=6, delay=0.1, multiplier=3.0, max_delay=1.0)
        assert list(policy.delays()) == pytest.approx([0.1, 0.3, 0.9, 1.0, 1.0])
        assert list(NO_RETRY.delays()) == []

    def test_unlimited(self) -> None:
        policy = RetryPolicy(attempts=None, delay=1.0, multiplier=2.0, max_delay=4.0)
        delays = policy.delays()
        assert [next(delays) for _ in range(5)] == [1.0, 2.0, 4.0, 4.0, 4.0]
        assert policy.should_retry(ValueError(), failures=10_000)

    def test_overflow_is_max_delay(self) -> None:
        policy = RetryPolicy(attempts=None, delay=1.0, multiplier=10.0, max_delay=60.0)
        assert policy.delay_before(10_000) == 60.0

    def test_jitter_stretches_within_bound(self) -> None:
        policy = RetryPolicy(delay=10.0, jitter=0.5)
        for _ in range(200):
            assert 10.0 <= policy.delay_before(1) <= 15.0

    def test_should_retry(self) -> None:
        policy = RetryPolicy(attempts=3, retry_on=ConnectionError)
        assert policy.retry_on == (ConnectionError,)
        assert policy.should_retry(ConnectionError(), 1)
        assert policy.should_retry(ConnectionError(), 2)
        assert not policy.should_retry(ConnectionError(), 3)
        assert not policy.should_retry(ValueError(), 1)

    def test_backoff_is_a_deprecated_alias(self) -> None:
        with pytest.warns(DeprecationWarning, match="multiplier"):
            policy = RetryPolicy(attempts=2, delay=0.5, backoff=4.0)
        assert policy.multiplier == 4.0 == policy.backoff

    @pytest.mark.parametrize(
        "bad",
        [
            {"attempts": 0},
            {"attempts": True},
            {"delay": -1.0},
            {"multiplier": float("nan")},
            {"max_delay": -0.1},
            {"jitter": -1},
        ],
    )
    def test_rejects_bad_values(self, bad: dict[str, object]) -> None:
        with pytest.raises(ValueError, match=next(iter(bad))):
            RetryPolicy(**bad)  # type: ignore[arg-type]

    @pytest.mark.parametrize("bad", ["ValueError", int, (ValueError, 3)])
    def test_rejects_bad_retry_on(self, bad: object) -> None:
        with pytest.raises(TypeError, match="Exception"):
            RetryPolicy(retry_on=bad)

    def test_frozen_and_hashable(self) -> None:
        policy = RetryPolicy()
        assert hash(policy) == hash(RetryPolicy())
        with pytest.raises(AttributeError):
            policy.attempts = 5  # type: ignore[misc]


@pytest.mark.anyio
class TestRetryCall:
    """The loop: waits the policy's delays, gives up with the last error."""

    async def test_succeeds_after_retries(self) -> None:
        sleep, call = FakeSleep(), Flaky(2)
        seen: list[tuple[str, int, float]] = []
        policy = RetryPolicy(attempts=3, delay=0.5, multiplier=2.0)
        result = await retry_call(
            policy, call, sleep=sleep, on_retry=lambda e, n, d: seen.append((str(e), n, d))
        )
        assert result == "ok"
        assert call.calls == 3
        assert sleep.delays == [0.5, 1.0]
        assert seen == [("failure 1", 1, 0.5), ("failure 2", 2, 1.0)]

    async def test_gives_up_with_the_last_error(self) -> None:
        sleep, call = FakeSleep(), Flaky(5)
        with pytest.raises(ConnectionError, match="failure 3"):
            await retry_call(RetryPolicy(attempts=3, delay=0.1), call, sleep=sleep)
        assert call.calls == 3
        assert len(sleep.delays) == 2

    async def test_not_retried_error_fails_at_once(self) -> None:
        sleep, call = FakeSleep(), Flaky(1, ValueError)
        with pytest.raises(ValueError):
            await retry_call(RetryPolicy(retry_on=ConnectionError), call, sleep=sleep)
        assert call.calls == 1
        assert sleep.delays == []

    async def test_retryable_narrows_the_policy(self) -> None:
        sleep, call = FakeSleep(), Flaky(1)
        with pytest.raises(ConnectionError):
            await retry_call(RetryPolicy(), call, sleep=sleep, retryable=lambda e: False)
        assert call.calls == 1

    async def test_continues_after_an_inline_failure(self) -> None:
        sleep, call = FakeSleep(), Flaky(1)
        first = ConnectionError("inline")
        policy = RetryPolicy(attempts=3, delay=0.25)
        assert await retry_call(policy, call, failures=1, error=first, sleep=sleep) == "ok"
        assert sleep.delays == [0.25, 0.5]
        assert call.calls == 2

    async def test_unlimited_on_the_real_clock_is_cancellable(self) -> None:
        call = Flaky(10**9)
        policy = RetryPolicy(attempts=None, delay=0.0, max_delay=0.0)
        with anyio.move_on_after(0.05) as scope:
            await retry_call(policy, call)
        assert scope.cancelled_caught
        assert call.calls > 1
