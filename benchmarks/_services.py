"""Where the benchmark's external services are: PostgreSQL (saga storage
workloads) and Kafka (throughput workloads).

Options of ``python -m benchmarks`` win; otherwise environment variables:

* ``--postgres-dsn`` / ``ANYCQRS_BENCH_POSTGRES_DSN`` (then the test suite's
  ``ANYCQRS_TEST_POSTGRES_DSN``), default ``postgresql://postgres@127.0.0.1:5432/test``;
* ``--kafka-bootstrap`` / ``ANYCQRS_BENCH_KAFKA_BOOTSTRAP``: an existing
  broker's ``host:port``; default: a Tansu broker started for the run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import attrs

DEFAULT_POSTGRES_DSN = "postgresql://postgres@127.0.0.1:5432/test"


@attrs.frozen
class Services:
    """The services the workloads use."""

    postgres_dsn: str = DEFAULT_POSTGRES_DSN
    """libpq DSN of the database the PostgreSQL saga workloads write to (their
    ``bench_*`` tables are dropped when each workload ends)."""
    kafka_bootstrap: str | None = None
    """``bootstrap.servers`` of a running Kafka broker, or ``None`` to start Tansu."""

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] = os.environ,
        *,
        postgres_dsn: str | None = None,
        kafka_bootstrap: str | None = None,
    ) -> Services:
        """The given values, else the environment's, else the defaults."""
        return cls(
            postgres_dsn=postgres_dsn
            or environ.get("ANYCQRS_BENCH_POSTGRES_DSN")
            or environ.get("ANYCQRS_TEST_POSTGRES_DSN")
            or DEFAULT_POSTGRES_DSN,
            kafka_bootstrap=kafka_bootstrap or environ.get("ANYCQRS_BENCH_KAFKA_BOOTSTRAP") or None,
        )


def postgres_unavailable(dsn: str) -> str | None:
    """Why the PostgreSQL workloads can't run (``None``: they can)."""
    try:
        import psycopg
    except ImportError:
        return "psycopg not installed"
    try:
        with psycopg.connect(dsn, connect_timeout=2):
            return None
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"PostgreSQL not reachable ({first})"
