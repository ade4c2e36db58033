"""The container boundary: how mediators get handler instances.

Any object with `async def resolve(type_) -> instance` is an
`anycqrs.Container`. A container that can also hand out a synchronous
factory declares it by being a `FactoryContainer` (`factory(type_)`); the
mediators then build handlers without an `await`. A `lagom.Container` is
accepted as is and wrapped in `LagomContainer`, which autowires constructor
dependencies and is a `FactoryContainer`.

Handlers are resolved **per dispatch**: every `send` asks the container again,
so a handler holds per-dispatch state safely unless the container is told to
make it a singleton.

Per-dispatch scopes: a `ScopedContainer` (`scope()`, an async context
manager giving the scope's resolver) gets one scope per handler run: the
handler and its dependencies are resolved in it, and it closes (its
finalizers learning the outcome) when the handler returned or raised, before
the handler's events are dispatched. The adapters `DishkaContainer`,
`DiContainer`, `DependencyInjectorContainer` and `ScopedLagomContainer` are
scoped; a `dishka.AsyncContainer`, a `di.Container` or a dependency-injector
container passed as `di_container` is wrapped in its adapter automatically
(by type: see `as_container`).
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, TypeVar, runtime_checkable

import lagom
from lagom.definitions import PlainInstance
from lagom.exceptions import DependencyNotDefined, UnresolvableType

from ._containers._dependency_injector import DependencyInjectorContainer
from ._containers._detect import detect as _detect
from ._containers._detect import missing as _missing
from ._containers._di import DiContainer
from ._containers._dishka import DishkaContainer
from ._containers._lagom import ScopedLagomContainer
from ._containers._scope import scoped_factory as _scoped_factory

__all__ = [
    "Container",
    "DependencyInjectorContainer",
    "DiContainer",
    "DishkaContainer",
    "FactoryContainer",
    "LagomContainer",
    "ScopedContainer",
    "ScopedLagomContainer",
    "as_container",
]

T = TypeVar("T")


@runtime_checkable
class Container(Protocol):
    """What anycqrs needs from a DI container: build an instance of a type.

    Example:
        ```python
        class MyContainer:
            async def resolve(self, type_):
                return type_()
        ```
    """

    async def resolve(self, type_: type[T], /) -> T:
        """Return an instance of `type_` (a new one unless it is a singleton)."""
        ...


@runtime_checkable
class FactoryContainer(Container, Protocol):
    """A container that can also hand out a synchronous factory per type.

    The mediators build handlers through `factory(type_)()` on their hot
    paths (no `await`, no coroutine per handler) when the container declares
    this capability; `LagomContainer` does. A factory is asked for once per
    handler class and kept.

    Example:
        ```python
        class MyContainer:
            async def resolve(self, type_):
                return type_()

            def factory(self, type_):
                return type_
        ```
    """

    def factory(self, type_: type[T], /) -> Callable[[], T]:
        """A zero-argument callable returning an instance of `type_`."""
        ...


@runtime_checkable
class ScopedContainer(Container, Protocol):
    """A container with per-dispatch scopes (a unit of work per handler run).

    `scope()` returns an async context manager whose value is the scope's
    resolver (any `Container`). The mediators open one scope per handler
    run (a request, each event handler, each saga step's `act`, each
    consumed message's handlers), resolve the handler from the resolver,
    run it, take its events, then exit the scope with the outcome: the
    handler's exception, or none. The exit runs shielded from cancellation
    with a deadline, so a cancelled dispatch still rolls back. A run nested
    inside another one of the same container (the next link of a chain, a
    `send` from inside a handler) joins the open scope.

    Example:
        ```python
        class PerDispatch:
            async def resolve(self, type_):
                return type_()

            @contextlib.asynccontextmanager
            async def scope(self):
                yield self  # open a transaction here, commit or roll back after
        ```
    """

    def scope(self) -> AbstractAsyncContextManager[Container]:
        """An async context manager: one scope, giving its resolver."""
        ...


_SCALARS = (str, bytes, int, float, bool, complex, object, type)


class LagomContainer:
    """Adapts a `lagom.Container` to `Container`, fast.

    It is a `FactoryContainer`: `factory(type_)` compiles a resolution plan
    on first use of a type and hands it out; a class whose constructor only
    needs other classes is built by direct calls, without lagom's per-call
    reflection. Anything lagom-specific (definitions, singletons, optionals,
    defaults) is delegated to lagom itself.

    Plans are compiled lazily and kept for this adapter's life: add a
    definition before the first dispatch that builds (a class depending on)
    its type. lagom forbids replacing a definition; for scoped or later
    definitions use `container.clone()` and `mediator.with_container(clone)`,
    which wraps it in a new adapter with fresh plans. (Seeing later
    definitions would need lagom's private registry on every build, or its
    public `defined_types`, which copies a set per call.)

    Args:
        container: the lagom container to use (a new one by default).
    """

    __slots__ = ("_container", "_plans")

    def __init__(self, container: lagom.Container | None = None) -> None:
        self._container = container if container is not None else lagom.Container()
        self._plans: dict[type, Callable[[], Any]] = {}

    @property
    def container(self) -> lagom.Container:
        """The wrapped lagom container."""
        return self._container

    async def resolve(self, type_: type[T], /) -> T:
        """Build an instance of `type_`."""
        return self.resolve_now(type_)

    def resolve_now(self, type_: type[T]) -> T:
        """Build an instance of `type_` synchronously."""
        return self.factory(type_)()

    def factory(self, type_: type[T]) -> Callable[[], T]:
        """A zero-argument callable building `type_` (compiled on first use)."""
        plan = self._plans.get(type_)
        if plan is None:
            plan = self._plans[type_] = self._compile(type_, frozenset())
        return plan

    def _delegate(self, type_: type) -> Callable[[], Any]:
        container = self._container
        return lambda: container.resolve(type_)

    def _compile(self, type_: type, stack: frozenset[type]) -> Callable[[], Any]:
        container = self._container
        definition: Any = container.get_definition(type_)
        if definition is not None:
            if isinstance(definition, PlainInstance):
                value = definition.get_instance(container)
                return lambda: value
            get_instance = definition.get_instance
            return lambda: get_instance(container)
        if (
            not isinstance(type_, type)
            or type_ in _SCALARS
            or type_ in stack
            or inspect.isabstract(type_)
            or getattr(type_, "_is_protocol", False)
        ):
            return self._delegate(type_)
        init: Any = type_.__init__  # type: ignore[misc]
        if init is object.__init__:
            return type_
        try:
            signature = inspect.signature(init)
            hints = typing.get_type_hints(init)
        except Exception:  # noqa: BLE001 - unusual constructors: let lagom decide
            return self._delegate(type_)
        positional: list[Callable[[], Any]] = []
        keywords: dict[str, Callable[[], Any]] = {}
        for index, parameter in enumerate(signature.parameters.values()):
            if index == 0:
                continue  # self
            hint = hints.get(parameter.name)
            if (
                parameter.default is not inspect.Parameter.empty
                or parameter.kind not in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
                or not isinstance(hint, type)
                or hint in _SCALARS
            ):
                return self._delegate(type_)
            part = self._compile(hint, stack | {type_})
            if parameter.kind is parameter.KEYWORD_ONLY:
                keywords[parameter.name] = part
            else:
                positional.append(part)
        return _constructor(type_, positional, keywords)


def _constructor(
    type_: type, positional: list[Callable[[], Any]], keywords: dict[str, Callable[[], Any]]
) -> Callable[[], Any]:
    if keywords:
        named = tuple(keywords.items())
        return lambda: type_(*[p() for p in positional], **{k: f() for k, f in named})
    if not positional:
        return type_
    if len(positional) == 1:
        (first,) = positional
        return lambda: type_(first())
    if len(positional) == 2:
        first, second = positional
        return lambda: type_(first(), second())
    parts = tuple(positional)
    return lambda: type_(*[p() for p in parts])


def as_container(container: Any | None) -> Container:
    """Normalize what a user passes as `di_container`.

    `None` gives a new `LagomContainer`; a `lagom.Container` is wrapped;
    a container of a library with a declared adapter is wrapped in it
    (`dishka.AsyncContainer` in `DishkaContainer`, `di.Container` in
    `DiContainer`, a dependency-injector container in
    `DependencyInjectorContainer`), detected by type; anything with an async
    `resolve` is used as is; an object whose `resolve` is synchronous is
    wrapped in a `FactoryContainer` calling it.

    Example:
        ```python
        assert isinstance(as_container(None), LagomContainer)
        ```
    """
    if container is None:
        return LagomContainer()
    if isinstance(container, lagom.Container):
        return LagomContainer(container)
    if isinstance(container, (LagomContainer, _SyncResolve)):
        return container
    adapted = _detect(container)
    if adapted is not None:
        return adapted  # type: ignore[no-any-return]
    if not isinstance(container, Container):
        raise TypeError(
            f"{type(container).__qualname__} is not a container: it needs "
            "`async def resolve(self, type_)`; pass a lagom, dishka (AsyncContainer), "
            "di or dependency-injector container, or wrap yours in an adapter"
        )
    if not isinstance(container, FactoryContainer) and not inspect.iscoroutinefunction(
        container.resolve
    ):
        return _SyncResolve(container)
    return container


class _SyncResolve:
    """A `FactoryContainer` over an object whose `resolve` is synchronous."""

    __slots__ = ("wrapped",)

    def __init__(self, wrapped: Any) -> None:
        self.wrapped = wrapped

    async def resolve(self, type_: type[T], /) -> T:
        result: T = self.wrapped.resolve(type_)
        return result

    def factory(self, type_: type[T], /) -> Callable[[], T]:
        resolve = self.wrapped.resolve
        return lambda: resolve(type_)


def _factory_for(container: Container, type_: type[T]) -> Callable[[], Any]:
    """A callable building `type_` through `container` (private).

    It returns the instance when the container is a `FactoryContainer`
    (see `_is_sync`), otherwise an awaitable of it; for a `ScopedContainer`,
    built in the scope open in the current context.
    """
    if isinstance(container, ScopedContainer):
        return _scoped_factory(container, type_)
    if isinstance(container, FactoryContainer):
        return container.factory(type_)
    resolve = container.resolve
    return lambda: resolve(type_)


def _is_sync(container: Container) -> bool:
    """Whether `_factory_for` returns plain instances for `container` (private)."""
    return isinstance(container, FactoryContainer) and not isinstance(container, ScopedContainer)


def _unbuildable(error: BaseException, handler_type: type) -> Any | None:
    """The dependency a container's "can't build" `error` names (private):
    a class, or its name; `None` when `error` is anything else.

    lagom's resolution errors are recognised, and those of the libraries
    with a declared adapter (dishka's `NoFactoryError`...); a handler
    constructor's own exception is not a resolution failure.
    """
    if isinstance(error, DependencyNotDefined):
        return error.dep_type
    if not isinstance(error, UnresolvableType):
        return _missing(error)
    chain = error.get_unresolvable_deps_sequence()
    if chain and chain[0] == handler_type.__name__:
        chain = chain[1:]
    name = chain[0] if chain else error.dep_type
    try:  # lagom names the type; the handler's constructor has the class
        hints = typing.get_type_hints(handler_type.__init__)  # type: ignore[misc]
    except Exception:  # noqa: BLE001 - unusual constructors: keep the name
        return name
    return next((h for h in hints.values() if getattr(h, "__name__", None) == name), name)
