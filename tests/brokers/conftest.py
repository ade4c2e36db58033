"""Fixtures of the broker tests (helpers live in ``broker_helpers``)."""

from .broker_helpers import mediator, recorder

__all__ = ["mediator", "recorder"]
