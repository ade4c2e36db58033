"""Saga definitions: contexts, steps, fallbacks and the ``Saga`` class."""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Sequence
from typing import Any, ClassVar, Generic, TypeVar
from uuid import UUID

import attrs
from typing_extensions import TypeVar as DefaultTypeVar

from .._breaker import CircuitBreakerLike
from .._handlers import EventSource, declared_args
from .._retry import RetryPolicy
from ..errors import SagaDefinitionError

__all__ = [
    "Fallback",
    "Saga",
    "SagaContext",
    "SagaStepHandler",
    "Slot",
]

CtxT = TypeVar("CtxT", bound="SagaContext")
CtxT_contra = DefaultTypeVar("CtxT_contra", bound="SagaContext", contravariant=True)
RespT = DefaultTypeVar("RespT", default=Any, covariant=True)


class SagaContext:
    """Base class of saga contexts: the mutable state a saga's steps share.

    Derive a mutable attrs class (``@attrs.define``) or a dataclass from it. The
    context is persisted through the converter (``to_dict``) after every step,
    so keep it to plain data (numbers, strings, UUIDs, datetimes, lists, nested
    attrs classes...).

    Example:
        ```python
        @attrs.define
        class OrderContext(anycqrs.SagaContext):
            order_id: int
            reservation_id: str | None = None
        ```
    """

    __slots__ = ()


class SagaStepHandler(EventSource, abc.ABC, Generic[CtxT_contra, RespT]):
    """One step of a saga: ``act`` does the work, ``compensate`` undoes it.

    Steps are resolved from the container once per saga run, so ``act`` and
    ``compensate`` of one run see the same instance. Events the step
    `emit`s during ``act`` are dispatched before the step's result is
    yielded.

    The python-cqrs idiom works too: an ``events`` property returning a
    copy of the step's own list plus a ``clear_events()`` method; the engine
    calls ``clear_events()`` when it takes the events, so each is dispatched
    once (a singleton step included). The events of a failed or cancelled
    ``act`` are dropped, never dispatched by a later run.

    Class attributes a step may set:

    * ``step_name``: its stable identity in the step log (default: the class
      name). Set it explicitly before renaming the class, or recovery of sagas
      logged under the old name will not find the step.
    * ``timeout``: seconds one ``act`` (or ``compensate``) attempt may take;
      a timeout is a failure.
    * ``retry_policy``: a `RetryPolicy` for ``act``.

    While a step runs, `saga_id` and `idempotency_key`
    (``"<saga id>:<step name>"``) tell it which saga it acts for, so a re-run
    after a crash can detect that it already acted.

    Example:
        ```python
        class ReserveStep(anycqrs.SagaStepHandler[OrderContext, Reserved]):
            def __init__(self, stock: Stock) -> None:
                self.stock = stock

            async def act(self, context: OrderContext) -> Reserved:
                context.reservation_id = await self.stock.reserve(
                    context.order_id, key=self.idempotency_key
                )
                return Reserved(context.reservation_id)

            async def compensate(self, context: OrderContext) -> None:
                await self.stock.release(context.reservation_id)
        ```
    """

    step_name: ClassVar[str] = "SagaStepHandler"
    timeout: ClassVar[float | None] = None
    retry_policy: ClassVar[RetryPolicy | None] = None

    _anycqrs_saga_id: UUID | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "step_name" not in cls.__dict__:
            cls.step_name = cls.__name__
        elif not isinstance(cls.__dict__["step_name"], str) or not cls.step_name:
            raise SagaDefinitionError(f"{cls.__qualname__}.step_name must be a non-empty string")

    @abc.abstractmethod
    async def act(self, context: CtxT_contra, /) -> RespT | None:
        """Do the step's work; mutate ``context`` to pass data on."""

    async def compensate(self, context: CtxT_contra, /) -> None:
        """Undo what `act` did (default: nothing to undo)."""

    @property
    def saga_id(self) -> UUID:
        """The id of the saga this step is running for."""
        saga_id = self._anycqrs_saga_id
        if saga_id is None:
            raise RuntimeError(f"{type(self).__qualname__} is not running inside a saga")
        return saga_id

    @property
    def idempotency_key(self) -> str:
        """``"<saga id>:<step name>"``: stable across re-runs of this step."""
        return f"{self.saga_id}:{self.step_name}"


