from __future__ import annotations

import dataclasses
from datetime import timezone
from uuid import UUID

import attrs

import anycqrs
from anycqrs.messages import event_name_of


@attrs.frozen
class OrderPaid:
    order_id: int


@attrs.frozen
class Renamed:
    __event_name__ = "orders.renamed.v2"
    order_id: int


def test_notification_defaults() -> None:
    event = anycqrs.NotificationEvent(payload=OrderPaid(1), topic="orders")
    assert event.event_name == "OrderPaid"
    assert isinstance(event.event_id, UUID)
    assert event.event_timestamp.tzinfo is timezone.utc
    assert event.key is None
    assert event.headers == {}
    other = anycqrs.NotificationEvent(payload=OrderPaid(1), topic="orders")
    assert other.event_id != event.event_id


def test_event_name_override() -> None:
    assert event_name_of(Renamed) == "orders.renamed.v2"
    event = anycqrs.NotificationEvent(payload=Renamed(1))
    assert event.event_name == "orders.renamed.v2"
    explicit = anycqrs.NotificationEvent(payload=OrderPaid(1), event_name="custom")
    assert explicit.event_name == "custom"


def test_event_name_override_is_not_inherited() -> None:
    class Child(Renamed):
        pass

    assert event_name_of(Child) == "Child"


def test_messages_can_be_attrs_or_dataclasses() -> None:
    @attrs.frozen
    class A(anycqrs.Request):
        x: int

    @dataclasses.dataclass
    class B(anycqrs.Request):
        x: int

    @attrs.frozen
    class E(anycqrs.DomainEvent):
        x: int

    assert A(1).x == B(1).x == E(1).x == 1
    assert isinstance(E(1), anycqrs.Event)
    assert isinstance(anycqrs.NotificationEvent(payload=1), anycqrs.Event)
    assert not hasattr(A(1), "__dict__")  # slotted bases keep attrs classes slotted


class TestNotificationEventHash:
    """Notification events hash by `event_id`, consistently with equality."""

    def test_hashable_with_headers_and_an_unhashable_payload(self) -> None:
        @dataclasses.dataclass
        class Mutable:
            items: list[int]

        event = anycqrs.NotificationEvent(payload=Mutable([1]), headers={"a": "b"})
        same = attrs.evolve(event)
        assert event == same
        assert (
            hash(event)
            == hash(same)
            == hash(anycqrs.NotificationEvent(payload=Mutable([2]), event_id=event.event_id))
        )
        assert len({event, same}) == 1

    def test_redeliveries_deduplicate_in_a_set(self) -> None:
        event = anycqrs.NotificationEvent(payload=OrderPaid(order_id=1), topic="orders")
        again = anycqrs.from_dict(anycqrs.NotificationEvent[OrderPaid], anycqrs.to_dict(event))
        other = anycqrs.NotificationEvent(payload=OrderPaid(order_id=1), topic="orders")
        assert {event, again, other} == {event, other}


def test_derived_defaults_survive_evolve_and_an_empty_name_means_the_class_name() -> None:
    event = anycqrs.NotificationEvent(payload=Renamed(1), event_name="")
    assert event.event_name == "orders.renamed.v2"  # empty means "derive it", as the default
    moved = attrs.evolve(event, payload=OrderPaid(2))
    assert moved.event_name == "orders.renamed.v2"  # evolve keeps the name it was given
    assert moved.event_timestamp == event.event_timestamp
    assert moved.event_timestamp.tzinfo is timezone.utc
