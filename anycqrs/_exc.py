"""Turning task-group exception groups back into plain errors."""

from __future__ import annotations

import sys
from collections.abc import Iterator

if sys.version_info < (3, 11):  # pragma: no cover - depends on the interpreter
    from exceptiongroup import BaseExceptionGroup
else:  # pragma: no cover
    BaseExceptionGroup = BaseExceptionGroup  # noqa: PLW0127

__all__ = ["BaseExceptionGroup", "leaves", "real_errors"]


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
