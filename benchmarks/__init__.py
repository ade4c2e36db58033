"""anycqrs benchmark suite: anycqrs under asyncio and trio, side by side with
python-cqrs 5.3 (asyncio), in the same process and rounds.

Run it with ``nox -s bench`` (which installs python-cqrs) or, inside the bench
environment, ``python -m benchmarks [--quick] [--json PATH] [--only PATTERN]
[--rounds N]``. ``python benchmarks/plot.py results.json`` draws ops/s per
workload.
"""
