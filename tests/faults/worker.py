"""Entry point of the scenarios' child processes (not collected by pytest).

``python -m tests.faults.worker MODULE FUNCTION ARGS_JSON`` runs
``tests.faults.MODULE.FUNCTION(**args)`` under ``anyio.run`` with the
``backend`` argument; SIGTERM cancels it (a graceful stop), SIGKILL is the
fault the scenarios inject. A child whose parent died stops too.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import anyio


def ready() -> None:
    """Tell the parent the child is up (it waits for this line)."""
    print("READY", flush=True)


async def _main(function: Callable[..., Awaitable[None]], args: dict[str, Any]) -> None:
    async with anyio.create_task_group() as tg:

        async def on_sigterm() -> None:
            with anyio.open_signal_receiver(signal.SIGTERM) as signals:
                async for _ in signals:
                    tg.cancel_scope.cancel()
                    return

        async def orphaned() -> None:
            parent = os.getppid()
            while os.getppid() == parent:
                await anyio.sleep(1)
            tg.cancel_scope.cancel()  # the suite died: do not outlive it

        tg.start_soon(on_sigterm)
        tg.start_soon(orphaned)
        await function(**args)
        tg.cancel_scope.cancel()


def main(argv: list[str]) -> None:
    module, name, raw = argv[1], argv[2], argv[3]
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    args = json.loads(raw)
    backend = args.pop("backend", "asyncio")
    function = getattr(importlib.import_module(f"tests.faults.{module}"), name)
    print(f"worker {module}.{name} on {backend}", flush=True)
    anyio.run(_main, function, args, backend=backend)


if __name__ == "__main__":
    main(sys.argv)
