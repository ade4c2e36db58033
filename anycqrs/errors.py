"""The anycqrs exception hierarchy.

Every error the library raises derives from `AnyCQRSError`; some also derive
from the built-in exception a Python programmer would expect (`TypeError` for
bad bindings, `LookupError` for missing things, `ValueError` for bad data):

```
AnyCQRSError
├── BindingError (TypeError) ............ a map binding or a definition is invalid
│   └── SagaDefinitionError (SagaError)
├── RequestHandlerDoesNotExist (LookupError)
├── HandlerResolutionError (LookupError)  the container can't build a handler's dependency
├── SerializationError (ValueError) ..... an object can't become plain data
├── DeserializationError (ValueError) ... plain data doesn't fit the type asked for
│   └── UnknownEventName ................ no NotificationEvent[P] bound under the name
├── EventDispatchError .................. the handler succeeded, its events failed
├── CircuitBreakerOpen
├── ConcurrencyError .................... an optimistic-concurrency check failed
│   └── SagaConcurrencyError (SagaError)
├── SagaError
│   ├── SagaDefinitionError
│   ├── SagaNotFoundError (LookupError)
│   ├── SagaAlreadyExistsError
│   ├── SagaConcurrencyError
│   └── SagaStateError
├── InboxError .......................... the inbox is misused or misconfigured
│   └── InboxKeyError (ValueError) ...... a message has no id usable as an inbox key
└── BrokerError ......................... a broker refused or failed
    ├── BrokerDeliveryError ............. some messages of a publish not confirmed
    ├── ConnectionLost .................. the broker connection went away
    ├── DeadLetterError ................. the dead-letter destination is unusable
    └── MessageHandlingError ............ a consumed message kept failing, no DLQ
```

Catch `AnyCQRSError` to handle anything anycqrs raises; a handler's own
exception always reaches the caller unchanged, never wrapped in these.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar, get_args, get_origin

T = TypeVar("T")

__all__ = [
    "AnyCQRSError",
    "BindingError",
    "BrokerDeliveryError",
    "BrokerError",
    "CircuitBreakerOpen",
    "ConcurrencyError",
    "ConnectionLost",
    "DeadLetterError",
    "DeserializationError",
    "EventDispatchError",
    "HandlerResolutionError",
    "InboxError",
    "InboxKeyError",
    "MessageHandlingError",
    "RequestHandlerDoesNotExist",
    "SagaAlreadyExistsError",
    "SagaConcurrencyError",
    "SagaDefinitionError",
    "SagaError",
    "SagaNotFoundError",
    "SagaStateError",
    "SerializationError",
    "UnknownEventName",
]


def _short(alias: Any) -> str:
    origin = get_origin(alias)
    args = ", ".join(getattr(a, "__qualname__", repr(a)) for a in get_args(alias))
    return f"{getattr(origin, '__qualname__', repr(origin))}[{args}]"


def _name(type_: Any) -> str:
    if get_origin(type_) is not None:
        return _short(type_)
    return getattr(type_, "__qualname__", None) or repr(type_)


class AnyCQRSError(Exception):
    """Root of every exception raised by anycqrs."""


class BindingError(AnyCQRSError, TypeError):
    """A map binding is invalid: duplicate binding, wrong handler type, or
    mismatched request / response / event types. Raised at bind time."""


class RequestHandlerDoesNotExist(AnyCQRSError, LookupError):
    """No handler is bound for the request's type."""

    def __init__(self, request_type: type) -> None:
        self.request_type = request_type
        super().__init__(
            f"No handler bound for {request_type.__qualname__}; bind one in a RequestMap "
            "(commands_mapper or queries_mapper)"
        )


class HandlerResolutionError(AnyCQRSError, LookupError):
    """The container could not build a handler: one of its dependencies (or
    one of theirs) can't be resolved. Raised when the handler is resolved for
    a message; the container's own error is the `__cause__`.

    Attributes:
        handler_type: the handler class being built.
        message_type: the type of the message it was resolved for (`None`
            when built outside a dispatch).
        missing: the dependency the container could not build (a class, or
            its name when the container only reports a name).
    """

    def __init__(self, handler_type: type, message_type: Any, missing: Any) -> None:
        self.handler_type = handler_type
        self.message_type = message_type
        self.missing = missing
        name = getattr(missing, "__qualname__", None) or str(missing)
        target = "" if message_type is None else f" for {_name(message_type)}"
        super().__init__(
            f"Cannot build {handler_type.__qualname__}{target}: the container cannot "
            f"build its dependency {name}; define it in the container (for lagom: "
            f"`container[{name}] = ...`) or give the parameter a default"
        )


