"""The container boundary: how mediators get handler instances.

Any object with ``async def resolve(type_) -> instance`` is an
:class:`anycqrs.Container`. A :class:`lagom.Container` is accepted as is and
wrapped in :class:`LagomContainer`, which autowires constructor dependencies.

Handlers are resolved **per dispatch**: every ``send`` asks the container again,
so a handler holds per-dispatch state safely unless the container is told to
make it a singleton.

Request-scoped dependencies (a DB session per dispatch): build a child
container for the scope and use a mediator bound to it::

    scoped = lagom_container.clone()
    scoped[Session] = session
    await mediator.with_container(scoped).send(command)
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Any, Protocol, TypeVar, runtime_checkable

import lagom
from lagom.definitions import PlainInstance

__all__ = ["Container", "LagomContainer", "as_container", "factory_for"]

T = TypeVar("T")


@runtime_checkable
class Container(Protocol):
    """What anycqrs needs from a DI container: build an instance of a type.

    Example (a hand-written container)::

        class MyContainer:
            async def resolve(self, type_):
                return type_()
    """

    async def resolve(self, type_: type[T], /) -> T:
        """Return an instance of ``type_`` (a new one unless it is a singleton)."""
        ...


_SCALARS = (str, bytes, int, float, bool, complex, object, type)


class LagomContainer:
    """Adapts a :class:`lagom.Container` to :class:`Container`, fast.

    Resolution plans are compiled on first use of a type and reused: a class
    whose constructor only needs other classes is built by direct calls, without
    lagom's per-call reflection. Anything lagom-specific (definitions,
    singletons, optionals, defaults) is delegated to lagom itself. Plans are
    recompiled when a definition is added to the container (lagom forbids
    replacing one; use ``container.clone()`` for scoped overrides).

    Args:
        container: the lagom container to use (a new one by default).
    """

    __slots__ = ("_compiled_at", "_container", "_plans", "_registered")

    def __init__(self, container: lagom.Container | None = None) -> None:
        self._container = container if container is not None else lagom.Container()
        self._plans: dict[type, Callable[[], Any]] = {}
        registered = getattr(self._container, "_registered_types", None)
        self._registered: dict[Any, Any] = registered if isinstance(registered, dict) else {}
        self._compiled_at = len(self._registered)

    @property
    def container(self) -> lagom.Container:
        """The wrapped lagom container."""
        return self._container

    async def resolve(self, type_: type[T], /) -> T:
        """Build an instance of ``type_``."""
        return self.resolve_now(type_)

    def resolve_now(self, type_: type[T]) -> T:
        """Build an instance of ``type_`` synchronously."""
        return self.factory(type_)()

    def factory(self, type_: type[T]) -> Callable[[], T]:
        """A zero-argument callable building ``type_`` (used on hot paths)."""
        registered = self._registered
        plan: Callable[[], Any] = type_
        seen = -1

        def build() -> T:
            nonlocal plan, seen
            if seen != len(registered):
                seen = len(registered)
                if self._compiled_at != seen:  # definitions changed: recompile everything
                    self._plans.clear()
                    self._compiled_at = seen
                plan = self._plans.get(type_) or self._compile(type_, frozenset())
                self._plans[type_] = plan
            return plan()  # type: ignore[no-any-return]

        return build

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
    """Normalize what a user passes as ``di_container``.

    ``None`` gives a new :class:`LagomContainer`; a ``lagom.Container`` is
    wrapped; anything with an async ``resolve`` is used as is.
    """
    if container is None:
        return LagomContainer()
    if isinstance(container, lagom.Container):
        return LagomContainer(container)
    if not callable(getattr(container, "resolve", None)):
        raise TypeError(
            f"{type(container).__qualname__} is not a container: it needs "
            "`async def resolve(self, type_)`, or pass a lagom.Container"
        )
    return typing.cast(Container, container)


def factory_for(container: Container, type_: type[T]) -> Callable[[], Any]:
    """A callable that builds ``type_`` through ``container``.

    It is synchronous (returns the instance) when the container offers a
    ``factory`` method or a synchronous ``resolve``; otherwise it returns an
    awaitable. Callers check with :func:`inspect.isawaitable` only on the slow
    path; see :func:`is_sync`.
    """
    factory = getattr(container, "factory", None)
    if callable(factory):
        return typing.cast(Callable[[], Any], factory(type_))
    resolve = container.resolve
    return lambda: resolve(type_)


def is_sync(container: Container) -> bool:
    """Whether :func:`factory_for` returns plain instances for this container."""
    if callable(getattr(container, "factory", None)):
        return True
    return not inspect.iscoroutinefunction(container.resolve)
