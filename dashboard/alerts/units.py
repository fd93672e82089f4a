"""The unit a rule's threshold is typed and shown in. Proportions (rates, shares, eval fail
rate, label recall / precision / F1) and relative changes are stored as fractions (0.1) and
read by the evaluation as such; people and the API give and see them in percent (10).
Costs are stored per trace (USD, as the cost metric's ``mean_usd`` and ``p90_usd`` the
evaluation compares with) and given and seen per 1,000 traces, as the dashboard shows
them (4.2 for 0.0042 USD a trace). The conversion happens here, at the form and serializer
boundary, and nowhere else."""

from __future__ import annotations

import math

from .evaluation import COST_METRICS, LABEL_METRICS, LATENCY_METRICS, RATE_METRICS

PROPORTION_METRICS = frozenset({*RATE_METRICS, "route-share", "eval-fail-rate", *LABEL_METRICS})
PER_1000_TRACES = "USD per 1,000 traces"
# The factor from the stored unit to the unit people type and see.
_SCALE = {"percent": 100.0, PER_1000_TRACES: 1000.0}


class UnitError(ValueError):
    """A threshold or margin outside what its unit allows (the message says which)."""


def unit_of(metric: str, compare_to: str | None) -> str:
    """'percent' for proportions and relative changes, else the metric's own unit."""
    if compare_to or metric in PROPORTION_METRICS:
        return "percent"
    if metric in LATENCY_METRICS:
        return "ms"
    if metric in COST_METRICS:
        return PER_1000_TRACES
    return "USD"


def to_stored(value: float, metric: str, compare_to: str | None, *, margin: bool = False) -> float:
    """The stored value of a typed threshold (``margin``: the hysteresis). An absolute
    proportion is 0-100 %, a relative change at least -100 % (a drop to zero)."""
    if not math.isfinite(value):
        raise UnitError("a finite number")
    unit = unit_of(metric, compare_to)
    if unit == PER_1000_TRACES:
        # Rounded: 4.2 / 1000 is 0.004200000000000001 in binary floating point.
        return round(value / _SCALE[unit], 12)
    if unit != "percent":
        return value
    if margin or not compare_to:
        if not 0.0 <= value <= 100.0:
            raise UnitError("a percentage from 0 to 100 (type 10 for 10 %)")
    elif value < -100.0:
        raise UnitError("a relative change of -100 % or more (type 30 for +30 %)")
    return value / 100.0


def to_shown(value: float | None, metric: str, compare_to: str | None) -> float | None:
    """A stored threshold, value or interval bound in the unit people see."""
    scale = _SCALE.get(unit_of(metric, compare_to))
    if value is None or scale is None:
        return value
    # Rounded: 0.1 * 100 is 10.000000000000002 in binary floating point.
    return round(value * scale, 9)


def display(value: float | None, metric: str, compare_to: str | None) -> str:
    """A value as text with its unit: '12.5 %', '+30 %', '220 ms', '4.2 USD per 1,000
    traces'."""
    if value is None:
        return "\u2013"
    unit = unit_of(metric, compare_to)
    if unit == "percent":
        text = f"{value * 100.0:.2f}".rstrip("0").rstrip(".")
        return f"{'+' if compare_to and value > 0 else ''}{text} %"
    if unit == "ms":
        return f"{value:.1f} ms"
    if unit == PER_1000_TRACES:
        return f"{value * 1000.0:.4g} {PER_1000_TRACES}"
    return f"{value:.4g} USD"
