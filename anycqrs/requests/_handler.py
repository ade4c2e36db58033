from __future__ import annotations

import abc
from typing import Any, Generic

from typing_extensions import TypeVar

from .._handlers import EventSource

ReqT = TypeVar("ReqT", contravariant=True)
ResT = TypeVar("ResT", default=Any, covariant=True)


class RequestHandler(EventSource, abc.ABC, Generic[ReqT, ResT]):
    """Handles one command or query and returns its result.

    Constructor dependencies are autowired by the container; a new handler is
    resolved for every `send`. Events recorded with `emit` are
    dispatched after `handle` returns (and before `send` returns).

    Example:
        ```python
        class CreateUserHandler(anycqrs.RequestHandler[CreateUser, UserCreated]):
            def __init__(self, users: UserRepository) -> None:
                self.users = users

            async def handle(self, request: CreateUser) -> UserCreated:
                user_id = await self.users.add(request.name)
                self.emit(UserRegistered(user_id=user_id))
                return UserCreated(user_id=user_id)
        ```
    """

    @abc.abstractmethod
    async def handle(self, request: ReqT, /) -> ResT:
        """Handle `request` and return its result."""
