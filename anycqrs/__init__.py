"""anycqrs: CQRS and event-driven application core on anyio (asyncio and trio).

The public API is re-exported here; everything in ``_private`` modules may
change without notice.
"""

from . import errors as errors
from .container import Container as Container
from .container import LagomContainer as LagomContainer
from .errors import AnyCQRSError as AnyCQRSError
from .events import EventHandler as EventHandler
from .events import EventMap as EventMap
from .events import EventMediator as EventMediator
from .messages import DomainEvent as DomainEvent
from .messages import Event as Event
from .messages import NotificationEvent as NotificationEvent
from .messages import Request as Request
from .messages import Response as Response
from .middlewares import LoggingMiddleware as LoggingMiddleware
from .middlewares import Middleware as Middleware
from .middlewares import MiddlewareChain as MiddlewareChain
from .requests import RequestHandler as RequestHandler
from .requests import RequestMap as RequestMap
from .requests import RequestMediator as RequestMediator
from .serialization import from_dict as from_dict
from .serialization import to_dict as to_dict

__version__ = "0.1.0"

__all__ = [
    "AnyCQRSError",
    "Container",
    "DomainEvent",
    "Event",
    "EventHandler",
    "EventMap",
    "EventMediator",
    "LagomContainer",
    "LoggingMiddleware",
    "Middleware",
    "MiddlewareChain",
    "NotificationEvent",
    "Request",
    "RequestHandler",
    "RequestMap",
    "RequestMediator",
    "Response",
    "errors",
    "from_dict",
    "to_dict",
]
