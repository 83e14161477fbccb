"""A latency histogram with fixed buckets, for the Prometheus metrics (no I/O, no clock:
the caller measures and calls `observe(seconds)`)."""

from __future__ import annotations

from bisect import bisect_left


class Histogram:
    """Fixed buckets, cumulative on output; `observe(seconds)` costs one bisect."""

    BOUNDS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)

    def __init__(self, bounds=BOUNDS):
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1

    def cumulative(self):
        running = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts):
            running += count
            yield bound, running
