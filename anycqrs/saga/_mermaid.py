"""Mermaid diagrams of a saga: its steps, fallbacks and compensations."""

from __future__ import annotations

from typing import Any

from .._handlers import declared_args
from ..errors import SagaDefinitionError
from ..requests._mermaid import mermaid_id
from ._saga import Saga, SagaStepHandler

__all__ = ["SagaMermaid"]

_RESERVED = frozenset({"Client", "Mediator", "Storage", "SagaStepHandler", "Saga"})


def _name(value: Any, default: str) -> str:
    return mermaid_id(value.__name__) if isinstance(value, type) else default


class SagaMermaid:
    """Mermaid text for a saga class: who acts in which order, which fallback
    replaces which step, and how completed steps are compensated.

    Example:
        ```python
        diagram = anycqrs.diagrams.SagaMermaid(OrderSaga)
        print(diagram.sequence())       # acts, saves, fallbacks, compensation
        print(diagram.class_diagram())  # the saga, its steps and fallbacks
        ```

    Paste the text in a Markdown ```` ```mermaid ```` block to render it.

    Raises:
        SagaDefinitionError: ``saga`` is not a ``Saga`` subclass with steps.
    """

    __slots__ = ("_ids", "_saga")

    def __init__(self, saga: type[Saga[Any]]) -> None:
        if not (isinstance(saga, type) and issubclass(saga, Saga) and saga.slots):
            raise SagaDefinitionError(f"SagaMermaid needs a Saga subclass with steps, got {saga!r}")
        self._saga = saga
        ids: dict[type, str] = {}
        taken = set(_RESERVED) | {mermaid_id(saga.__name__)}
        for slot in saga.slots:
            for handler in slot.handlers:
                base = mermaid_id(handler.__name__)
                ident, n = base, 1
                while ident in taken:
                    n += 1
                    ident = f"{base}_{n}"
                taken.add(ident)
                ids[handler] = ident
        self._ids = ids

    @property
    def saga(self) -> type[Saga[Any]]:
        """The saga drawn."""
        return self._saga

    def _context(self) -> str:
        return _name(self._saga.context_type, "context")

    @staticmethod
    def _response(handler: type) -> str:
        args = declared_args(handler, SagaStepHandler)
        if len(args) > 1 and isinstance(args[1], type):
            return "None" if args[1] is type(None) else mermaid_id(args[1].__name__)
        return "response"

    def sequence(self) -> str:
        """A ``sequenceDiagram``: each step acts and the saga is saved; a
        fallback runs when its step fails (or its breaker is open); on a
        failure the completed steps compensate in reverse order."""
        context = self._context()
        ids = self._ids
        lines = [
            "sequenceDiagram",
            "    participant Client",
            "    participant Mediator as SagaMediator",
        ]
        for handler, ident in ids.items():
            lines.append(f"    participant {ident} as {handler.__name__}")
        lines.append("    participant Storage as SagaStorage")
        lines.append(f"    Client->>Mediator: stream({context})")
        lines.append("    Mediator->>Storage: create saga (RUNNING)")
        for slot in self._saga.slots:
            primary = ids[slot.primary]
            if slot.fallback is None:
                lines.append(f"    Mediator->>{primary}: act({context})")
                lines.append(f"    {primary}-->>Mediator: {self._response(slot.primary)}")
            else:
                other = ids[slot.fallback.fallback]
                lines.append(f"    alt {slot.primary.__name__} succeeds")
                lines.append(f"        Mediator->>{primary}: act({context})")
                lines.append(f"        {primary}-->>Mediator: {self._response(slot.primary)}")
                lines.append("    else it fails or its circuit is open")
                lines.append(f"        Mediator->>{other}: act({context}) (context restored)")
                response = self._response(slot.fallback.fallback)
                lines.append(f"        {other}-->>Mediator: {response}")
                lines.append("    end")
            lines.append(f"    Mediator->>Storage: save step {slot.index + 1} COMPLETED + context")
            lines.append("    Mediator-->>Client: SagaStepResult")
        lines.append("    Mediator->>Storage: COMPLETED")
        if len(self._saga.slots) > 1:
            lines.append("    opt a step fails")
            lines.append("        Mediator->>Storage: COMPENSATING")
            for slot in reversed(self._saga.slots[:-1]):
                if slot.fallback is None:
                    ident = ids[slot.primary]
                    lines.append(f"        Mediator->>{ident}: compensate({context})")
                    continue
                for position, handler in enumerate(slot.handlers):
                    keyword = "alt" if position == 0 else "else"
                    lines.append(f"        {keyword} {handler.__name__} acted")
                    lines.append(f"            Mediator->>{ids[handler]}: compensate({context})")
                lines.append("        end")
            lines.append("        Mediator->>Storage: FAILED")
            lines.append("        Mediator-->>Client: the step's error")
            lines.append("    end")
        return "\n".join(lines) + "\n"

    def class_diagram(self) -> str:
        """A ``classDiagram``: the saga, its context, its steps in order and
        the fallback links."""
        context = self._context()
        saga_id = mermaid_id(self._saga.__name__)
        lines = [
            "classDiagram",
            "    class SagaStepHandler {",
            "        <<abstract>>",
            f"        +act({context} context) response",
            f"        +compensate({context} context) None",
            "    }",
            f"    class {saga_id} {{",
            f"        +stream({context} context) SagaStepResult",
            "    }",
            f"    class {context}",
            f"    {saga_id} ..> {context} : context",
        ]
        for handler, ident in self._ids.items():
            lines.append(f"    class {ident} {{")
            lines.append(f"        +act({context} context) {self._response(handler)}")
            lines.append(f"        +compensate({context} context) None")
            lines.append("    }")
            lines.append(f"    SagaStepHandler <|-- {ident}")
        for slot in self._saga.slots:
            lines.append(f"    {saga_id} --> {self._ids[slot.primary]} : step{slot.index + 1}")
            if slot.fallback is not None:
                other = self._ids[slot.fallback.fallback]
                lines.append(f"    {self._ids[slot.primary]} ..> {other} : fallback")
        return "\n".join(lines) + "\n"
