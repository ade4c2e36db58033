"""Saga workers and recovery workers SIGKILLed on PostgreSQL.

Two starter processes run sagas (`PostgresSagaStorage`, explicit saga ids)
of three steps, four at a time; one saga in four fails at its last step and
is compensated, and one in eight of those has a compensation that fails
three times before it works (more than its retries allow in one run). One
saga in ten is of a second type (one slow step) that only one of the three
recovery workers knows (the other two, another service's workers, must never
claim it; a killed worker is replaced by one of its own kind, so the type
always has a worker). The three recovery processes call
`recover_pending` in a loop. Every 1–3 s a starter or a recovery worker is
SIGKILLed and replaced; at the end the starters stop and recovery finishes
the rest.

Every saga persisted must end COMPLETED (when it does not fail) or FAILED
with every step that acted compensated; none may stay RUNNING or
COMPENSATING (lost). Steps may act twice (a worker killed mid-step;
at-least-once: "dup"), but per saga the first acts run in step order and no
step acts after compensation began ("order"). A saga of a type the
recovering worker does not know must be left to a worker that does.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import anyio
import anyio.to_thread
import attrs
import lagom
import psycopg

import anycqrs.saga as saga
from anycqrs.errors import SagaNotFoundError
from anycqrs.saga.bootstrap import bootstrap
from anycqrs.saga.storage import PostgresSagaStorage

from .harness import Child, Pool, Settings, backend_of, unique, wait_until
from .ledger import LedgerFile, Outcome, read_lines
from .worker import ready

TERMINAL = (saga.SagaStatus.COMPLETED, saga.SagaStatus.FAILED)


@attrs.define
class Ctx(saga.SagaContext):
    n: int
    fail: bool = False
    flaky: bool = False


@attrs.define
class OtherCtx(saga.SagaContext):
    n: int


class Effects:
    """Every step call, as a row of ``effects_<suffix>`` (autocommit)."""

    def __init__(self, dsn: str, suffix: str) -> None:
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.table = f"faults_effects_{suffix}"

    def _record(self, saga_id: Any, step: str, what: str) -> int:
        row = self.conn.execute(
            f"INSERT INTO {self.table} (saga, step, what) VALUES (%s, %s, %s) RETURNING "
            f"(SELECT COUNT(*) FROM {self.table} WHERE saga = %s AND step = %s AND what = %s)",
            (str(saga_id), step, what, str(saga_id), step, what),
        ).fetchone()
        return int(row[0]) if row else 0

    async def record(self, saga_id: Any, step: str, what: str) -> int:
        """Record a call; returns how many earlier calls of the kind there were."""
        return await anyio.to_thread.run_sync(self._record, saga_id, step, what)


class Step(saga.SagaStepHandler[Ctx, str]):
    def __init__(self, effects: Effects) -> None:
        self.effects = effects

    async def act(self, context: Ctx) -> str:
        await self.effects.record(self.saga_id, self.step_name, "act")
        await anyio.sleep(0.03)
        return self.step_name

    async def compensate(self, context: Ctx) -> None:
        await anyio.sleep(0.01)
        await self.effects.record(self.saga_id, self.step_name, "compensate")


class Reserve(Step):
    async def compensate(self, context: Ctx) -> None:
        if context.flaky:
            failures = await self.effects.record(self.saga_id, self.step_name, "compensate-failed")
            if failures < 3:
                raise RuntimeError("the warehouse is down")
        await super().compensate(context)


class Pay(Step):
    pass


class Ship(Step):
    async def act(self, context: Ctx) -> str:
        result = await super().act(context)
        if context.fail:
            raise RuntimeError("no courier")
        return result


class MainSaga(saga.Saga[Ctx]):
    steps = [Reserve, Pay, Ship]


class Note(saga.SagaStepHandler[OtherCtx, str]):
    def __init__(self, effects: Effects) -> None:
        self.effects = effects

    async def act(self, context: OtherCtx) -> str:
        await self.effects.record(self.saga_id, self.step_name, "act")
        await anyio.sleep(0.5)
        return "noted"

    async def compensate(self, context: OtherCtx) -> None:
        await self.effects.record(self.saga_id, self.step_name, "compensate")


class OtherSaga(saga.Saga[OtherCtx]):
    steps = [Note]


def storage(dsn: str, suffix: str) -> PostgresSagaStorage:
    return PostgresSagaStorage(
        dsn,
        sagas_table=f"faults_sagas_{suffix}",
        log_table=f"faults_log_{suffix}",
        max_connections=4,
    )


def mediator(dsn: str, suffix: str, other: bool) -> saga.SagaMediator:
    container = lagom.Container()
    container[Effects] = Effects(dsn, suffix)

    def bind(sagas: saga.SagaMap) -> None:
        sagas.bind(Ctx, MainSaga)
        if other:
            sagas.bind(OtherCtx, OtherSaga)

    return bootstrap(
        di_container=container,
        sagas_mapper=bind,
        saga_storage=storage(dsn, suffix),
        compensation_retry_count=2,
        compensation_retry_delay=0.01,
        # Every claim counts an attempt, also one whose worker is killed holding it (a saga
        # that crashes its worker must not be recovered forever): under this scenario's kill
        # rate a saga may be claimed by several dying workers before one finishes it. A
        # worker that can't run a saga type never claims it, so it costs no attempt.
        max_recovery_attempts=6,
        recovery_lease=5.0,
    )


def saga_id(n: int) -> uuid.UUID:
    return uuid.UUID(int=n + 1)


def context_of(n: int) -> Any:
    if n % 10 == 3:
        return OtherCtx(n=n)
    return Ctx(n=n, fail=n % 4 == 1, flaky=n % 8 == 5)


async def start(dsn: str, suffix: str, ledger: str, first: int) -> None:
    """Child: run sagas ``first, first + 1 ...``, four at a time, until killed."""
    book = LedgerFile(ledger)
    sagas = mediator(dsn, suffix, other=True)
    limit = anyio.Semaphore(4)

    async def one(n: int) -> None:
        async with limit:
            try:
                async for _ in sagas.stream(context_of(n), saga_id=saga_id(n)):
                    pass
            except RuntimeError:
                pass

    ready()
    async with anyio.create_task_group() as tg:
        n = first
        while True:
            await limit.acquire()
            limit.release()
            book.write("start", n)
            tg.start_soon(one, n)
            n += 1
            await anyio.sleep(0.01)


async def recover(dsn: str, suffix: str, other: bool) -> None:
    """Child: `recover_pending` in a loop."""
    sagas = mediator(dsn, suffix, other=other)
    ready()
    while True:
        try:
            handled = await sagas.recover_pending(limit=5, stale_after=2.0)
        except Exception as error:
            print(f"recover_pending failed: {error!r}", flush=True)
            handled = 0
        if not handled:
            await anyio.sleep(0.3)


async def _states(dsn: str, suffix: str, ns: list[int]) -> dict[int, Any]:
    store = storage(dsn, suffix)
    states: dict[int, Any] = {}
    try:
        for n in ns:
            try:
                states[n] = await store.load_saga_state(saga_id(n))
            except SagaNotFoundError:
                states[n] = None
    finally:
        store.close()
    return states


def scenario(settings: Settings) -> Outcome:
    outcome = Outcome("saga-kill")
    rng = settings.rng(outcome.name)
    dsn, suffix = settings.postgres_dsn, unique()
    ledger = str(settings.workdir / "sagas.ledger")
    effects = f"faults_effects_{suffix}"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(
            f"CREATE TABLE {effects} (id bigserial PRIMARY KEY, saga text, step text, what text)"
        )
    try:
        storage(dsn, suffix).close()

        def starter(generation: int) -> Child:
            return Child(
                settings.workdir,
                f"saga-starter-{generation}",
                "sagas",
                "start",
                backend=backend_of(generation),
                dsn=dsn,
                suffix=suffix,
                ledger=ledger,
                first=generation * 1_000_000,
            )

        def recoverer(kind: str, other: bool) -> Callable[[int], Child]:
            def spawn(generation: int) -> Child:
                return Child(
                    settings.workdir,
                    f"saga-recovery-{kind}-{generation}",
                    "sagas",
                    "recover",
                    backend=backend_of(generation + 1),
                    dsn=dsn,
                    suffix=suffix,
                    other=other,
                )

            return spawn

        starters = Pool(starter, 2)
        # The workers that know the second saga type and those that don't are pools of their
        # own: a killed worker is replaced by one of its kind (were the kind drawn per
        # generation, a run of kills could leave no worker that knows the type, and its
        # sagas RUNNING for good: a fault of the rig, not of recovery).
        knowing = Pool(recoverer("all", other=True), 1)
        plain = Pool(recoverer("main", other=False), 2)
        recoverers = (knowing, plain)
        # A victim: a starter half the time, each of the three recovery workers a sixth.
        victims = (starters, starters, starters, plain, plain, knowing)
        try:
            for child in [*starters.all(), *knowing.all(), *plain.all()]:
                child.wait_ready()
            deadline = time.monotonic() + settings.duration(15, 40)
            while time.monotonic() < deadline:
                time.sleep(rng.uniform(1.0, 3.0))
                rng.choice(victims).kill_one(rng)
                outcome.faults += 1
                for pool in (starters, *recoverers):
                    pool.replace_crashed()
            for child in starters.all():
                child.kill()
            started = sorted({int(f[1]) for f in read_lines(ledger) if f[0] == "start"})

            def finished() -> bool:
                for pool in recoverers:
                    pool.replace_crashed()
                states = anyio.run(_states, dsn, suffix, started)
                return all(s is None or s.status in TERMINAL for s in states.values())

            if not wait_until(finished, 90, 1.0):
                outcome.problem("sagas still unfinished 90 s after the last fault")
        finally:
            for pool in (starters, *recoverers):
                pool.stop()
        outcome.problems.extend(knowing.crashes + plain.crashes + starters.crashes)
        failures = [
            line
            for pool in recoverers
            for child in pool.every
            for line in child.output().splitlines()
            if line.startswith("recover_pending failed")
        ]
        if failures:
            outcome.problem(f"recover_pending raised {len(failures)} time(s); first: {failures[0]}")
        states = anyio.run(_states, dsn, suffix, started)
        with psycopg.connect(dsn, autocommit=True) as admin:
            rows = admin.execute(
                f"SELECT id, saga, step, what FROM {effects} ORDER BY id"
            ).fetchall()
    finally:
        with psycopg.connect(dsn, autocommit=True) as admin:
            for table in (effects, f"faults_log_{suffix}", f"faults_sagas_{suffix}"):
                admin.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
    check(outcome, states, rows)
    outcome.notes.append(
        f"{starters.generation} starters and {knowing.generation + plain.generation} "
        "recovery workers in all"
    )
    return outcome


def check(outcome: Outcome, states: dict[int, Any], rows: list[tuple[Any, ...]]) -> None:
    calls: dict[str, list[tuple[int, str, str]]] = {}
    for id_, sid, step, what in rows:
        calls.setdefault(sid, []).append((id_, step, what))
    problems: dict[str, list[int]] = {}
    for n, state in states.items():
        if state is None:
            continue  # killed before the saga was persisted: never started
        outcome.sent += 1
        ctx = context_of(n)
        mine = calls.get(str(saga_id(n)), [])
        acts = [(i, step) for i, step, what in mine if what == "act"]
        done = {step for _, step, what in mine if what == "compensate"}
        firsts: dict[str, int] = {}
        for i, step in acts:
            firsts.setdefault(step, i)
        outcome.duplicated += len(acts) - len(firsts)
        order = [firsts[s] for s in ("Reserve", "Pay", "Ship") if s in firsts]
        first_comp = min((i for i, _, what in mine if what.startswith("compensate")), default=None)
        if order != sorted(order) or (
            first_comp is not None and any(i > first_comp for i, _ in acts)
        ):
            outcome.order_violations += 1
        status = state.status
        if status not in TERMINAL:
            outcome.lost += 1
            problems.setdefault(f"left {status.name}", []).append(n)
            continue
        if isinstance(ctx, OtherCtx):
            ok = status == saga.SagaStatus.COMPLETED
            if not ok:
                problems.setdefault(
                    "of the second type FAILED (given up by a worker that cannot run it)", []
                ).append(n)
        elif not ctx.fail:
            ok = status == saga.SagaStatus.COMPLETED and {"Reserve", "Pay", "Ship"} <= set(firsts)
            if not ok:
                problems.setdefault(f"should have completed, is {status.name}", []).append(n)
        else:
            missing = {"Reserve", "Pay"} & set(firsts) - done
            ok = status == saga.SagaStatus.FAILED and not missing
            if not ok:
                what = "flaky compensation" if ctx.flaky else "compensation"
                problems.setdefault(f"FAILED with steps uncompensated ({what})", []).append(n)
        if ok:
            outcome.handled += 1
    for text, ns in problems.items():
        outcome.problem(f"{len(ns)} saga(s) {text}, e.g. n={ns[0]}")
