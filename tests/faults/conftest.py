"""Keep the fault suite out of the plain ``pytest`` run: it is a set of
multi-process scenarios run by ``python -m tests.faults`` (``nox -s faults``),
not test functions."""

collect_ignore_glob = ["*"]
