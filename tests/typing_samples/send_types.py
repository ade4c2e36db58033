"""Checked by mypy in tests/test_typing.py (never imported by pytest)."""

from __future__ import annotations

import attrs
from typing_extensions import assert_type, reveal_type

import anycqrs
from anycqrs.requests.bootstrap import bootstrap


@attrs.frozen
class UserCreated(anycqrs.Response):
    user_id: int


@attrs.frozen
class CreateUser(anycqrs.Request[UserCreated]):
    name: str


@attrs.frozen
class Untyped(anycqrs.Request):
    name: str


class CreateUserHandler(anycqrs.RequestHandler[CreateUser, UserCreated]):
    async def handle(self, request: CreateUser) -> UserCreated:
        return UserCreated(len(request.name))


async def main() -> None:
    mediator = bootstrap(commands_mapper=lambda m: m.bind(CreateUser, CreateUserHandler))
    created = await mediator.send(CreateUser("ada"))
    assert_type(created, UserCreated)
    reveal_type(created)
    reveal_type(await mediator.send(Untyped("x")))
