"""Must NOT type-check: proves tests/test_typing.py can fail."""

from __future__ import annotations

import attrs

import anycqrs


@attrs.frozen
class UserCreated(anycqrs.Response):
    user_id: int


@attrs.frozen
class CreateUser(anycqrs.Request[UserCreated]):
    name: str


async def main(mediator: anycqrs.RequestMediator) -> None:
    text: str = await mediator.send(CreateUser("ada"))
    print(text)
