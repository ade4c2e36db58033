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


def test_put_back_restores_only_a_changed_context() -> None:
    snapshots = Snapshots()
    context = OrderContext(order_id=1, items=["a"], paid=5)
    data = snapshots.dump(context)
    held = context.items
    snapshots.put_back(context, data)  # unchanged: nothing to do
    assert context.items is held and context.paid == 5
    held.append("b")  # mutated in place
    snapshots.put_back(context, data)
    assert context.items == ["a"] and context.items is not held
    context.paid = 99  # replaced
    snapshots.put_back(context, data)
    assert context.paid == 5
    assert context.items is not data["items"]  # never the snapshot's own list


def test_put_back_restores_a_context_it_cannot_dump() -> None:
    snapshots = Snapshots()
    context = OrderContext(order_id=1, paid=5)
    data = snapshots.dump(context)
    del context.paid  # the converter's hook fails on it
    snapshots.put_back(context, data)
    assert context.paid == 5
