"""Profile one workload: where does the time go?

Usage::

    python -m benchmarks.profile send/1-event-seq [--column asyncio|trio|python-cqrs]
        [--n 20000] [--sort tottime] [--limit 25] [--pyinstrument]

Runs the workload's operation ``n`` times inside one event loop under
cProfile (or pyinstrument with ``--pyinstrument``) and prints the top
functions. Profiling inflates every call, so read shares, not absolute times.
"""

from __future__ import annotations

import argparse
import cProfile
import logging
import pstats
from typing import Any

from ._catalog import all_workloads
from ._harness import Impl, Op, _run_in_loop, _timed_async, _timed_sync


def profile(impl: Impl, n: int, *, use_pyinstrument: bool) -> Any:
    """Run ``n`` operations of ``impl`` under a profiler; return the profiler."""
    profiler: Any
    if use_pyinstrument:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0001, async_mode="disabled")
    else:
        profiler = cProfile.Profile()

    async def plan(op: Op, is_async: bool) -> None:
        warm = max(1, n // 10)
        if is_async:
            await _timed_async(op, warm)
            profiler.enable() if not use_pyinstrument else profiler.start()
            await _timed_async(op, n)
        else:
            _timed_sync(op, warm)
            profiler.enable() if not use_pyinstrument else profiler.start()
            _timed_sync(op, n)
        profiler.disable() if not use_pyinstrument else profiler.stop()

    _run_in_loop(impl, plan)
    return profiler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__)
    parser.add_argument("workload", help="exact workload name (see python -m benchmarks --list)")
    parser.add_argument("--column", default="asyncio")
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--sort", default="tottime")
    parser.add_argument("--limit", type=int, default=25)
    parser.add_argument("--pyinstrument", action="store_true")
    args = parser.parse_args(argv)
    for name in ("cqrs", "anycqrs"):
        logging.getLogger(name).setLevel(logging.WARNING)
        logging.getLogger(name).addHandler(logging.NullHandler())
    workload = next((w for w in all_workloads() if w.name == args.workload), None)
    if workload is None:
        parser.error(f"no workload {args.workload!r}")
    if workload.unavailable:
        parser.error(f"{args.workload} is n/a: {workload.unavailable}")
    impl = next((i for i in workload.impls if i.key == args.column), None)
    if impl is None or impl.setup is None:
        parser.error(f"{args.workload} has no runnable {args.column!r} implementation")
    profiler = profile(impl, args.n, use_pyinstrument=args.pyinstrument)
    if args.pyinstrument:
        print(profiler.output_text(unicode=True, color=False))
    else:
        pstats.Stats(profiler).strip_dirs().sort_stats(args.sort).print_stats(args.limit)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
