"""``python -m tests.faults [--long] [--only NAME ...] [--seed N]``: run the
fault scenarios, print the table, exit 1 when any scenario failed.

The mode also comes from ``ANYCQRS_FAULTS_MODE=long``. PostgreSQL is
``ANYCQRS_TEST_POSTGRES_DSN`` (default ``postgresql://postgres@127.0.0.1:5432/test``).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import random
import sys
import tempfile
import time
import traceback
from pathlib import Path

from .harness import Settings
from .ledger import Outcome, table

SCENARIOS = {
    "kafka-group-kill": "kafka_group",
    "kafka-poison": "poison",
    "kafka-producer-proxy": "producer",
    "outbox-kill": "outbox",
    "outbox-relay-outage": "relay_outage",
    "saga-kill": "sagas",
    "rabbitmq-proxy": "rabbitmq",
    "inbox-kafka-kill": "inbox",
    "inbox-rabbitmq-proxy": "inbox_rabbitmq",
}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults", description=__doc__)
    parser.add_argument(
        "--long", action="store_true", help="the long mode (>= 30 s of faults each)"
    )
    parser.add_argument("--only", action="append", choices=sorted(SCENARIOS), help="run only these")
    parser.add_argument("--seed", type=int, default=None, help="seed of the random faults")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    long = args.long or os.environ.get("ANYCQRS_FAULTS_MODE", "").lower() == "long"
    seed = args.seed if args.seed is not None else random.randrange(1_000_000)
    workdir = Path(tempfile.mkdtemp(prefix="anycqrs-faults-"))
    settings = Settings(
        long=long,
        seed=seed,
        workdir=workdir,
        postgres_dsn=os.environ.get(
            "ANYCQRS_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    print(
        f"fault suite: {'long' if long else 'short'} mode, seed {seed}, logs in {workdir}",
        flush=True,
    )
    outcomes: list[Outcome] = []
    started = time.monotonic()
    for name in args.only or list(SCENARIOS):
        print(f"--- {name}", flush=True)
        begun = time.monotonic()
        try:
            module = importlib.import_module(f"tests.faults.{SCENARIOS[name]}")
            outcome: Outcome = module.scenario(settings)
        except Exception as error:
            traceback.print_exc()
            outcome = Outcome(name)
            outcome.problem(f"the scenario itself failed: {error!r}")
        outcome.seconds = time.monotonic() - begun
        outcomes.append(outcome)
        print(table([outcome]).splitlines()[2], flush=True)
    print()
    print(table(outcomes))
    print(f"total {time.monotonic() - started:.0f} s, seed {seed}, logs in {workdir}")
    return 0 if all(o.passed for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
