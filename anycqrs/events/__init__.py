"""Events: :class:`EventHandler`, :class:`EventMap`, :class:`EventMediator`.

Bootstrap with :func:`anycqrs.events.bootstrap.bootstrap`.
"""

from ._dispatcher import EventDispatcher as EventDispatcher
from ._fallback import EventHandlerFallback as EventHandlerFallback
from ._handler import EventHandler as EventHandler
from ._map import EventMap as EventMap
from ._mediator import EventMediator as EventMediator

__all__ = ["EventDispatcher", "EventHandler", "EventHandlerFallback", "EventMap", "EventMediator"]