class SerializationError(AnyCQRSError, ValueError):
    """An object could not be turned into plain data."""


class DeserializationError(AnyCQRSError, ValueError):
    """Plain data could not be turned into the requested type.

    Attributes:
        target: the type that was asked for, always a type: a class, a generic
            alias such as `NotificationEvent[OrderPaid]`, or `typing.Any` for
            JSON parsed without a type.
        errors: one human-readable line per problem, each naming the field path
            (for example `"required field missing @ $.payload.order_id"`).
    """

    def __init__(self, target: Any, errors: Sequence[str]) -> None:
        if isinstance(target, str):
            raise TypeError(f"DeserializationError needs the target type, not {target!r}")
        self.target = target
        self.errors = tuple(errors)
        if get_origin(target) is not None:
            name = _short(target)
        else:
            name = str(getattr(target, "__qualname__", None) or getattr(target, "_name", target))
        super().__init__(f"Cannot build {name}: " + "; ".join(self.errors))


class UnknownEventName(DeserializationError):
    """A message names an event that no ``NotificationEvent[P]`` binding knows."""

    def __init__(self, event_name: str) -> None:
        from .messages import NotificationEvent

        self.event_name = event_name
        super().__init__(
            NotificationEvent,
            [f"unknown event_name {event_name!r}; bind NotificationEvent[Payload] in an EventMap"],
        )


class EventDispatchError(AnyCQRSError):
    """Dispatching the events produced by a successful handler failed.

    The handler's result is never lost: it is available as `response`.

    Attributes:
        response: what the handler returned (``None`` for event handlers).
        exceptions: the underlying exception(s), in the order they were raised.

    Args:
        after_handler: `False` when no handler result is involved (handlers
            of an event sent with `EventMediator.send` failed together); the
            message then says so instead of "the handler succeeded".
    """

    def __init__(
        self, response: Any, exceptions: Sequence[BaseException], *, after_handler: bool = True
    ) -> None:
        self.response = response
        self.exceptions = tuple(exceptions)
        causes = ", ".join(f"{type(e).__name__}: {e}" for e in self.exceptions)
        if after_handler:
            message = (
                f"The handler succeeded but dispatching its events failed ({causes}); "
                "the handler's result is in .response"
            )
        else:  # `EventMediator.send`: the event's own handlers failed together
            message = f"{len(self.exceptions)} event handlers failed together ({causes})"
        super().__init__(message)


class BrokerError(AnyCQRSError):
    """A message broker refused or failed to deliver a message."""


class ConcurrencyError(AnyCQRSError):
    """An optimistic-concurrency check failed: someone else wrote first."""


class SagaError(AnyCQRSError):
    """Base class of saga errors."""


class SagaDefinitionError(SagaError, BindingError):
    """A saga class or a ``SagaMap`` binding is invalid (raised at definition
    or bind time): a step that is not a ``SagaStepHandler``, a step whose
    context type does not fit the saga's, duplicate step names..."""


class SagaNotFoundError(SagaError, LookupError):
    """No saga with this id exists in the storage."""

    def __init__(self, saga_id: Any) -> None:
        self.saga_id = saga_id
        super().__init__(f"No saga {saga_id} in the saga storage")


class SagaAlreadyExistsError(SagaError):
    """A saga with this id already exists in the storage."""

    def __init__(self, saga_id: Any) -> None:
        self.saga_id = saga_id
        super().__init__(f"Saga {saga_id} already exists in the saga storage")


class SagaConcurrencyError(SagaError, ConcurrencyError):
    """Another writer updated the saga first: this writer's version is stale.

    Nothing was written. The saga now belongs to whoever wrote last (usually
    a recovery worker); stop working on it.
    """

    def __init__(self, saga_id: Any, expected_version: int) -> None:
        self.saga_id = saga_id
        self.expected_version = expected_version
        super().__init__(
            f"Saga {saga_id} was modified concurrently: expected version "
            f"{expected_version}; nothing was written"
        )


class SagaStateError(SagaError):
    """The saga is not in a state that allows the operation (e.g. resuming a
    COMPENSATING saga through ``stream``; use ``recover`` instead)."""


