"""Helpers of the observability tests: an SDK meter provider with an in-memory
reader, reading points by name, and the fault proxy of tests/faults."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader


class Metrics:
    """A meter provider and what its in-memory reader collected."""

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.provider = MeterProvider(metric_readers=[self.reader])

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        found: list[Any] = []
        if data is None:
            return found
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found

    def value(self, name: str, **attributes: Any) -> float:
        """Sum (counters, gauges) or count (histograms) of the matching points."""
        total = 0.0
        for point in self.points(name):
            if all(point.attributes.get(k) == v for k, v in attributes.items()):
                total += point.count if hasattr(point, "count") else point.value
        return total

    def by(self, name: str, key: str) -> dict[Any, float]:
        """Values of `name` by one attribute."""
        out: dict[Any, float] = {}
        for point in self.points(name):
            value = point.count if hasattr(point, "count") else point.value
            label = point.attributes.get(key)
            out[label] = out.get(label, 0) + value
        return out


def load_proxy() -> Any:
    """tests/faults/proxy.py's `FaultProxy` (loaded by path: tests is not a package)."""
    name = "anycqrs_tests_fault_proxy"
    module = sys.modules.get(name)
    if module is None:
        path = Path(__file__).parent.parent / "faults" / "proxy.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return module.FaultProxy
