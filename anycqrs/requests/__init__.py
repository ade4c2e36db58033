"""Requests: `RequestHandler`, `RequestMap`, `RequestMediator`,
streaming (`StreamingRequestHandler`, `StreamingRequestMediator`),
chains of responsibility (`CORRequestHandler`) and fallbacks
(`RequestHandlerFallback`, `StreamingRequestHandlerFallback`).

Bootstrap with `anycqrs.requests.bootstrap.bootstrap` or
`anycqrs.requests.bootstrap.bootstrap_streaming`.
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
