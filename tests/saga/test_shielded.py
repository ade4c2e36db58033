"""`shielded`: the compensation phase's cancel scope, deadline set at its first wait."""

from __future__ import annotations

import math

import anyio
import pytest

from anycqrs.saga._shielded import shielded

pytestmark = pytest.mark.anyio


async def test_a_phase_that_never_waits_runs_to_its_end() -> None:
    done: list[int] = []

    async def phase() -> None:
        done.append(1)

    assert await shielded(phase(), 0.0) is False  # no wait: no deadline to pass
    assert done == [1]


async def test_the_deadline_cuts_a_waiting_phase_short() -> None:
    reached: list[str] = []

    async def phase() -> None:
        await anyio.sleep(0)
        reached.append("first wait")
        await anyio.sleep(math.inf)
        reached.append("never")

    with anyio.fail_after(5):
        assert await shielded(phase(), 0.05) is True
    assert reached == ["first wait"]


async def test_the_callers_cancellation_does_not_reach_the_phase() -> None:
    started, finished = anyio.Event(), anyio.Event()

    async def phase() -> None:
        started.set()
        await anyio.sleep(0.05)
        finished.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:

            async def run() -> None:
                await shielded(phase(), 10)

            tg.start_soon(run)
            await started.wait()
            tg.cancel_scope.cancel()
    assert finished.is_set()


async def test_scopes_the_phase_enters_before_its_first_wait_nest() -> None:
    async def phase() -> None:
        with anyio.move_on_after(0.01) as inner:  # entered before the first wait
            await anyio.sleep(math.inf)
        assert inner.cancelled_caught
        with anyio.CancelScope():
            await anyio.sleep(0)

    with anyio.fail_after(5):
        assert await shielded(phase(), 10) is False


async def test_errors_of_the_phase_propagate() -> None:
    async def phase() -> None:
        await anyio.sleep(0)
        raise LookupError("gone")

    with pytest.raises(LookupError, match="gone"):
        await shielded(phase(), 10)
