"""The inbox: exactly-once effects over at-least-once delivery.

An inbox store records, per handler, the ids of the messages it handled
(the key is ``(handler identity, message id)``), in the **same database
transaction** as the handler's own writes: give an `anycqrs.EventMediator`
an ``inbox=`` and every handler of a notification event runs inside a
transaction the inbox opened, with its row already written. The handler
reaches that transaction through the `InboxTransaction` dependency; its
domain rows, the inbox row and its outbox rows commit together or not at
all. A redelivered message finds the row and the handler is skipped.

Stores: `SqliteInbox`, `PostgresInbox`, `SqlAlchemyInbox`. Retention:
`InboxStore.prune` and the `InboxPruner` background task. The handler's
identity: `handler_identity` (the class name, or its ``inbox_name``).

Example:
    ```python
    inbox = SqliteInbox("app.sqlite3")
    mediator = anycqrs.events.bootstrap.bootstrap(events_mapper=bind, inbox=inbox)
    await mediator.send(event)    # handlers run once per (handler, event_id)
    await mediator.send(event)    # a duplicate: every handler skipped
    ```
"""

from typing import TYPE_CHECKING, Any

from ._guard import handler_identity as handler_identity
from ._postgres import PostgresInbox as PostgresInbox
from ._pruner import InboxPruner as InboxPruner
from ._sqlite import SqliteInbox as SqliteInbox
from ._store import InboxStore as InboxStore
from ._transaction import InboxTransaction as InboxTransaction
from ._transaction import derive_id as derive_id

if TYPE_CHECKING:
    from ._sqlalchemy import SqlAlchemyInbox as SqlAlchemyInbox

__all__ = [
    "InboxPruner",
    "InboxStore",
    "InboxTransaction",
    "PostgresInbox",
    "SqlAlchemyInbox",
    "SqliteInbox",
    "derive_id",
    "handler_identity",
]


def __getattr__(name: str) -> Any:
    if name == "SqlAlchemyInbox":  # imports SQLAlchemy only when asked for
        from ._sqlalchemy import SqlAlchemyInbox

        return SqlAlchemyInbox
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
