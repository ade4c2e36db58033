"""Context snapshots: dump, restore in place, load, and their errors."""

from __future__ import annotations

import attrs
import pytest

import anycqrs.saga as saga
from anycqrs.errors import DeserializationError, SerializationError
from anycqrs.saga._snapshot import Snapshots

from ._sagas import OrderContext


@attrs.define
class Holder(saga.SagaContext):
    thing: object


def test_dump_restore_and_load_round_trip() -> None:
    snapshots = Snapshots()
    context = OrderContext(order_id=1, items=["a"], paid=5)
    data = snapshots.dump(context)
    assert data["order_id"] == 1 and data["items"] == ["a"]
    held = context.items
    context.paid, context.items = 99, ["b", "c"]
    snapshots.restore(context, data)
    assert (context.paid, context.items) == (5, ["a"])
    assert context.items is not held  # a fresh copy, never the snapshot's list
    assert snapshots.load(OrderContext, data) == context
    assert snapshots.dumper(OrderContext) is snapshots.dumper(OrderContext)


def test_errors_name_the_problem() -> None:
    snapshots = Snapshots()
    broken = Holder(thing=1)
    del broken.thing  # the converter's hook fails on it
    with pytest.raises(SerializationError, match="Holder"):
        snapshots.dump(broken)
    with pytest.raises(DeserializationError, match="order_id"):
        snapshots.load(OrderContext, {"items": []})
    with pytest.raises(DeserializationError):
        snapshots.restore(OrderContext(order_id=1), {"order_id": "not a number"})