class BrokerDeliveryError(BrokerError):
    """The broker did not confirm some messages of a publish.

    Attributes:
        failures: `(message_id, reason)` pairs, one per message that was not
            delivered, in publish order (`message_id` is `None` when the
            message had none).
        delivered: how many messages of the same publish were confirmed.
        positions: where the failed messages stood in the publish (0-based
            indexes into what was passed to `send_many`, parallel to
            `failures`), or `None` when the broker cannot tell; every other
            message of the publish was confirmed.

    Example:
        ```python
        try:
            await broker.send_many(messages)
        except BrokerDeliveryError as error:
            await broker.send_many(error.undelivered(messages))  # exactly the failures
        ```
    """

    def __init__(
        self,
        failures: Sequence[tuple[str | None, str]],
        delivered: int = 0,
        *,
        what: str = "",
        positions: Sequence[int] | None = None,
    ) -> None:
        self.failures = tuple(failures)
        self.delivered = delivered
        self.positions = tuple(positions) if positions is not None else None
        first_id, first_reason = self.failures[0] if self.failures else (None, "unknown")
        where = f" to {what}" if what else ""
        super().__init__(
            f"{len(self.failures)} message(s) not delivered{where} ({delivered} delivered); "
            f"first: {first_id or '?'}: {first_reason}"
        )

    def undelivered(self, messages: Sequence[T]) -> list[T]:
        """The messages of a failed publish that were not delivered.

        Args:
            messages: what was published, in the order it was passed.

        Returns:
            The undelivered ones, in publish order; all of them when
            `positions` is unknown (a retry then re-sends some delivered
            ones: at least once).
        """
        if self.positions is None:
            return list(messages)
        return [messages[i] for i in self.positions]


class ConnectionLost(BrokerError):
    """The connection to a broker (or its channel) is gone, or was never opened.

    A call that failed with it may or may not have reached the broker. The
    RabbitMQ producer and consumer reconnect after it following their
    `reconnect` policy; a login or vhost refusal is never retried.
    """


class DeadLetterError(BrokerError):
    """A consumer could not write a dead letter even after retrying (the
    dead-letter topic is unreachable or refuses every record, even a
    truncated one): the consumer stops without committing
    the message, so it is consumed again after a restart (at-least-once).

    Attributes:
        location: where the message came from (`topic[partition]@offset`).
    """

    def __init__(self, location: str, error: BaseException) -> None:
        self.location = location
        super().__init__(
            f"Cannot dead-letter the message at {location}: {type(error).__name__}: {error}"
        )


class MessageHandlingError(BrokerError):
    """A consumed message kept failing after its retries and no dead-letter
    destination is configured: the consumer stops without acknowledging it,
    so it is delivered again later (at-least-once). Configure a dead-letter
    topic / exchange to move such messages aside and keep consuming.

    Attributes:
        location: where the message came from (``topic[partition]@offset``
            or ``queue#delivery_tag``).
        attempts: how many times the handler ran.
    """

    def __init__(self, location: str, attempts: int, error: BaseException) -> None:
        self.location = location
        self.attempts = attempts
        super().__init__(
            f"Handling the message at {location} failed {attempts} time(s) "
            f"({type(error).__name__}: {error}); configure a dead-letter destination "
            "to skip such messages"
        )


class CircuitBreakerOpen(AnyCQRSError):
    """[`anycqrs.CircuitBreaker.call`][anycqrs.CircuitBreaker.call] refused a call: the circuit is
    open.

    Attributes:
        name: the protected name whose circuit is open.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"the circuit of {name} is open; calls are refused until it resets")


class InboxError(AnyCQRSError):
    """The inbox (`anycqrs.inbox`) is misused or misconfigured: its
    transaction used outside a guarded handler, no outbox configured, a
    connection in a state it can't use."""


class InboxKeyError(InboxError, ValueError):
    """A message has no id usable as an inbox key (none at all, or not a
    UUID): an inbox-guarded consumer dead-letters it as poison.

    Attributes:
        value: the id found (`None` when there was none).
    """

    def __init__(self, event: Any, value: Any) -> None:
        self.value = value
        name = type(event).__qualname__
        what = "no event_id" if value is None else f"event_id {value!r}, not a UUID"
        super().__init__(
            f"Cannot guard {name} with the inbox: it has {what}; an inbox key is "
            "(handler, message id) with a UUID message id: give the event an event_id"
        )
