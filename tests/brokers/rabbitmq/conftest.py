"""Fixtures of the RabbitMQ tests (helpers live in ``rabbitmq_helpers``)."""

from .rabbitmq_helpers import names, warnings_log

__all__ = ["names", "warnings_log"]
