"""``python -m benchmarks [--quick] [--json PATH] [--only PATTERN] [--rounds N]
[--postgres-dsn DSN] [--kafka-bootstrap HOST:PORT]``."""

from __future__ import annotations

import argparse
import fnmatch
import json
import logging
import sys
from pathlib import Path

from ._catalog import all_workloads
from ._harness import Settings, run_suite
from ._report import document, machine_facts, markdown, print_table
from ._services import Services


def _matches(name: str, patterns: list[str]) -> bool:
    """A glob (``send/*``) or a plain substring (``saga``) of the name."""
    return any(
        fnmatch.fnmatchcase(name, p) if any(ch in p for ch in "*?[") else p in name
        for p in patterns
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny runs, one round (CI smoke)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="PATTERN",
        help="run the workloads whose name contains PATTERN (or matches it as a glob); repeatable",
    )
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 5, quick 1)")
    parser.add_argument(
        "--seconds", type=float, default=None, help="target duration of one round (default 0.2)"
    )
    parser.add_argument(
        "--plain", action="store_true", help="plain-text table even if rich is installed"
    )
    parser.add_argument(
        "--markdown", type=Path, metavar="PATH", help="also write the table as Markdown"
    )
    parser.add_argument(
        "--from-json",
        type=Path,
        metavar="PATH",
        help="do not measure: print (and convert) the results of an earlier --json run",
    )
    parser.add_argument(
        "--postgres-dsn",
        metavar="DSN",
        help="database of the PostgreSQL saga workloads (default: $ANYCQRS_BENCH_POSTGRES_DSN, "
        "then $ANYCQRS_TEST_POSTGRES_DSN, then postgresql://postgres@127.0.0.1:5432/test)",
    )
    parser.add_argument(
        "--kafka-bootstrap",
        metavar="HOST:PORT",
        help="a running Kafka broker for the kafka/* workloads (default: "
        "$ANYCQRS_BENCH_KAFKA_BOOTSTRAP, else a Tansu broker started for the run)",
    )
    parser.add_argument("--list", action="store_true", help="list the workloads and exit")
    parser.add_argument("-v", "--verbose", action="store_true", help="print progress to stderr")
    args = parser.parse_args(argv)

    # Neither library's debug logging is what we measure: both loggers at
    # WARNING. The records they still emit (a failing saga step is logged)
    # go to a NullHandler, so the cost of creating them is measured but no
    # terminal output is.
    for name in ("cqrs", "anycqrs"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.WARNING)
        logger.addHandler(logging.NullHandler())

    settings = Settings.quick_mode() if args.quick else Settings()
    if args.rounds is not None or args.seconds is not None:
        import attrs

        settings = attrs.evolve(
            settings,
            rounds=args.rounds if args.rounds is not None else settings.rounds,
            round_seconds=args.seconds if args.seconds is not None else settings.round_seconds,
        )
    services = Services.from_env(
        postgres_dsn=args.postgres_dsn, kafka_bootstrap=args.kafka_bootstrap
    )
    workloads = all_workloads(services)
    if args.only:
        workloads = [w for w in workloads if _matches(w.name, args.only)]
    if args.list:
        for w in workloads:
            print(f"{w.name:32} {w.description}")
        return 0
    if args.from_json:
        doc = json.loads(args.from_json.read_text(encoding="utf-8"))
        print_table(doc, use_rich=False if args.plain else None)
        if args.markdown:
            args.markdown.write_text(markdown(doc), encoding="utf-8")
        return 0
    meta = machine_facts()

    def progress(message: str) -> None:
        if args.verbose:
            print(message, file=sys.stderr, flush=True)

    results = run_suite(workloads, settings, progress)
    doc = document(results, settings, meta)
    print_table(doc, use_rich=False if args.plain else None)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"results written to {args.json}")
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(markdown(doc), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
