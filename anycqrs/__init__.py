"""anycqrs: CQRS and event-driven application core on anyio (asyncio and trio).

The public API is re-exported here; everything in ``_private`` modules may
change without notice. Subpackages: [`anycqrs.requests`][anycqrs.requests],
[`anycqrs.events`][anycqrs.events], [`anycqrs.saga`][anycqrs.saga],
[`anycqrs.brokers`][anycqrs.brokers],
[`anycqrs.outbox`][anycqrs.outbox], [`anycqrs.diagrams`][anycqrs.diagrams],
[`anycqrs.sse`][anycqrs.sse],
[`anycqrs.errors`][anycqrs.errors].
"""

from . import errors as errors
from ._breaker import BreakerState as BreakerState
from ._breaker import BreakerStore as BreakerStore
from ._breaker import CircuitBreaker as CircuitBreaker
from ._breaker import CircuitBreakerLike as CircuitBreakerLike
from ._breaker import MemoryBreakerStore as MemoryBreakerStore
from ._breaker import RedisBreakerStore as RedisBreakerStore
from ._retry import RetryPolicy as RetryPolicy
from .container import Container as Container
from .container import LagomContainer as LagomContainer
from .errors import AnyCQRSError as AnyCQRSError
from .events import EventHandler as EventHandler
from .events import EventHandlerFallback as EventHandlerFallback
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
from .requests import CORRequestHandler as CORRequestHandler
from .requests import RequestHandler as RequestHandler
from .requests import RequestHandlerFallback as RequestHandlerFallback
from .requests import RequestMap as RequestMap
from .requests import RequestMediator as RequestMediator
from .requests import StreamingRequestHandler as StreamingRequestHandler
from .requests import StreamingRequestHandlerFallback as StreamingRequestHandlerFallback
from .requests import StreamingRequestMediator as StreamingRequestMediator
from .saga import Saga as Saga
from .saga import SagaContext as SagaContext
from .saga import SagaMap as SagaMap
from .saga import SagaMediator as SagaMediator
from .saga import SagaStepHandler as SagaStepHandler
from .saga import SagaStepResult as SagaStepResult
from .serialization import from_dict as from_dict
from .serialization import to_dict as to_dict

__version__ = "0.1.0"

__all__ = [
    "AnyCQRSError",
    "BreakerState",
    "BreakerStore",
    "CORRequestHandler",
    "CircuitBreaker",
    "CircuitBreakerLike",
    "Container",
    "DomainEvent",
    "Event",
    "EventHandler",
    "EventHandlerFallback",
    "EventMap",
    "EventMediator",
    "LagomContainer",
    "LoggingMiddleware",
    "MemoryBreakerStore",
    "Middleware",
    "MiddlewareChain",
    "NotificationEvent",
    "RedisBreakerStore",
    "Request",
    "RequestHandler",
    "RequestHandlerFallback",
    "RequestMap",
    "RequestMediator",
    "Response",
    "RetryPolicy",
    "Saga",
    "SagaContext",
    "SagaMap",
    "SagaMediator",
    "SagaStepHandler",
    "SagaStepResult",
    "StreamingRequestHandler",
    "StreamingRequestHandlerFallback",
    "StreamingRequestMediator",
    "errors",
    "from_dict",
    "to_dict",
]
