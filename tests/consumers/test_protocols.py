"""The declared seams: `EventSink`, `EventTypes`, `Transport`, and the deprecated alias."""

from __future__ import annotations

import importlib
import warnings

import pytest

import anycqrs
from anycqrs.consumers import EventSink, EventTypes, InMemoryTransport, Transport
from anycqrs.events import EventMediator


def test_event_mediator_is_an_event_sink(mediator: EventMediator) -> None:
    assert isinstance(mediator, EventSink)
    assert isinstance(mediator.event_map, EventTypes)
    assert not isinstance(object(), EventSink)


def test_in_memory_transport_is_a_transport() -> None:
    assert isinstance(InMemoryTransport(), Transport)
    assert not isinstance(object(), Transport)


def test_the_layer_does_not_import_the_events_package() -> None:
    import pathlib

    root = pathlib.Path(anycqrs.__file__).parent
    for path in (root / "consumers").glob("*.py"):
        source = path.read_text()
        assert "..events" not in source and "anycqrs.events import" not in source, path


@pytest.mark.parametrize("module", ["anycqrs.brokers", "anycqrs.brokers.kafka"])
def test_consumer_retry_policy_is_a_deprecated_alias(module: str) -> None:
    namespace = importlib.import_module(module)
    with pytest.warns(DeprecationWarning, match="anycqrs.RetryPolicy"):
        alias = namespace.ConsumerRetryPolicy
    assert alias is anycqrs.RetryPolicy
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        importlib.import_module(module)  # importing the module itself does not warn
