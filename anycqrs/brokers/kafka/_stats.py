"""What a `KafkaEventConsumer` learns from librdkafka's callbacks for health
and metrics: `error_cb` (all brokers down) and `stats_cb` (broker states,
each assigned partition's consumer lag)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError

from ...observability._health import ConsumerProbe
from ...observability._metrics import ConsumerMetrics

__all__ = ["Observer"]

logger = logging.getLogger("anycqrs.brokers.kafka")


class Observer:
    """One run's librdkafka callbacks, chained to the user's own.

    Args:
        probe: the consumer's health state.
        metrics: the consumer's instruments (`None`: metrics off).
    """

    __slots__ = ("_errors", "_metrics", "_probe", "_stats")

    def __init__(self, probe: ConsumerProbe, metrics: ConsumerMetrics | None) -> None:
        self._probe = probe
        self._metrics = metrics
        self._stats: Callable[[str], Any] | None = None
        self._errors: Callable[[KafkaError], Any] | None = None

    def install(self, config: dict[str, Any]) -> dict[str, Any]:
        """`config` with this observer's callbacks (the user's are called too)."""
        config = dict(config)
        self._stats = config.pop("stats_cb", None)
        self._errors = config.pop("error_cb", None)
        config["error_cb"] = self.on_error
        if config.get("statistics.interval.ms"):
            config["stats_cb"] = self.on_stats
        return config

    def on_error(self, error: KafkaError) -> None:
        """librdkafka's `error_cb`: all brokers down is a lost connection."""
        down = error.code() == KafkaError._ALL_BROKERS_DOWN
        if down:
            self._probe.disconnected(error.str())
        if self._errors is not None:
            self._errors(error)
        else:  # what librdkafka logs itself when no error_cb is set
            logger.warning("Kafka consumer error: %s", error.str())

    def on_stats(self, text: str) -> None:
        """librdkafka's `stats_cb`: broker states, then each partition's lag."""
        if self._stats is not None:
            self._stats(text)
        stats = json.loads(text)
        states = [
            broker.get("state")
            for broker in stats.get("brokers", {}).values()
            if broker.get("nodeid", -1) >= 0
        ]
        if "UP" in states:
            self._probe.connected()
        elif states:
            self._probe.disconnected("no broker connection is up: " + ", ".join(map(str, states)))
        metrics = self._metrics
        if metrics is None:
            return
        for topic, data in stats.get("topics", {}).items():
            for number, partition in data.get("partitions", {}).items():
                lag = partition.get("consumer_lag", -1)
                if int(number) >= 0 and lag >= 0:
                    metrics.lag(topic, int(number), lag)
