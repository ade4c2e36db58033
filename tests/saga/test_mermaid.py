"""SagaMermaid: sequence and class diagrams of sagas (fallbacks shown)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

import pytest

import anycqrs.saga as saga
from anycqrs.diagrams import SagaMermaid
from anycqrs.errors import SagaDefinitionError

from ._sagas import FallbackSaga, OrderContext, OrderSaga, Reserve, Ship, ShipSlow


def _diagram_helpers() -> Any:
    path = Path(__file__).resolve().parents[1] / "test_diagrams.py"
    spec = importlib.util.spec_from_file_location("_anycqrs_test_diagrams", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


helpers = _diagram_helpers()
ARROW = re.compile(r"^(\w+)(->>|-->>)(\w+): (.+)$")


def check_sequence(text: str) -> None:
    """Header, participants declared before use, balanced alt/opt/else/end."""
    lines = text.rstrip("\n").split("\n")
    assert lines[0] == "sequenceDiagram"
    participants: set[str] = set()
    stack: list[str] = []
    for line in lines[1:]:
        body = line.strip()
        if body.startswith("participant "):
            participants.add(body.split()[1])
        elif body.startswith(("alt ", "opt ")):
            stack.append(body.split()[0])
        elif body.startswith("else "):
            assert stack and stack[-1] == "alt", line
        elif body == "end":
            assert stack, line
            stack.pop()
        elif body.startswith("Note over "):
            for name in body[len("Note over ") :].split(":")[0].split(","):
                assert name.strip() in participants, line
        else:
            match = ARROW.match(body)
            assert match, line
            assert match.group(1) in participants and match.group(3) in participants, line
    assert not stack


class Typed(saga.SagaStepHandler[OrderContext, int]):
    async def act(self, context: OrderContext) -> int:
        return 1


class Nothing(saga.SagaStepHandler[OrderContext, None]):
    step_name = "nothing"

    async def act(self, context: OrderContext) -> None:
        return None


class Client(saga.SagaStepHandler[OrderContext, None]):  # clashes with a participant
    async def act(self, context: OrderContext) -> None:
        return None


class MixedSaga(saga.Saga[OrderContext]):
    steps = [
        saga.Fallback(step=Typed, fallback=Nothing),
        Client,
        saga.Fallback(step=Ship, fallback=ShipSlow),
        Reserve,
    ]


def test_sequence_of_a_plain_saga() -> None:
    text = SagaMermaid(OrderSaga).sequence()
    check_sequence(text)
    assert text.startswith("sequenceDiagram\n")
    assert "Client->>Mediator: stream(OrderContext)" in text
    acts = [line.strip() for line in text.splitlines() if ": act(" in line]
    assert acts == [
        "Mediator->>Reserve: act(OrderContext)",
        "Mediator->>Pay: act(OrderContext)",
        "Mediator->>Ship: act(OrderContext)",
    ]
    compensations = [line.strip() for line in text.splitlines() if "compensate(" in line]
    assert compensations == [
        "Mediator->>Pay: compensate(OrderContext)",
        "Mediator->>Reserve: compensate(OrderContext)",
    ]


def test_fallbacks_are_shown() -> None:
    diagram = SagaMermaid(MixedSaga)
    assert diagram.saga is MixedSaga
    text = diagram.sequence()
    check_sequence(text)
    assert "alt Typed succeeds" in text
    assert "Mediator->>Nothing: act(OrderContext) (context restored)" in text
    assert "Typed-->>Mediator: int" in text and "Nothing-->>Mediator: None" in text
    assert "participant Client_2 as Client" in text
    assert "alt Ship acted" in text and "else ShipSlow acted" in text
    classes = diagram.class_diagram()
    helpers.check_class_diagram(classes)
    assert "Typed ..> Nothing : fallback" in classes
    assert "Ship ..> ShipSlow : fallback" in classes
    assert "MixedSaga --> Client_2 : step2" in classes
    assert "SagaStepHandler <|-- ShipSlow" in classes
    assert "MixedSaga ..> OrderContext : context" in classes


def test_single_step_saga_has_no_compensation_block() -> None:
    class One(saga.Saga[OrderContext]):
        steps = [Reserve]

    text = SagaMermaid(One).sequence()
    check_sequence(text)
    assert "compensate" not in text


def test_invalid_input() -> None:
    with pytest.raises(SagaDefinitionError):
        SagaMermaid(int)  # type: ignore[arg-type]
    with pytest.raises(SagaDefinitionError):
        SagaMermaid(saga.Saga)


def test_mermaid_parses_the_diagrams() -> None:
    out = helpers.mermaid_parse(
        SagaMermaid(OrderSaga).sequence(),
        SagaMermaid(OrderSaga).class_diagram(),
        SagaMermaid(MixedSaga).sequence(),
        SagaMermaid(MixedSaga).class_diagram(),
        SagaMermaid(FallbackSaga).sequence(),
    )
    assert out.count("ok") == 5
