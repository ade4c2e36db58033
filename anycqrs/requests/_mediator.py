from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from .._endpoint import resolution_failed, take_list
from .._routing import RequestEndpoint, Route, describe
from ..errors import BindingError, RequestHandlerDoesNotExist
from ..messages import Request
from ..observability import _tracing
from ._base import RequestMediatorBase
from ._streaming import is_streaming_handler

R = TypeVar("R")

Pipeline = Callable[[Any], Awaitable[Any]]


class RequestMediator(RequestMediatorBase):
    """Sends commands and queries to their handlers.

    For each `send`: the middlewares run (outermost first), the handler is
    resolved from the container and runs, the events it emitted are dispatched
    (domain events to their handlers, notification events to their handlers
    and to the broker), then the response travels back out through the
    middlewares.

    Errors: the handler's exception reaches the caller unchanged and its events
    are not dispatched; if event dispatch fails after the handler succeeded,
    `anycqrs.errors.EventDispatchError` is raised with the handler's
    response in `.response`.

    Build one with `anycqrs.requests.bootstrap.bootstrap`.
    """

    __slots__ = ("_pipelines",)

    def _setup(self, original: Any) -> None:
        self._pipelines: dict[type, Pipeline] = {}

    async def send(self, request: Request[R]) -> R:
        """Handle `request` and return its handler's response.

        Raises:
            RequestHandlerDoesNotExist: nothing is bound to the request's type.
            BindingError: a streaming handler is bound to it.
            EventDispatchError: the handler succeeded, its events failed.
            Exception: whatever the handler raised, unchanged.
        """
        pipeline = self._pipelines.get(type(request))
        if pipeline is None:
            pipeline = self._pipeline(type(request))
        result: R = await pipeline(request)
        return result

    def _pipeline(self, request_type: type) -> Pipeline:
        binding = self._requests.get(request_type)
        if binding is None:
            raise RequestHandlerDoesNotExist(request_type)
        streams = binding.streaming if isinstance(binding, Route) else is_streaming_handler(binding)
        if streams:
            raise BindingError(
                f"{request_type.__qualname__} is bound to a streaming handler "
                f"({describe(binding)}): stream it with a "
                "StreamingRequestMediator (bootstrap_streaming), not RequestMediator.send"
            )
        endpoint = self._endpoint(binding)
        pipeline = self._chain.wrap(endpoint) if len(self._chain) else endpoint
        if self._tracer is not None:
            pipeline = _traced(self._tracer, request_type, binding, pipeline)
        self._pipelines[request_type] = pipeline
        return pipeline

    def _endpoint(self, binding: Any) -> Pipeline:
        """The handler's endpoint followed by the dispatch of its events."""
        dispatch_after = self._events.dispatch_after
        inner: RequestEndpoint
        if isinstance(binding, Route):
            inner = self._handlers.binding(binding)
        else:
            endpoint = self._handlers.get(binding)
            make = endpoint.fast
            if make is not None:  # the endpoint's fast path, inlined

                async def fast(request: Any) -> Any:
                    try:
                        handler = make()
                    except Exception as error:
                        resolution_failed(binding, request, error)
                        raise
                    try:
                        response = await handler.handle(request)
                    finally:  # a failed call's events are dropped with it (singletons)
                        taken = take_list(handler) if handler._anycqrs_events else None
                    if taken:
                        await dispatch_after(response, taken)
                    return response

                return fast
            inner = endpoint.run

        async def pipeline(request: Any) -> Any:
            response, events = await inner(request)
            if events:
                await dispatch_after(response, events)
            return response

        return pipeline


def _traced(tracer: Any, request_type: type, binding: Any, pipeline: Pipeline) -> Pipeline:
    """`pipeline` inside a `send <Request>` span (middlewares, handler and
    the dispatch of its events are its children)."""
    name = f"send {request_type.__name__}"
    attributes = {
        "anycqrs.request.type": request_type.__qualname__,
        "anycqrs.handler": describe(binding),
    }

    async def traced(request: Any) -> Any:
        with _tracing.span(tracer, name, _tracing.INTERNAL, attributes):
            return await pipeline(request)

    return traced
