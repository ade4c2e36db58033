"""A saga process for the two-process test (run as a script, not collected).

``python _worker.py run DSN SUFFIX COUNT BACKEND``: starts COUNT sagas and hangs
some of them mid-act or mid-compensation (the parent SIGKILLs it).
``python _worker.py recover DSN SUFFIX BACKEND``: recovers until nothing is left.

Every act / compensate goes through a (deliberately non-atomic) idempotency
guard on PostgreSQL: ``effects`` gets a row the first time a step acts for a
saga, ``attempts`` a row on every call.
"""

from __future__ import annotations

import sys
import threading

import anyio
import anyio.to_thread
import attrs
import lagom
import psycopg

import anycqrs.saga as saga
from anycqrs.saga.bootstrap import bootstrap
from anycqrs.saga.storage import PostgresSagaStorage


@attrs.define
class Ctx(saga.SagaContext):
    n: int
    fail: bool = False
    trail: list[str] = attrs.Factory(list)


class Effects:
    def __init__(self, dsn: str, suffix: str, hang: bool) -> None:
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.lock = threading.Lock()
        self.suffix = suffix
        self.hang = hang

    def _guard(self, key: str, what: str) -> bool:
        with self.lock:
            self.conn.execute(
                f"INSERT INTO attempts_{self.suffix} (key, what) VALUES (%s, %s)", (key, what)
            )
            seen = self.conn.execute(
                f"SELECT 1 FROM effects_{self.suffix} WHERE key = %s AND what = %s", (key, what)
            ).fetchone()
            if seen is not None:
                return False
            self.conn.execute(
                f"INSERT INTO effects_{self.suffix} (key, what) VALUES (%s, %s)", (key, what)
            )
            return True

    async def guard(self, key: str, what: str) -> bool:
        return await anyio.to_thread.run_sync(self._guard, key, what)


def say(line: str) -> None:
    print(line, flush=True)


class Step(saga.SagaStepHandler[Ctx, str]):
    def __init__(self, effects: Effects) -> None:
        self.effects = effects

    async def act(self, context: Ctx) -> str:
        await self.effects.guard(self.idempotency_key, "act")
        context.trail.append(self.step_name)
        return self.step_name

    async def compensate(self, context: Ctx) -> None:
        await self.effects.guard(self.idempotency_key, "compensate")


class Reserve(Step):
    pass


class Pay(Step):
    async def act(self, context: Ctx) -> str:
        result = await super().act(context)
        if self.effects.hang and context.n % 2 == 0:
            say(f"HANG {self.saga_id}")
            await anyio.sleep_forever()
        return result

    async def compensate(self, context: Ctx) -> None:
        await super().compensate(context)
        if self.effects.hang:
            say(f"HANG {self.saga_id}")
            await anyio.sleep_forever()


class Ship(Step):
    async def act(self, context: Ctx) -> str:
        if context.fail:
            raise RuntimeError("no courier")
        return await super().act(context)


class TwoProcessSaga(saga.Saga[Ctx]):
    steps = [Reserve, Pay, Ship]


def mediator(dsn: str, suffix: str, hang: bool) -> tuple[saga.SagaMediator, PostgresSagaStorage]:
    container = lagom.Container()
    container[Effects] = Effects(dsn, suffix, hang)
    storage = PostgresSagaStorage(dsn, sagas_table=f"sagas_{suffix}", log_table=f"log_{suffix}")
    return (
        bootstrap(
            di_container=container,
            sagas_mapper=lambda sagas: sagas.bind(Ctx, TwoProcessSaga),
            saga_storage=storage,
            compensation_retry_delay=0.01,
            compensation_timeout=600 if hang else 10,
        ),
        storage,
    )


async def run(dsn: str, suffix: str, count: int) -> None:
    sagas, _ = mediator(dsn, suffix, hang=True)

    async def one(n: int) -> None:
        try:
            async for _ in sagas.stream(Ctx(n=n, fail=n % 4 == 1)):
                pass
        except RuntimeError:
            pass
        say(f"DONE {n}")

    async with anyio.create_task_group() as tg:
        for n in range(count):
            tg.start_soon(one, n)


async def recover(dsn: str, suffix: str) -> None:
    sagas, storage = mediator(dsn, suffix, hang=False)
    total = 0
    while True:
        handled = await sagas.recover_pending(limit=3, stale_after=0)
        if not handled:
            break
        total += handled
    storage.close()
    say(f"RECOVERED {total}")


def main(argv: list[str]) -> None:
    mode, dsn, suffix = argv[1], argv[2], argv[3]
    if mode == "run":
        anyio.run(run, dsn, suffix, int(argv[4]), backend=argv[5])
    else:
        anyio.run(recover, dsn, suffix, backend=argv[4])


if __name__ == "__main__":
    main(sys.argv)
