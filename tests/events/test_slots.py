"""The parallel dispatcher's bound: loop-agnostic slots, fair, cancel-safe."""

from __future__ import annotations

import anyio
import pytest

from anycqrs.events._dispatcher import Slots

pytestmark = pytest.mark.anyio


async def waiter(slots: Slots, name: str, got: list[str], scope: anyio.CancelScope) -> None:
    with scope:
        await slots.acquire()
        try:
            got.append(name)
            await anyio.sleep(0)
        finally:
            slots.release()


async def test_a_cancelled_waiter_gives_its_place_up() -> None:
    slots, got = Slots(1), []
    await slots.acquire()
    first, second = anyio.CancelScope(), anyio.CancelScope()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(waiter, slots, "first", got, first)
            group.start_soon(waiter, slots, "second", got, second)
            await anyio.wait_all_tasks_blocked()
            first.cancel()
            await anyio.wait_all_tasks_blocked()
            slots.release()
    assert got == ["second"]
    assert slots._used == 0 and not slots._waiters


async def test_a_waiter_cancelled_once_handed_a_slot_passes_it_on() -> None:
    slots, got = Slots(1), []
    await slots.acquire()
    first, second = anyio.CancelScope(), anyio.CancelScope()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(waiter, slots, "first", got, first)
            group.start_soon(waiter, slots, "second", got, second)
            await anyio.wait_all_tasks_blocked()
            slots.release()  # handed to "first"...
            first.cancel()  # ...which is cancelled before it runs
    assert got[-1] == "second"  # "first" may or may not have run before its cancellation
    assert slots._used == 0 and not slots._waiters


async def test_waiters_are_served_in_order() -> None:
    slots, got = Slots(2), []
    await slots.acquire()
    await slots.acquire()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            for name in "abc":
                group.start_soon(waiter, slots, name, got, anyio.CancelScope())
                await anyio.wait_all_tasks_blocked()
            slots.release()  # one slot for the three, handed on from one to the next
            await anyio.wait_all_tasks_blocked()
            assert got == ["a", "b", "c"]
            slots.release()
    assert slots._used == 0


def test_one_slots_object_serves_loops_one_after_another() -> None:
    slots = Slots(1)

    async def contend() -> None:
        got: list[str] = []
        await slots.acquire()
        async with anyio.create_task_group() as group:
            group.start_soon(waiter, slots, "w", got, anyio.CancelScope())
            await anyio.wait_all_tasks_blocked()
            slots.release()
        assert got == ["w"]

    for backend in ("asyncio", "trio", "asyncio"):
        anyio.run(contend, backend=backend)
    assert slots._used == 0
