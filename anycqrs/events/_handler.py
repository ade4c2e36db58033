from __future__ import annotations

import abc
from typing import Generic

from typing_extensions import TypeVar

from .._handlers import EventSource
from ..messages import Event

EventT = TypeVar("EventT", bound=Event, default=Event, contravariant=True)


class EventHandler(EventSource, abc.ABC, Generic[EventT]):
    """Handles one kind of event.

    Bind it with `EventMap.bind(OrderPaid, OnOrderPaid)`; several handlers
    may be bound to one event. Events it `emit`s are follow-ups,
    dispatched after it returns.

    Example:
        ```python
        class SendReceipt(anycqrs.EventHandler[anycqrs.NotificationEvent[OrderPaid]]):
            def __init__(self, mailer: Mailer) -> None:
                self.mailer = mailer

            async def handle(self, event: anycqrs.NotificationEvent[OrderPaid]) -> None:
                await self.mailer.send(event.payload.email)
        ```
    """

    @abc.abstractmethod
    async def handle(self, event: EventT, /) -> None:
        """React to `event`."""
