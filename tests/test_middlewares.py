from __future__ import annotations

import logging
from typing import Any

import pytest

from anycqrs.middlewares import LoggingMiddleware, MiddlewareChain

pytestmark = pytest.mark.anyio


class Exploding:
    """A message whose repr must never be computed when logging is off."""

    def __repr__(self) -> str:
        raise AssertionError("formatted although the level is disabled")


async def echo(message: Any) -> Any:
    return message


async def test_chain_order_and_results() -> None:
    calls: list[str] = []

    class Mw:
        def __init__(self, name: str) -> None:
            self.name = name

        async def __call__(self, message: Any, call_next: Any) -> Any:
            calls.append(f"{self.name}>")
            result = await call_next([*message, self.name])
            calls.append(f"<{self.name}")
            return result

    chain = MiddlewareChain([Mw("a"), Mw("b")])
    assert len(chain) == 2
    assert [m.name for m in chain] == ["a", "b"]  # type: ignore[attr-defined]
    assert "MiddlewareChain" in repr(chain)
    assert await chain.wrap(echo)([]) == ["a", "b"]
    assert calls == ["a>", "b>", "<b", "<a"]
    assert MiddlewareChain().wrap(echo) is echo


async def test_middleware_can_short_circuit() -> None:
    class Cache:
        async def __call__(self, message: Any, call_next: Any) -> Any:
            return "cached"

    assert await MiddlewareChain([Cache()]).wrap(echo)("x") == "cached"


async def test_logging_is_lazy_when_disabled(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("anycqrs.test.lazy")
    logger.setLevel(logging.WARNING)
    handle = MiddlewareChain([LoggingMiddleware(logger)]).wrap(echo)
    message = Exploding()
    assert await handle(message) is message
    assert caplog.records == []


async def test_logging_when_enabled(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("anycqrs.test.enabled")
    caplog.set_level(logging.INFO, logger="anycqrs.test.enabled")
    handle = MiddlewareChain([LoggingMiddleware(logger, level=logging.INFO)]).wrap(echo)
    assert await handle({"order": 1}) == {"order": 1}
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == "handling dict {'order': 1}"
    assert messages[1].startswith("handled dict in ")


async def test_logging_errors(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="anycqrs")

    async def fail(message: Any) -> Any:
        raise ValueError("bad")

    with pytest.raises(ValueError, match="bad"):
        await MiddlewareChain([LoggingMiddleware()]).wrap(fail)(1)
    assert "int failed after" in caplog.records[-1].getMessage()
