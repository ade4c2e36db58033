"""Mermaid diagrams of a chain of responsibility."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from .._handlers import declared_args
from ..errors import BindingError
from ._chain import CORRequestHandler

__all__ = ["CoRMermaid", "mermaid_id"]

_UNSAFE = re.compile(r"[^A-Za-z0-9_]")


def mermaid_id(name: str) -> str:
    """A Mermaid-safe identifier for `name` (letters, digits, underscores)."""
    cleaned = _UNSAFE.sub("_", name).strip("_") or "_"
    return cleaned if not cleaned[0].isdigit() else "_" + cleaned


def _type_name(value: Any, default: str) -> str:
    return mermaid_id(value.__name__) if isinstance(value, type) else default


class CoRMermaid:
    """Mermaid text for a chain of responsibility (the list you bind).

    Example:
        ```python
        diagram = anycqrs.diagrams.CoRMermaid([CardHandler, WalletHandler, InvoiceHandler])
        print(diagram.sequence())       # who passes the request to whom
        print(diagram.class_diagram())  # the classes and their links
        ```

    Paste the text in a Markdown ``` ``mermaid ```` block (mkdocs-material,
    GitHub) to render it.

    Raises:
        BindingError: `handlers` is empty or holds something else than
            `CORRequestHandler` subclasses.
    """

    __slots__ = ("_handlers", "_ids")

    def __init__(self, handlers: Sequence[type]) -> None:
        handlers = tuple(handlers)
        if not handlers:
            raise BindingError("CoRMermaid needs at least one handler")
        for handler in handlers:
            if not (isinstance(handler, type) and issubclass(handler, CORRequestHandler)):
                raise BindingError(f"{handler!r} is not a CORRequestHandler subclass")
        self._handlers = handlers
        ids: list[str] = []
        for handler in handlers:
            base = mermaid_id(handler.__name__)
            name, n = base, 1
            while name in ids or name in {"Client", "CORRequestHandler"}:
                n += 1
                name = f"{base}_{n}"
            ids.append(name)
        self._ids = tuple(ids)

    @property
    def handlers(self) -> tuple[type, ...]:
        """The links, in order."""
        return self._handlers

    def _signature(self) -> tuple[str, str]:
        request, response = "request", "response"
        for handler in self._handlers:
            args = declared_args(handler, CORRequestHandler)
            if args:
                request = _type_name(args[0], request)
                if len(args) > 1:
                    response = _type_name(args[1], response)
                break
        return request, response

    def sequence(self) -> str:
        """A `sequenceDiagram`: each link either answers or calls `next`;
        past the last link `next` answers `None`."""
        request, response = self._signature()
        ids = self._ids
        lines = ["sequenceDiagram", "    participant Client"]
        lines.extend(
            f"    participant {ident} as {handler.__name__}"
            for ident, handler in zip(ids, self._handlers, strict=True)
        )
        lines.append(f"    Client->>{ids[0]}: handle({request})")
        depth = 1
        for index, ident in enumerate(ids):
            caller = "Client" if index == 0 else ids[index - 1]
            pad = "    " * depth
            lines.append(f"{pad}alt {self._handlers[index].__name__} handles it")
            lines.append(f"{pad}    {ident}-->>{caller}: {response}")
            if index + 1 < len(ids):
                lines.append(f"{pad}else passes it on")
                lines.append(f"{pad}    {ident}->>{ids[index + 1]}: next({request})")
            else:
                lines.append(f"{pad}else no link left")
                lines.append(f"{pad}    {ident}-->>{caller}: None")
            depth += 1
        for index in range(len(ids) - 1, -1, -1):
            depth -= 1
            pad = "    " * depth
            lines.append(f"{pad}end")
            if index > 0:
                caller = "Client" if index == 1 else ids[index - 2]
                lines.append(f"{pad}{ids[index - 1]}-->>{caller}: result of next")
        return "\n".join(lines) + "\n"

    def class_diagram(self) -> str:
        """A `classDiagram`: the handler classes, what they handle and return,
        and the `next` links between them."""
        request, response = self._signature()
        lines = [
            "classDiagram",
            "    class CORRequestHandler {",
            "        <<abstract>>",
            f"        +handle({request} request) {response}",
            f"        +next({request} request) {response}",
            "    }",
            f"    class {request}",
            f"    class {response}",
        ]
        for ident in self._ids:
            lines.append(f"    class {ident} {{")
            lines.append(f"        +handle({request} request) {response}")
            lines.append("    }")
            lines.append(f"    CORRequestHandler <|-- {ident}")
        for current, following in zip(self._ids, self._ids[1:], strict=False):
            lines.append(f"    {current} --> {following} : next")
        lines.append(f"    CORRequestHandler ..> {request} : handles")
        lines.append(f"    CORRequestHandler ..> {response} : returns")
        return "\n".join(lines) + "\n"
