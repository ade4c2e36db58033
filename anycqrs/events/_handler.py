from __future__ import annotations

import abc
from typing import Any, ClassVar, Generic

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

    ``inbox_name`` (default: the class name) is the handler's identity in an
    inbox (`anycqrs.inbox`): set it before renaming the class, or the
    renamed handler runs again for messages it already handled.
    """

    inbox_name: ClassVar[str] = "EventHandler"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "inbox_name" not in cls.__dict__:
            cls.inbox_name = cls.__name__
        elif not isinstance(cls.__dict__["inbox_name"], str) or not cls.inbox_name:
            raise TypeError(f"{cls.__qualname__}.inbox_name must be a non-empty string")

    @abc.abstractmethod
    async def handle(self, event: EventT, /) -> None:
        """React to `event`."""
