"""A two-step saga shared by the recovery test and its second process
(`_recover.py`); the steps record the correlation context they ran in."""

from __future__ import annotations

from typing import Any

import attrs

import anycqrs.saga as saga
from anycqrs.observability import current_message

SEEN: list[tuple[str, Any]] = []
"""(step, current_message()) per act, in this process (test-only state)."""


@attrs.define
class Delivery(saga.SagaContext):
    order_id: int
    done: list[str] = attrs.Factory(list)


class Pack(saga.SagaStepHandler[Delivery, str]):
    async def act(self, context: Delivery) -> str:
        SEEN.append(("pack", current_message()))
        context.done.append("pack")
        return "packed"

    async def compensate(self, context: Delivery) -> None:
        context.done.append("unpack")


class Send(saga.SagaStepHandler[Delivery, str]):
    async def act(self, context: Delivery) -> str:
        SEEN.append(("send", current_message()))
        context.done.append("send")
        return "sent"

    async def compensate(self, context: Delivery) -> None:
        context.done.append("unsend")


class DeliverySaga(saga.Saga[Delivery]):
    steps = [Pack, Send]


def saga_map() -> saga.SagaMap:
    sagas = saga.SagaMap()
    sagas.bind(Delivery, DeliverySaga)
    return sagas
