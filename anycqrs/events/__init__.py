"""Events: `EventHandler`, `EventMap`, `EventMediator`, `EventHandlerFallback`.

Bootstrap with `anycqrs.events.bootstrap.bootstrap`. The dispatcher every
mediator shares lives in the private `anycqrs.events._dispatcher`.
"""

from ._fallback import EventHandlerFallback as EventHandlerFallback
from ._handler import EventHandler as EventHandler
from ._map import EventMap as EventMap
from ._mediator import EventMediator as EventMediator

__all__ = ["EventHandler", "EventHandlerFallback", "EventMap", "EventMediator"]
