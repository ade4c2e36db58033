"""The measuring harness: calibration, warm-up, rotated rounds, statistics.

A :class:`Workload` has one :class:`Impl` per column (``asyncio``, ``trio``,
``python-cqrs``). An implementation's ``setup`` is an async context manager
entered *inside* a running event loop; it yields a zero-argument callable, the
operation. The harness then runs the operation ``n`` times in a plain ``for``
loop inside that same event loop and times the loop with
``time.perf_counter_ns`` (never ``asyncio.run``/``trio.run`` per operation).

Every (workload, implementation) run is one event loop: ``anyio.run`` for
anycqrs (backend ``asyncio`` or ``trio``), ``asyncio.run`` for python-cqrs.
``gc.collect()`` runs before each of them.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import statistics
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio
import attrs

Op = Callable[[], Any]
Setup = Callable[[], AbstractAsyncContextManager[Op]]

COLUMNS = ("asyncio", "trio", "python-cqrs", "peer", "baseline")
"""Implementation keys, in table order."""


class Unavailable(Exception):
    """Raised by a workload factory when its feature or service is missing.

    The workload (or one implementation) is then reported as ``n/a`` with the
    reason; nothing is faked.
    """


@attrs.frozen
class Impl:
    """One way of running a workload.

    Attributes:
        key: the column: ``"asyncio"``, ``"trio"`` (anycqrs, or the bare code of
            a lower-bound workload), ``"python-cqrs"``, ``"peer"`` (another
            library doing the same job, e.g. FastStream's Kafka subscriber),
            or ``"baseline"`` (a raw client loop, e.g. plain confluent-kafka).
        setup: async context manager factory yielding the operation; ``None``
            when unavailable.
        runner: ``"anyio"`` (anycqrs, both backends) or ``"asyncio"`` (python-cqrs).
        backend: the anyio backend (``"asyncio"`` or ``"trio"``).
        unavailable: why this implementation cannot run (``n/a``), if it cannot.
    """

    key: str
    setup: Setup | None
    runner: str = "anyio"
    backend: str = "asyncio"
    unavailable: str | None = None
    measure: Callable[[int], float] | None = None
    """For throughput workloads that own their event loop (Kafka): called with
    the number of items, returns the seconds measured inside its loop."""


@attrs.frozen
class Target:
    """A speed target the suite checks (and reports, never asserts).

    Kinds:
        ``max_us``: median µs/op of ``column`` at most ``limit``.
        ``min_speedup``: median per-round ratio python-cqrs / ``column`` at
            least ``limit``.
        ``max_ratio``: median per-round ratio trio / asyncio at most ``limit``.
        ``max_item_overhead_us``: (µs/op − µs/op of workload ``reference``) /
            ``items_per_op`` at most ``limit``, both in ``column``.
        ``min_baseline_fraction``: throughput of ``column`` at least ``limit``
            times the ``baseline`` column's.
        ``min_items_per_s``: items/s of ``column`` at least ``limit``.
        ``min_peer_speedup``: median per-round ratio peer / ``column`` at
            least ``limit``.
    """

    kind: str
    limit: float
    column: str = "asyncio"
    source: str = ""
    reference: str = ""

    def describe(self) -> str:
        if self.kind == "max_us":
            return f"{self.column} ≤ {self.limit:g} µs/op"
        if self.kind == "min_speedup":
            return f"{self.column} ≥ {self.limit:g}× python-cqrs"
        if self.kind == "max_ratio":
            return f"trio/asyncio ≤ {self.limit:g}"
        if self.kind == "max_item_overhead_us":
            return f"{self.column} ≤ {self.limit:g} µs/item over {self.reference}"
        if self.kind == "min_baseline_fraction":
            return f"{self.column} ≥ {self.limit:.0%} of baseline"
        if self.kind == "min_peer_speedup":
            return f"{self.column} ≥ {self.limit:g}× peer"
        return f"{self.column} ≥ {self.limit:,.0f} items/s"


@attrs.frozen
class Workload:
    """A named operation measured under several implementations.

    Attributes:
        name: ``group/what`` (``--only`` matches it).
        description: one line for the table and the docs.
        impls: the implementations, any of :data:`COLUMNS`.
        items_per_op: items one operation processes (stream items, messages):
            the table then also shows µs per item.
        targets: the targets this workload must show.
        max_n: cap on operations per round (slow or state-growing workloads).
        unavailable: why the whole workload cannot run here (``n/a``).
    """

    name: str
    description: str
    impls: tuple[Impl, ...] = ()
    items_per_op: int = 1
    targets: tuple[Target, ...] = ()
    max_n: int = 200_000
    unavailable: str | None = None
    fixed_n: tuple[int, int] | None = None
    """``(full, quick)`` items per round for ``measure`` implementations."""
    max_rounds: int | None = None
    """Cap on rounds (long throughput runs)."""


@attrs.frozen
class Settings:
    """How long and how often to measure."""

    rounds: int = 5
    round_seconds: float = 0.2
    calibrate_seconds: float = 0.05
    warmup_fraction: float = 0.1
    min_n: int = 10
    quick: bool = False

    @classmethod
    def quick_mode(cls, rounds: int = 1) -> Settings:
        return cls(
            rounds=rounds,
            round_seconds=0.005,
            calibrate_seconds=0.002,
            warmup_fraction=0.1,
            min_n=2,
            quick=True,
        )


@attrs.define
class ImplResult:
    """Measurements of one implementation of one workload."""

    key: str
    status: str = "ok"
    reason: str | None = None
    n: int = 0
    rounds_us: list[float] = attrs.field(factory=list)

    @property
    def median_us(self) -> float:
        return statistics.median(self.rounds_us)

    @property
    def min_us(self) -> float:
        return min(self.rounds_us)

    @property
    def max_us(self) -> float:
        return max(self.rounds_us)

    def as_dict(self, items_per_op: int) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status}
        if self.status != "ok" or not self.rounds_us:
            out["reason"] = self.reason
            return out
        med = self.median_us
        out.update(
            n=self.n,
            rounds_us=[round(x, 4) for x in self.rounds_us],
            median_us=round(med, 4),
            min_us=round(self.min_us, 4),
            max_us=round(self.max_us, 4),
            ops_per_s=round(1e6 / med, 1),
        )
        if items_per_op > 1:
            out["median_us_per_item"] = round(med / items_per_op, 4)
            out["items_per_s"] = round(1e6 * items_per_op / med, 1)
        return out


@attrs.define
class WorkloadResult:
    """Everything measured for one workload."""

    workload: Workload
    impls: dict[str, ImplResult] = attrs.field(factory=dict)
    status: str = "ok"
    reason: str | None = None

    def ok(self, key: str) -> ImplResult | None:
        result = self.impls.get(key)
        return result if result is not None and result.status == "ok" and result.rounds_us else None

    def ratio(self, numerator: str, denominator: str) -> dict[str, Any] | None:
        """Per-round ratios ``numerator / denominator`` and their median."""
        num, den = self.ok(numerator), self.ok(denominator)
        if num is None or den is None:
            return None
        per_round = [a / b for a, b in zip(num.rounds_us, den.rounds_us) if b > 0]
        if not per_round:
            return None
        return {
            "per_round": [round(x, 3) for x in per_round],
            "median": round(statistics.median(per_round), 3),
        }

    def ratios(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for name, (num, den) in {
            "python-cqrs/asyncio": ("python-cqrs", "asyncio"),
            "python-cqrs/trio": ("python-cqrs", "trio"),
            "trio/asyncio": ("trio", "asyncio"),
            "peer/asyncio": ("peer", "asyncio"),
            "peer/trio": ("peer", "trio"),
        }.items():
            ratio = self.ratio(num, den)
            if ratio is not None:
                out[name] = ratio
        return out

    def check(
        self, target: Target, others: dict[str, WorkloadResult] | None = None
    ) -> dict[str, Any]:
        """Evaluate ``target``: measured value and ``ok`` (``None`` if n/a)."""
        measured: float | None = None
        ok: bool | None = None
        res = self.ok(target.column)
        if target.kind == "max_us":
            measured = res.median_us if res else None
            ok = None if measured is None else measured <= target.limit
        elif target.kind == "min_speedup":
            ratio = self.ratio("python-cqrs", target.column)
            measured = ratio["median"] if ratio else None
            ok = None if measured is None else measured >= target.limit
        elif target.kind == "min_peer_speedup":
            ratio = self.ratio("peer", target.column)
            measured = ratio["median"] if ratio else None
            ok = None if measured is None else measured >= target.limit
        elif target.kind == "max_ratio":
            ratio = self.ratio("trio", "asyncio")
            measured = ratio["median"] if ratio else None
            ok = None if measured is None else measured <= target.limit
        elif target.kind == "max_item_overhead_us":
            ref_wl = (others or {}).get(target.reference)
            ref = ref_wl.ok(target.column) if ref_wl else None
            if res and ref:
                measured = (res.median_us - ref.median_us) / self.workload.items_per_op
                ok = measured <= target.limit
        elif target.kind == "min_baseline_fraction":
            base = self.ok("baseline")
            if res and base:
                measured = base.median_us / res.median_us
                ok = measured >= target.limit
        elif target.kind == "min_items_per_s" and res:
            measured = 1e6 * self.workload.items_per_op / res.median_us
            ok = measured >= target.limit
        return {
            "target": target.describe(),
            "kind": target.kind,
            "column": target.column,
            "limit": target.limit,
            "source": target.source,
            "measured": None if measured is None else round(measured, 3),
            "ok": ok,
        }

    def as_dict(self, others: dict[str, WorkloadResult] | None = None) -> dict[str, Any]:
        wl = self.workload
        return {
            "name": wl.name,
            "description": wl.description,
            "items_per_op": wl.items_per_op,
            "status": self.status,
            "reason": self.reason,
            "impls": {key: res.as_dict(wl.items_per_op) for key, res in self.impls.items()},
            "ratios": self.ratios(),
            "targets": [self.check(t, others) for t in wl.targets],
        }


async def _timed_async(op: Op, n: int) -> int:
    started = time.perf_counter_ns()
    for _ in range(n):
        await op()
    return time.perf_counter_ns() - started


def _timed_sync(op: Op, n: int) -> int:
    started = time.perf_counter_ns()
    for _ in range(n):
        op()
    return time.perf_counter_ns() - started


async def _session(impl: Impl, plan: Callable[[Op, bool], Any]) -> Any:
    """Enter the implementation's setup in the running loop and run ``plan``."""
    assert impl.setup is not None
    async with impl.setup() as op:
        first = op()
        is_async = inspect.isawaitable(first)
        if is_async:
            await first
        return await plan(op, is_async)


def _run_in_loop(impl: Impl, plan: Callable[[Op, bool], Any]) -> Any:
    gc.collect()
    if impl.runner == "asyncio":
        return asyncio.run(_session(impl, plan))
    return anyio.run(_session, impl, plan, backend=impl.backend)


def calibrate(impl: Impl, settings: Settings, max_n: int) -> int:
    """Warm up ``impl`` and choose how many operations a round runs."""

    async def plan(op: Op, is_async: bool) -> int:
        done, elapsed = 1, 0
        batch = 1
        deadline = settings.calibrate_seconds * 1e9
        while elapsed < deadline and done < max_n:
            if is_async:
                elapsed += await _timed_async(op, batch)
            else:
                elapsed += _timed_sync(op, batch)
            done += batch
            batch = min(batch * 2, max_n)
        per_op = elapsed / max(done - 1, 1)
        return int(settings.round_seconds * 1e9 / max(per_op, 1.0))

    wanted: int = _run_in_loop(impl, plan)
    return max(settings.min_n, min(wanted, max_n))


def measure_round(impl: Impl, n: int, settings: Settings) -> float:
    """One event loop: warm up, then time ``n`` operations; return µs/op."""
    if impl.measure is not None:
        gc.collect()
        return impl.measure(n) * 1e6 / n
    warmup = max(1, int(n * settings.warmup_fraction))

    async def plan(op: Op, is_async: bool) -> int:
        if is_async:
            await _timed_async(op, warmup)
            return await _timed_async(op, n)
        _timed_sync(op, warmup)
        return _timed_sync(op, n)

    elapsed: int = _run_in_loop(impl, plan)
    return elapsed / n / 1000.0


def _rotate(items: Sequence[Any], by: int) -> list[Any]:
    if not items:
        return []
    by %= len(items)
    return list(items[by:]) + list(items[:by])


def run_suite(
    workloads: Iterable[Workload],
    settings: Settings,
    progress: Callable[[str], None] = lambda _msg: None,
) -> list[WorkloadResult]:
    """Measure every workload: calibrate each implementation, then run
    ``settings.rounds`` rounds in rotated order (workload order shifted each
    round, implementation order within a workload too, so the columns being
    compared always run back to back)."""
    results: list[WorkloadResult] = []
    runnable: list[tuple[WorkloadResult, list[tuple[Impl, int]]]] = []
    for wl in workloads:
        result = WorkloadResult(wl)
        results.append(result)
        if wl.unavailable:
            result.status, result.reason = "n/a", wl.unavailable
            continue
        plans: list[tuple[Impl, int]] = []
        for impl in wl.impls:
            res = result.impls[impl.key] = ImplResult(impl.key)
            if impl.unavailable or (impl.setup is None and impl.measure is None):
                res.status, res.reason = "n/a", impl.unavailable or "not implemented"
                continue
            if impl.measure is not None:
                full, quick = wl.fixed_n or (10_000, 1_000)
                res.n = quick if settings.quick else full
                plans.append((impl, res.n))
                continue
            progress(f"calibrating {wl.name} [{impl.key}]")
            try:
                res.n = calibrate(impl, settings, wl.max_n)
            except Unavailable as exc:
                res.status, res.reason = "n/a", str(exc)
                continue
            except Exception as exc:
                res.status, res.reason = "error", f"{type(exc).__name__}: {exc}"
                continue
            plans.append((impl, res.n))
        if plans:
            runnable.append((result, plans))

    for round_no in range(settings.rounds):
        offset = round_no * max(1, len(runnable) // max(settings.rounds, 1))
        for result, plans in _rotate(runnable, offset):
            for impl, n in _rotate(plans, round_no):
                res = result.impls[impl.key]
                if res.status != "ok":
                    continue
                cap = result.workload.max_rounds
                if cap is not None and len(res.rounds_us) >= cap:
                    continue
                name = result.workload.name
                progress(f"round {round_no + 1}/{settings.rounds} {name} [{impl.key}]")
                try:
                    res.rounds_us.append(measure_round(impl, n, settings))
                except Exception as exc:
                    res.status, res.reason = "error", f"{type(exc).__name__}: {exc}"
    return results


def simple_setup(make: Callable[[], Any]) -> Setup:
    """A setup for an operation built by ``make()`` (called inside the loop)."""
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def setup() -> AsyncIterator[Op]:
        made = make()
        if inspect.isawaitable(made):
            made = await made
        yield made

    return setup
