"""Turning task-group exception groups back into plain errors."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

if sys.version_info < (3, 11):  # pragma: no cover - depends on the interpreter
    from exceptiongroup import BaseExceptionGroup
else:  # pragma: no cover
    BaseExceptionGroup = BaseExceptionGroup  # noqa: PLW0127

__all__ = ["BaseExceptionGroup", "leaves", "real_errors", "single_error"]


def leaves(error: BaseException) -> Iterator[BaseException]:
    """Every non-group exception inside ``error`` (depth first)."""
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            yield from leaves(inner)
    else:
        yield error


def real_errors(error: BaseException) -> list[Exception]:
    """The ``Exception`` leaves of ``error`` (cancellations left out)."""
    return [e for e in leaves(error) if isinstance(e, Exception)]


@contextmanager
def single_error() -> Iterator[None]:
    """Let a task group's lone real error out as itself.

    A task group wraps even a single failure in an exception group; callers of
    anycqrs expect the handler's own exception. Inside this context a group
    holding exactly one ``Exception`` (cancellations aside) is re-raised as
    that exception; any other group propagates unchanged.

    Example:
        ```python
        with single_error():
            async with anyio.create_task_group() as group:
                ...
        ```
    """
    try:
        yield
    except BaseExceptionGroup as failure:
        errors = real_errors(failure)
        if len(errors) == 1:
            (error,) = errors
            raise error from error.__cause__  # keep its own cause, drop the group
        raise
