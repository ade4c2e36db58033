"""A shielded phase whose deadline costs nothing until the phase waits, and
how to tell a coroutine function that can never wait (needs no shield)."""

from __future__ import annotations

import dis
import functools
import inspect
import types
from collections.abc import Coroutine, Generator
from typing import Any

import anyio

__all__ = ["cannot_wait", "shielded"]

_SUSPENDS = frozenset({"YIELD_VALUE", "YIELD_FROM", "SEND", "INSTRUMENTED_YIELD_VALUE"})
"""The opcodes through which a coroutine's own frame suspends (`await`,
`async for` and `async with` all compile to one of them, on every supported
Python; 3.12's inlined comprehensions included)."""


def cannot_wait(function: object) -> bool:
    """Whether the coroutines of `function` can never suspend: it is a plain
    `async def` (not wrapped, not a method object) whose own code holds no
    `await`, `async for` or `async with`. Such a coroutine runs to its end
    in one go when awaited, so nothing can cancel it and a shield around it
    changes nothing. Anything else (a wrapper, a callable object, a function
    returning an awaitable) is taken as able to wait.

    Example:
        ```python
        async def quick(context: dict[str, bool]) -> None:
            context["reserved"] = False

        async def slow(context: dict[str, bool]) -> None:
            await anyio.sleep(0)

        assert cannot_wait(quick) and not cannot_wait(slow)
        ```
    """
    if not isinstance(function, types.FunctionType):
        return False
    return _never_suspends(function.__code__)


@functools.lru_cache(maxsize=1024)
def _never_suspends(code: types.CodeType) -> bool:
    if not code.co_flags & inspect.CO_COROUTINE:
        return False
    return not any(instruction.opname in _SUSPENDS for instruction in dis.get_instructions(code))


async def shielded(phase: Coroutine[Any, Any, None], timeout: float) -> bool:
    """Run `phase` shielded from the caller's cancellation, for at most
    `timeout` seconds of waiting; return whether the deadline cut it short.

    The same as `with anyio.move_on_after(timeout, shield=True): await phase`,
    except that the deadline is set at the phase's first wait (counted from
    there): a phase that never waits (a memory saga's compensations) costs no
    timer, which is about half of the cancel scope's cost on asyncio. A phase
    that never waits cannot be cancelled by a deadline anyway (cancellation
    is delivered at waits only). The phase runs inside the scope from its
    first line, so cancel scopes it enters nest as usual.

    Example:
        ```python
        async def compensations() -> None:
            await anyio.sleep(0)

        async def main() -> None:
            assert not await shielded(compensations(), 5.0)

        anyio.run(main)
        ```
    """
    with anyio.CancelScope(shield=True) as scope:
        await _drive(phase, scope, timeout)
    return scope.cancelled_caught


@types.coroutine
def _drive(
    coro: Coroutine[Any, Any, None], scope: anyio.CancelScope, timeout: float
) -> Generator[Any, Any, None]:
    """Await `coro` (what `await coro` does: every value it yields goes to
    the event loop, every answer back to it), setting `scope`'s deadline
    before the first value leaves for the loop."""
    try:
        value = coro.send(None)
    except StopIteration:
        return
    scope.deadline = anyio.current_time() + timeout
    while True:
        try:
            answer = yield value
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as error:  # noqa: BLE001 - forwarded, like `await` does
            try:
                value = coro.throw(error)
            except StopIteration:
                return
        else:
            try:
                value = coro.send(answer)
            except StopIteration:
                return
