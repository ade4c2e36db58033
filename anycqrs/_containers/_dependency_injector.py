"""The dependency-injector adapter (optional: imported when used)."""

from __future__ import annotations

import inspect
import typing
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from dependency_injector.containers import Container as DIContainer

T = TypeVar("T")


class _NoProvider(LookupError):
    """No provider (or several) of a dependency-injector container builds `missing`."""

    def __init__(self, missing: type, message: str) -> None:
        super().__init__(message)
        self.missing = missing


class DependencyInjectorContainer:
    """Adapts a dependency-injector container; a `ScopedContainer`.

    Types are resolved through the provider registered for them: a
    provider's `cls` (a `Factory`, `Singleton`... of a class) or the return
    annotation of its function; nested containers are searched too; an
    abstract type resolves to the one provider of a subclass. Async
    providers are awaited.

    Scopes: dependency-injector's own context-local providers are the
    per-dispatch scope. A `providers.ContextLocalSingleton` is shared
    within one dispatch and fresh in the next; a
    `providers.ContextLocalResource` (a generator) is also shut down when
    the dispatch ends, newest first. dependency-injector does not tell a
    resource's finalizer the outcome: for commit/rollback, commit in the
    handler, or use dishka, `di` or lagom (their finalizers learn it).

    Args:
        container: a `DeclarativeContainer` instance (or a `DynamicContainer`).

    Example:
        ```python
        class Services(containers.DeclarativeContainer):
            session = providers.ContextLocalSingleton(Session)
            handler = providers.Factory(CreateOrderHandler, session=session)

        mediator = bootstrap(di_container=Services(), ...)  # wrapped
        ```
    """

    __slots__ = ("_container", "_local", "_providers", "_resources")

    def __init__(self, container: DIContainer) -> None:
        from dependency_injector import providers

        self._container = container
        self._providers: dict[type, Any] = {}
        self._local: list[Any] = []
        self._resources: list[Any] = []
        self._collect(container, providers)

    def _collect(self, container: Any, providers: Any) -> None:
        for provider in container.providers.values():
            if isinstance(provider, providers.Container):
                self._collect(provider, providers)
                continue
            if isinstance(provider, providers.ContextLocalResource):
                self._resources.append(provider)
            elif isinstance(provider, providers.ContextLocalSingleton):
                self._local.append(provider)
            provided = _provided_type(provider, providers)
            if provided is not None:
                self._providers.setdefault(provided, provider)

    @staticmethod
    def missing(error: BaseException) -> Any | None:
        """The type a `_NoProvider` `error` names, else `None`."""
        return error.missing if isinstance(error, _NoProvider) else None

    @property
    def container(self) -> DIContainer:
        """The wrapped dependency-injector container."""
        return self._container

    def provider(self, type_: type) -> Any:
        """The provider of `type_` (exact, else the one of a subclass).

        Raises:
            LookupError: no provider (or several) builds `type_`.
        """
        provider = self._providers.get(type_)
        if provider is not None:
            return provider
        found = [
            p for t, p in self._providers.items() if isinstance(t, type) and issubclass(t, type_)
        ]
        if len(found) != 1:
            what = "no provider" if not found else f"{len(found)} providers"
            raise _NoProvider(
                type_,
                f"{what} of the dependency-injector container "
                f"{type(self._container).__qualname__} builds {type_.__qualname__}; "
                "add one provider (e.g. providers.Factory) for it",
            )
        self._providers[type_] = found[0]
        return found[0]

    async def resolve(self, type_: type[T], /) -> T:
        """Call the provider of `type_` (awaited if it is async)."""
        made = self.provider(type_)()
        if inspect.isawaitable(made):
            made = await made
        result: T = made
        return result

    @asynccontextmanager
    async def scope(self) -> AsyncIterator[DependencyInjectorContainer]:
        """One dispatch: context-local singletons and resources fresh on
        entry; resources shut down on exit (see the class docs)."""
        for provider in self._local:
            provider.reset()
        try:
            yield self
        finally:
            for resource in reversed(self._resources):
                if resource.initialized:
                    closing = resource.shutdown()
                    if inspect.isawaitable(closing):
                        await closing
            for provider in self._local:
                provider.reset()


def _provided_type(provider: Any, providers: Any) -> type | None:
    if isinstance(provider, (providers.Factory, providers.BaseSingleton)):
        cls = provider.cls
        return cls if isinstance(cls, type) else _returned(cls)
    if isinstance(
        provider, (providers.Callable, providers.Resource, providers.ContextLocalResource)
    ):
        return _returned(provider.provides)
    return None


_YIELDING = {"Iterator", "AsyncIterator", "Generator", "AsyncGenerator"}


def _returned(function: Any) -> type | None:
    """The class `function` returns (or yields, for a resource generator)."""
    try:
        hint = typing.get_type_hints(function).get("return")
    except Exception:  # noqa: BLE001 - unresolvable annotations: not typed
        return None
    origin = typing.get_origin(hint)
    if origin is not None and getattr(origin, "__name__", None) in _YIELDING:
        args = typing.get_args(hint)
        hint = args[0] if args else None
    return hint if isinstance(hint, type) else None
