"""Requests: :class:`RequestHandler`, :class:`RequestMap`, :class:`RequestMediator`,
streaming (:class:`StreamingRequestHandler`, :class:`StreamingRequestMediator`),
chains of responsibility (:class:`CORRequestHandler`) and fallbacks
(:class:`RequestHandlerFallback`, :class:`StreamingRequestHandlerFallback`).

Bootstrap with :func:`anycqrs.requests.bootstrap.bootstrap` or
:func:`anycqrs.requests.bootstrap.bootstrap_streaming`.
"""

from ._chain import CORRequestHandler as CORRequestHandler
from ._fallback import RequestHandlerFallback as RequestHandlerFallback
from ._fallback import StreamingRequestHandlerFallback as StreamingRequestHandlerFallback
from ._handler import RequestHandler as RequestHandler
from ._map import RequestMap as RequestMap
from ._mediator import RequestMediator as RequestMediator
from ._streaming import RequestStream as RequestStream
from ._streaming import StreamingRequestHandler as StreamingRequestHandler
from ._streaming import StreamingRequestMediator as StreamingRequestMediator

__all__ = [
    "CORRequestHandler",
    "RequestHandler",
    "RequestHandlerFallback",
    "RequestMap",
    "RequestMediator",
    "RequestStream",
    "StreamingRequestHandler",
    "StreamingRequestHandlerFallback",
    "StreamingRequestMediator",
]
