from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import BindingError


def chain_route(handlers: Sequence[Any]) -> Any:
    """Compile a list of chain-of-responsibility handlers into a route."""
    raise BindingError(
        "chains of responsibility are not available yet; bind a single RequestHandler"
    )
