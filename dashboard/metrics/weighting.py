"""Rates over sampled evaluations: the inverse-probability weighted ratio estimator, its
interval, and the effective n (docs/metrics.md "Sampling-aware rates").

A verdict sampled with probability p stands for w = 1 / p verdicts of the whole traffic.
The rate of the whole traffic is estimated by the ratio R = Σ w·y / Σ w (y = 1 for a
failed verdict): a cohort sampled at 5 % then weighs in for its 20-fold traffic instead
of being out-voted by a cohort evaluated at 100 %.

Its variance by linearisation (Taylor) of the ratio, over the n verdicts:

    V(R) = Σ w² (y - R)² / (Σ w)²  =  (Σ w²y · (1 - 2R) + R² · Σ w²) / (Σ w)²

(y² = y, so Σ w², Σ w²y, Σ w and Σ w·y are all it needs: the rollup keeps the four). The
interval is the Wilson score interval at R with the n whose binomial variance equals
V(R), n* = R (1 - R) / V(R): it stays within [0, 1] and, when every weight is equal,
V(R) = R (1 - R) / n, so n* = n and the interval is exactly the plain Wilson interval.
At R = 0 or 1 (V = 0) n* is the Kish effective n, (Σ w)² / Σ w², the number of
equally-weighted verdicts that would carry as much information as these; it is reported
beside the raw n on every weighted rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

WILSON_Z = 1.959963984540054


def wilson_bounds(p: float, n: float, z: float = WILSON_Z) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``p`` observed over ``n`` (not
    necessarily whole) trials; exact 0 and 1 at the ends."""
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(max(p * (1 - p), 0.0) / n + z * z / (4 * n * n)) / denom
    low = 0.0 if p <= 0 else max(0.0, centre - half)
    high = 1.0 if p >= 1 else min(1.0, centre + half)
    return low, high


@dataclass(frozen=True, slots=True)
class WeightedRate:
    rate: float | None
    low: float | None
    high: float | None
    effective_n: float


def weighted_rate(
    failed: int,
    evaluated: int,
    w_failed: float,
    w_evaluated: float,
    w2_failed: float,
    w2_evaluated: float,
) -> WeightedRate:
    """R = Σ w·y / Σ w with its 95 % interval (Wilson at the linearisation n*) and the
    Kish effective n; ``failed`` and ``evaluated`` (raw counts) say when R is exactly 0
    or 1, which float sums of weights cannot."""
    if evaluated <= 0 or w_evaluated <= 0 or w2_evaluated <= 0:
        return WeightedRate(None, None, None, 0.0)
    kish = w_evaluated * w_evaluated / w2_evaluated
    if failed <= 0:
        rate = 0.0
    elif failed >= evaluated:
        rate = 1.0
    else:
        rate = min(max(w_failed / w_evaluated, 0.0), 1.0)
    n_star = kish
    if 0.0 < rate < 1.0:
        variance = (w2_failed * (1 - 2 * rate) + rate * rate * w2_evaluated) / (
            w_evaluated * w_evaluated
        )
        if variance > 0:
            n_star = rate * (1 - rate) / variance
    low, high = wilson_bounds(rate, n_star)
    return WeightedRate(rate, low, high, kish)
