"""The fault suite: multi-process scenarios with a ledger each (``nox -s faults``).

Run it with ``python -m tests.faults`` (``--long`` for the long mode, ``--only NAME``
for one scenario). Plain ``pytest`` never collects it (see ``conftest.py``); the
Reliability docs page (``docs/reliability.md``) explains the scenarios.
"""
