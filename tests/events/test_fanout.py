"""The sequential fan-out: follow-ups taken from the handler, targets looked up once per type."""

from __future__ import annotations

import attrs
import lagom
import pytest

import anycqrs
from anycqrs.events.bootstrap import bootstrap

pytestmark = pytest.mark.anyio


@attrs.frozen
class Split(anycqrs.DomainEvent):
    n: int


@attrs.frozen
class Piece(anycqrs.DomainEvent):
    n: int


@attrs.frozen
class Other(anycqrs.DomainEvent):
    n: int


class Splitter(anycqrs.EventHandler[Split]):
    """One instance for every call (a singleton): its events list is reused."""

    def __init__(self) -> None:
        self.fail_at: int | None = None

    async def handle(self, event: Split) -> None:
        self.emit(Piece(event.n * 10), Piece(event.n * 10 + 1))
        if event.n == self.fail_at:
            raise LookupError(event.n)


class Seen:
    def __init__(self) -> None:
        self.items: list[tuple[str, int]] = []


class OnPiece(anycqrs.EventHandler[Piece]):
    def __init__(self, seen: Seen) -> None:
        self.seen = seen

    async def handle(self, event: Piece) -> None:
        self.seen.items.append(("piece", event.n))
        if event.n == 11:
            self.emit(Other(event.n))


class OnOther(anycqrs.EventHandler[Other]):
    def __init__(self, seen: Seen) -> None:
        self.seen = seen

    async def handle(self, event: Other) -> None:
        self.seen.items.append(("other", event.n))


@pytest.fixture
def parts() -> tuple[anycqrs.EventMediator, Splitter, Seen]:
    splitter, seen = Splitter(), Seen()
    container = lagom.Container()
    container[Splitter] = splitter
    container[Seen] = seen

    def bind(events: anycqrs.EventMap) -> None:
        events.bind(Split, Splitter)
        events.bind(Piece, OnPiece)
        events.bind(Other, OnOther)

    return bootstrap(di_container=container, events_mapper=bind), splitter, seen


async def test_a_singletons_follow_ups_are_dispatched_once_each(
    parts: tuple[anycqrs.EventMediator, Splitter, Seen],
) -> None:
    mediator, splitter, seen = parts
    await mediator.send(Split(1))
    await mediator.send(Split(2))
    assert seen.items == [
        ("piece", 10),
        ("piece", 11),
        ("other", 11),
        ("piece", 20),
        ("piece", 21),
    ]
    assert not splitter.events  # taken: nothing left on the handler


async def test_mixed_types_in_one_generation_reach_their_own_handlers(
    parts: tuple[anycqrs.EventMediator, Splitter, Seen],
) -> None:
    mediator, _, seen = parts
    await mediator.send_many([Piece(1), Other(2), Piece(3), Piece(4), Other(5)])
    assert seen.items == [
        ("piece", 1),
        ("other", 2),
        ("piece", 3),
        ("piece", 4),
        ("other", 5),
    ]


async def test_a_failed_calls_events_are_dropped(
    parts: tuple[anycqrs.EventMediator, Splitter, Seen],
) -> None:
    mediator, splitter, seen = parts
    splitter.fail_at = 1
    with pytest.raises(LookupError):
        await mediator.send(Split(1))
    assert seen.items == [] and not splitter.events
    await mediator.send(Split(2))  # nothing of the failed call comes along
    assert seen.items == [("piece", 20), ("piece", 21)]
