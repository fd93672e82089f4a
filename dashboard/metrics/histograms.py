"""Fixed logarithmic histograms: the rollups keep counts per bin instead of raw values, so
percentiles over any range are sums of small arrays.

Resolution: 4 bins per doubling, so a bin spans a factor 2**(1/4); a percentile read as the
bin's geometric middle is within a factor 2**(1/8) (about ±9 %) of the exact value. Bin 0
holds everything below the base (read as 0); the last bin everything above the top.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from functools import cache

BINS_PER_DOUBLING = 4
# Latency in ms: 0.1 ms .. 0.1 * 2**24 ms (28 minutes).
LATENCY_BASE_MS = 0.1
LATENCY_BINS = 24 * BINS_PER_DOUBLING + 1
# Cost per trace in USD: 1e-7 .. 1e-7 * 2**30 (107 USD).
COST_BASE_USD = 1e-7
COST_BINS = 30 * BINS_PER_DOUBLING + 1
# Confidence 0..1 in twenty equal bins.
CONFIDENCE_BINS = 20
RESOLUTION_FACTOR = 2 ** (1 / (2 * BINS_PER_DOUBLING))


@cache
def lower_bounds(base: float, bins: int) -> tuple[float, ...]:
    """The lower bound of bins 1 .. bins-1: bin i holds [bound i-1, bound i)."""
    return tuple(base * 2 ** (i / BINS_PER_DOUBLING) for i in range(bins - 1))


def log_bin(value: float, base: float, bins: int) -> int:
    """The number of lower bounds at or below ``value``: PostgreSQL's ``width_bucket``
    with the same bounds gives the same bin (metrics.windows sums partial hours so)."""
    return bisect_right(lower_bounds(base, bins), value)


def log_bin_value(index: int, base: float) -> float:
    """The geometric middle of a bin (0 for the bin below the base)."""
    if index == 0:
        return 0.0
    return base * 2 ** ((index - 0.5) / BINS_PER_DOUBLING)


def confidence_bin(value: float) -> int:
    return min(max(int(value * CONFIDENCE_BINS), 0), CONFIDENCE_BINS - 1)


def add_into(total: list[int], other: Sequence[int]) -> None:
    for i, count in enumerate(other):
        if count:
            total[i] += count


def percentile(hist: Sequence[int], p: float, base: float) -> float | None:
    """Nearest-rank percentile (the ceil(p*n)-th smallest value) read from a histogram."""
    n = sum(hist)
    if n == 0:
        return None
    rank = max(1, math.ceil(p * n))
    seen = 0
    for index, count in enumerate(hist):
        seen += count
        if seen >= rank:
            return log_bin_value(index, base)
    return log_bin_value(len(hist) - 1, base)