def _breaker(_instance: Any, _attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not isinstance(value, CircuitBreakerLike):
        raise SagaDefinitionError(
            "Fallback.circuit_breaker must be an anycqrs.CircuitBreaker (or have its "
            f"is_open / record_success / record_failure methods), got {value!r}"
        )


def _step_class(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not (isinstance(value, type) and issubclass(value, SagaStepHandler)):
        raise SagaDefinitionError(
            f"Fallback.{attribute.name} must be a SagaStepHandler subclass, got {value!r}"
        )


def _exceptions(value: Any) -> tuple[type[BaseException], ...]:
    if isinstance(value, type):
        value = (value,)
    return tuple(value)


@attrs.frozen
class Fallback:
    """A saga step with a fallback: ``fallback`` acts when ``step`` fails.

    ``fallback`` runs when ``step.act`` raises one of ``failure_exceptions``
    (any exception when empty) or when ``circuit_breaker`` is open for
    ``step``; the context is restored to its state before ``step`` first. Only
    the handler that succeeded is compensated later.

    Attributes:
        step: the primary step class.
        fallback: the step class to run instead.
        failure_exceptions: exceptions that trigger the fallback (empty: any).
        circuit_breaker: optional breaker guarding ``step``: any
            `anycqrs.CircuitBreakerLike` (e.g. `anycqrs.CircuitBreaker`), the
            one breaker protocol of request, event and saga fallbacks.

    Example:
        ```python
        class OrderSaga(anycqrs.Saga[OrderContext]):
            steps = [ReserveStep, Fallback(step=CardPay, fallback=InvoicePay)]
        ```
    """

    step: type[SagaStepHandler[Any, Any]] = attrs.field(validator=_step_class)
    fallback: type[SagaStepHandler[Any, Any]] = attrs.field(validator=_step_class)
    failure_exceptions: tuple[type[BaseException], ...] = attrs.field(
        default=(), converter=_exceptions
    )
    circuit_breaker: CircuitBreakerLike | None = attrs.field(default=None, validator=_breaker)


@attrs.frozen
class Slot:
    """One position in a saga's step list (internal): a step or a fallback pair."""

    index: int
    primary: type[SagaStepHandler[Any, Any]]
    fallback: Fallback | None

    @property
    def handlers(self) -> tuple[type[SagaStepHandler[Any, Any]], ...]:
        """The handler classes that may act in this slot."""
        if self.fallback is None:
            return (self.primary,)
        return (self.primary, self.fallback.fallback)


def _context_of(step: type) -> Any:
    args = declared_args(step, SagaStepHandler)
    return args[0] if args else None


def _fits(step_context: Any, saga_context: type) -> bool:
    if step_context is None or isinstance(step_context, TypeVar) or step_context is Any:
        return True
    if isinstance(step_context, str):  # unresolved forward reference: trust the user
        return True
    return isinstance(step_context, type) and issubclass(saga_context, step_context)


def _is_context_class(value: Any) -> bool:
    return isinstance(value, type) and (
        attrs.has(value) or dataclasses.is_dataclass(value) or issubclass(value, SagaContext)
    )


def _is_frozen(context: type) -> bool:
    """Whether instances of `context` refuse attribute assignment (a frozen
    attrs class or dataclass): one field set on a bare instance, no
    `__init__` run."""
    if attrs.has(context):
        fields = [f.name for f in attrs.fields(context)]
    elif dataclasses.is_dataclass(context):
        fields = [f.name for f in dataclasses.fields(context)]
    else:
        return False
    probe = object.__new__(context)
    try:
        setattr(probe, fields[0] if fields else "_anycqrs_probe", None)
    except (attrs.exceptions.FrozenInstanceError, dataclasses.FrozenInstanceError):
        return True
    except Exception:  # noqa: BLE001 - a validator refusing None: not frozen
        return False
    return False


class Saga(Generic[CtxT]):
    """An orchestrated saga: an ordered list of steps over one context type.

    The class is checked when it is defined: the context must be a mutable
    attrs class or dataclass (a frozen one is a `SagaDefinitionError`: steps
    pass data on by mutating it), every entry of ``steps`` must be a
    `SagaStepHandler` subclass or a `Fallback`, whose declared context type
    accepts the saga's context, and step names must be unique.

    ``saga_name`` (default: the class name) identifies the saga in storage;
    recovery finds the class by it, so keep it stable.

    Example:
        ```python
        class OrderSaga(anycqrs.Saga[OrderContext]):
            steps = [ReserveStep, PayStep, Fallback(step=ShipFast, fallback=ShipSlow)]
        ```
    """

    steps: ClassVar[Sequence[type[SagaStepHandler[Any, Any]] | Fallback]] = ()
    saga_name: ClassVar[str] = "Saga"
    context_type: ClassVar[type[Any]] = SagaContext
    slots: ClassVar[tuple[Slot, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "saga_name" not in cls.__dict__:
            cls.saga_name = cls.__name__
        args = declared_args(cls, Saga)
        if args and isinstance(args[0], type):
            cls.context_type = args[0]
        if "steps" in cls.__dict__:
            cls.slots = _validate(cls)

    @classmethod
    def step_names(cls) -> tuple[str, ...]:
        """Every step identity this saga may log, in order (fallbacks after their step)."""
        return tuple(h.step_name for slot in cls.slots for h in slot.handlers)


def _validate(saga: type[Saga[Any]]) -> tuple[Slot, ...]:
    name = saga.__qualname__
    context = saga.context_type
    if context is SagaContext and not declared_args(saga, Saga):
        raise SagaDefinitionError(
            f"{name} must name its context type: class {saga.__name__}(Saga[MyContext])"
        )
    if not _is_context_class(context):
        raise SagaDefinitionError(
            f"{name}: the context {context!r} must be an attrs class or a dataclass "
            "deriving from SagaContext"
        )
    if _is_frozen(context):
        raise SagaDefinitionError(
            f"{name}: the context {context.__qualname__} is frozen, but steps pass data on "
            "by mutating the context; define it with @attrs.define or a @dataclass that "
            "is not frozen"
        )
    steps = saga.__dict__["steps"]
    if isinstance(steps, (str, bytes)) or not isinstance(steps, Sequence) or not steps:
        raise SagaDefinitionError(f"{name}.steps must be a non-empty list of steps")
    slots: list[Slot] = []
    seen: dict[str, type] = {}
    for index, entry in enumerate(steps):
        if isinstance(entry, Fallback):
            slot = Slot(index, entry.step, entry)
        elif isinstance(entry, type) and issubclass(entry, SagaStepHandler):
            slot = Slot(index, entry, None)
        else:
            raise SagaDefinitionError(
                f"{name}.steps[{index}] is {entry!r}: expected a SagaStepHandler subclass "
                "or a saga Fallback"
            )
        for handler in slot.handlers:
            if inspect_abstract(handler):
                raise SagaDefinitionError(
                    f"{name}.steps[{index}]: {handler.__qualname__} does not implement act()"
                )
            declared = _context_of(handler)
            if not _fits(declared, context):
                raise SagaDefinitionError(
                    f"{name}.steps[{index}]: {handler.__qualname__} acts on "
                    f"{getattr(declared, '__qualname__', declared)}, which does not accept "
                    f"the saga's context {context.__qualname__}"
                )
            other = seen.get(handler.step_name)
            if other is not None:
                raise SagaDefinitionError(
                    f"{name}: step name {handler.step_name!r} is used by both "
                    f"{other.__qualname__} and {handler.__qualname__}; step names must be "
                    "unique within a saga (set step_name on one of them)"
                )
            seen[handler.step_name] = handler
        slots.append(slot)
    return tuple(slots)


def inspect_abstract(cls: type) -> bool:
    """Whether ``cls`` still has abstract methods."""
    return bool(getattr(cls, "__abstractmethods__", None))
