"""Requests: :class:`RequestHandler`, :class:`RequestMap`, :class:`RequestMediator`.

Bootstrap with :func:`anycqrs.requests.bootstrap.bootstrap`.
"""

from ._handler import RequestHandler as RequestHandler
from ._map import RequestMap as RequestMap
from ._mediator import RequestMediator as RequestMediator

__all__ = ["RequestHandler", "RequestMap", "RequestMediator"]
