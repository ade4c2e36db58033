"""Defaults shared by every bootstrap, so they are identical everywhere."""

MAX_CONCURRENT_EVENT_HANDLERS = 10
"""Bound of the parallel event dispatch (a ``CapacityLimiter``)."""

CONCURRENT_EVENT_HANDLE_ENABLE = False
"""Event handlers run sequentially, breadth-first, in bind order, by default."""

COMPENSATION_RETRY_COUNT = 3
"""Attempts per saga compensation."""

COMPENSATION_RETRY_DELAY = 0.5
"""Seconds before the second compensation attempt."""

COMPENSATION_RETRY_BACKOFF = 2.0
"""Multiplier of the delay between compensation attempts."""
