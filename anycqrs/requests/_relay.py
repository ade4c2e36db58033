"""The per-item path of a stream's common case: an async generator relaying
the handler's items, opted out of the event loop's async-generator hooks.

Why a generator: a coroutine per `__anext__` (the stream's general path)
costs about 2,000 CPU instructions per item over the handler's own
generator; relaying through an async generator about 1,000 (measured with
cachegrind, 100 items, no events: see docs/benchmarks.md).
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, TypeVar

from .._handlers import take_list

if TYPE_CHECKING:
    from ._streaming import RequestStream

__all__ = ["relay", "unhooked"]

T = TypeVar("T")


async def relay(stream: RequestStream[Any]) -> AsyncIterator[Any]:
    """The items of `stream`, whose handler keeps the standard events list
    (no middleware, no scope: see `RequestStream.__aiter__`), each after its
    events were dispatched. Left early (`GeneratorExit` at a `yield`), it
    leaves the handler's generator to the stream, which closes it when it is
    closed or dropped, exactly as when iterated through `__anext__`."""
    if stream._agen is None:
        if stream._done:
            return
        try:
            await stream._open()
        except BaseException:
            stream._done = True
            raise
    handler, agen = stream._fast, stream._agen
    if handler is None or agen is None:  # pragma: no cover - mixed with `__anext__`
        while True:
            try:
                item = await stream.__anext__()
            except StopAsyncIteration:
                return
            yield item
    try:
        async for item in agen:
            if handler._anycqrs_events:
                await stream._deliver_events(item, take_list(handler))
            yield item
    except GeneratorExit:  # the consumer left: the stream closes the handler
        raise
    except BaseException:
        stream._finish()
        if handler._anycqrs_events:
            take_list(handler)  # a failed item's events are dropped (singletons)
        raise
    stream._finish()
    if handler._anycqrs_events:
        await stream._mediator._dispatch(None, take_list(handler))


def unhooked(agen: AsyncIterator[T]) -> AsyncIterator[T]:
    """`agen`, opted out of the event loop's async-generator hooks (PEP 525):
    dropped unfinished, CPython closes it on the spot instead of handing it
    to the loop's finalizer (a task, later), so the stream that owns it is
    dropped too, and closes the handler, as the consumer's loop exits. The
    hooks are read when a generator makes its first `__anext__`; made here
    with none set, that one is dropped unused.

    Example:
        ```python
        async def numbers() -> AsyncIterator[int]:
            yield 1

        async def main() -> None:
            assert [n async for n in unhooked(numbers())] == [1]

        anyio.run(main)
        ```
    """
    hooks = sys.get_asyncgen_hooks()
    sys.set_asyncgen_hooks(None, None)
    try:
        agen.__anext__()
    finally:
        sys.set_asyncgen_hooks(*hooks)
    return agen
