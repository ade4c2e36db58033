"""Transitional re-exports of the consumer layer (now public in `anycqrs.consumers`).

`anycqrs.brokers.rabbitmq` still imports `Lanes`, `EventDecoder`, `Inbound`
and `ConsumerRetryPolicy` from here and hands the lanes a transport that
settles with `done`; `Lanes` here adapts that. Remove those re-exports once the
RabbitMQ consumer runs on `anycqrs.consumers.consume`; `deprecated_retry_policy`
(the warning of the deprecated `ConsumerRetryPolicy` paths) stays until the
alias goes.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Any

from .._retry import RetryPolicy
from ..consumers import DEFAULT_RETRY, EventDecoder, EventSink, Inbound, Transport
from ..consumers import Lanes as _Lanes

__all__ = ["ConsumerRetryPolicy", "EventDecoder", "Inbound", "Lanes", "Transport"]

ConsumerRetryPolicy = RetryPolicy
"""The former consumer retry policy: now `anycqrs.RetryPolicy` (no warning
here; the public paths `anycqrs.brokers.ConsumerRetryPolicy` and
`anycqrs.brokers.kafka.ConsumerRetryPolicy` warn)."""

logger = logging.getLogger("anycqrs.brokers")


def deprecated_retry_policy(module: str) -> type[RetryPolicy]:
    """`RetryPolicy`, with the warning a `module.ConsumerRetryPolicy` access gives."""
    warnings.warn(
        f"{module}.ConsumerRetryPolicy is deprecated; use anycqrs.RetryPolicy",
        DeprecationWarning,
        stacklevel=3,
    )
    return RetryPolicy


class _Settle:
    """A transport of the former shape (`done` instead of `settle`)."""

    __slots__ = ("dead_letter", "location", "settle", "stale")

    def __init__(self, transport: Any) -> None:
        self.settle = transport.done
        self.stale = transport.stale
        self.location = transport.location
        self.dead_letter = transport.dead_letter

    async def fetch(self, decode: EventDecoder, /) -> Sequence[Inbound]:  # pragma: no cover
        raise NotImplementedError


class Lanes(_Lanes):
    """`anycqrs.consumers.Lanes` over a transport that settles with `done`."""

    def __init__(
        self,
        mediator: EventSink,
        transport: Any,
        *,
        concurrency: int,
        retry: RetryPolicy = DEFAULT_RETRY,
        buffer: int = 2,
        logger: logging.Logger = logger,
    ) -> None:
        super().__init__(
            mediator,
            _Settle(transport),
            concurrency=concurrency,
            retry=retry,
            buffer=buffer,
            logger=logger,
        )
