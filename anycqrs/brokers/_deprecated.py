"""The deprecated `ConsumerRetryPolicy` name, one release long."""

from __future__ import annotations

import warnings

from .._retry import RetryPolicy

__all__ = ["consumer_retry_policy"]


def consumer_retry_policy(module: str) -> type[RetryPolicy]:
    """`RetryPolicy`, with the warning that reading `module.ConsumerRetryPolicy` gives."""
    warnings.warn(
        f"{module}.ConsumerRetryPolicy is deprecated; use anycqrs.RetryPolicy",
        DeprecationWarning,
        stacklevel=3,
    )
    return RetryPolicy
