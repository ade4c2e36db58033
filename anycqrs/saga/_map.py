"""``SagaMap``: which saga runs for which context type."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..errors import SagaDefinitionError
from ._saga import Saga

__all__ = ["SagaMap"]


class SagaMap:
    """Binds context types to saga classes (one saga per context type).

    Recovery finds a stored saga's class by its ``saga_name``, so every saga
    that may need recovery must be bound in the mediator's map.

    Example:
        ```python
        sagas = SagaMap()
        sagas.bind(OrderContext, OrderSaga)
        ```
    """

    __slots__ = ("_by_context", "_by_name")

    def __init__(self) -> None:
        self._by_context: dict[type, type[Saga[Any]]] = {}
        self._by_name: dict[str, type[Saga[Any]]] = {}

    def bind(self, context_type: type, saga_type: type[Saga[Any]]) -> None:
        """Bind ``saga_type`` to ``context_type``.

        Raises:
            SagaDefinitionError: the context type is already bound, the saga's
                name is taken, or the saga does not run on this context type.
        """
        if not (isinstance(saga_type, type) and issubclass(saga_type, Saga) and saga_type.slots):
            raise SagaDefinitionError(
                f"{saga_type!r} is not a saga: bind a Saga subclass with steps"
            )
        if not isinstance(context_type, type) or not issubclass(
            context_type, saga_type.context_type
        ):
            raise SagaDefinitionError(
                f"{saga_type.__qualname__} runs on {saga_type.context_type.__qualname__}, "
                f"not on {context_type!r}"
            )
        if context_type in self._by_context:
            raise SagaDefinitionError(
                f"{context_type.__qualname__} is already bound to "
                f"{self._by_context[context_type].__qualname__}"
            )
        named = self._by_name.get(saga_type.saga_name)
        if named is not None and named is not saga_type:
            raise SagaDefinitionError(
                f"saga name {saga_type.saga_name!r} is used by {named.__qualname__} and "
                f"{saga_type.__qualname__}; set saga_name on one of them"
            )
        self._by_context[context_type] = saga_type
        self._by_name[saga_type.saga_name] = saga_type

    def get(self, context_type: type) -> type[Saga[Any]] | None:
        """The saga bound to ``context_type`` (or to one of its bases), or ``None``."""
        saga = self._by_context.get(context_type)
        if saga is None:
            for base in context_type.__mro__[1:]:
                saga = self._by_context.get(base)
                if saga is not None:
                    self._by_context[context_type] = saga
                    break
        return saga

    def by_name(self, saga_name: str) -> type[Saga[Any]] | None:
        """The bound saga whose ``saga_name`` is ``saga_name``, or ``None``."""
        return self._by_name.get(saga_name)

    def items(self) -> Iterator[tuple[type, type[Saga[Any]]]]:
        """``(context_type, saga_type)`` pairs in bind order."""
        return iter(list(self._by_context.items()))

    def __len__(self) -> int:
        return len(self._by_name)

    def __contains__(self, context_type: object) -> bool:
        return context_type in self._by_context

    def __repr__(self) -> str:
        inner = ", ".join(f"{k.__qualname__}: {v.__qualname__}" for k, v in self.items())
        return f"SagaMap({{{inner}}})"
