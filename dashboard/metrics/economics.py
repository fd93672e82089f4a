"""Fallback economics: what the micro model's rescues cost and what it saves against
sending the same traffic always to the fallback model.

Read from the rollups like every metric (``rescue_costed`` and ``rescue_cost_sum``: the
fold prices each escalated trace's spans on models other than its micro models', from the
observed tokens and ``ModelPrice``, see pricing.py). Per group (a cohort value, or all)
and optionally per day:

- ``rescues`` / ``decisions`` = the rescue rate, with its Wilson 95 % interval;
- ``rescue_cost``: what the priced rescues cost (``priced_rescues`` of them), and
  ``cost_per_rescue`` its mean: the observed cost of one fallback call;
- ``actual_cost``: what the priced traces cost (``n`` = ``costed_traces``), rescues
  included;
- ``always_fallback_cost`` = ``n`` x ``cost_per_rescue``: the same traces each sent to
  the fallback at the observed cost of a rescue (the micro model's own spend dropped);
- ``savings`` = always-fallback - actual, per day of the range and per 1,000 traces.

Costs are exact sums over the traces in range (nothing is sampled); the one estimate is the
cost of a rescue, whose 95 % interval (normal, from the rollup's sum of squares; two
priced rescues at least) carries into ``*_low`` / ``*_high`` of the cost per rescue and
of the savings. A group with no priced rescue has no cost per rescue and so no savings
(None, never zero).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from django.db import connection

from . import (
    WILSON_Z,
    Filters,
    InvalidQuery,
    MetricResult,
    _result,
    cohort_dimensions,
    wilson_interval,
)
from .sql import _time_sql, _where
from .windows import shared_read

_SQL = (
    "sum(decisions), sum(fallbacks), sum(costed_traces), sum(cost_sum),"
    " sum(rescue_costed), sum(rescue_cost_sum), sum(rescue_cost_sq_sum)"
)


def economics_from_sums(sums: Sequence[Any], days: float) -> dict[str, Any]:
    """``economics_row`` of the seven sums ``_SQL`` selects, as the database returns them
    (NULL where no row was summed)."""
    decisions, rescues, costed, cost_sum, rescue_costed, rescue_sum, rescue_sq = sums
    return economics_row(
        int(decisions or 0),
        int(rescues or 0),
        int(costed or 0),
        float(cost_sum or 0.0),
        int(rescue_costed or 0),
        float(rescue_sum or 0.0),
        days,
        float(rescue_sq or 0.0),
    )


def economics_row(
    decisions: int,
    rescues: int,
    costed_traces: int,
    cost_sum: float,
    rescue_costed: int,
    rescue_cost_sum: float,
    days: float,
    rescue_cost_sq_sum: float = 0.0,
) -> dict[str, Any]:
    """One group's figures from its sums (module docstring)."""
    interval = wilson_interval(rescues, decisions)
    per_rescue = rescue_cost_sum / rescue_costed if rescue_costed else None
    always = costed_traces * per_rescue if per_rescue is not None else None
    savings = always - cost_sum if always is not None else None
    mean_interval = _mean_interval(rescue_costed, rescue_cost_sum, rescue_cost_sq_sum)
    ranges: dict[str, Any] = {}
    for name, scale in (
        ("savings", 1.0),
        ("savings_per_day", 1 / days if days > 0 else None),
        ("savings_per_1k_traces", 1000 / costed_traces if costed_traces else None),
    ):
        bounds: list[float | None] = (
            [(costed_traces * m - cost_sum) * scale for m in mean_interval]
            if mean_interval is not None and scale is not None
            else [None, None]
        )
        ranges[f"{name}_low"], ranges[f"{name}_high"] = bounds
    return {
        "n": costed_traces,
        "decisions": decisions,
        "rescues": rescues,
        "rescue_rate": rescues / decisions if decisions else None,
        "rescue_rate_low": interval[0] if interval else None,
        "rescue_rate_high": interval[1] if interval else None,
        "priced_rescues": rescue_costed,
        "rescue_cost": rescue_cost_sum,
        "cost_per_rescue": per_rescue,
        "cost_per_rescue_low": mean_interval[0] if mean_interval else None,
        "cost_per_rescue_high": mean_interval[1] if mean_interval else None,
        "actual_cost": cost_sum,
        "always_fallback_cost": always,
        "savings": savings,
        "savings_per_day": savings / days if savings is not None and days > 0 else None,
        "savings_per_1k_traces": savings / costed_traces * 1000
        if savings is not None and costed_traces
        else None,
        **ranges,
    }


def _mean_interval(k: int, total: float, squares: float) -> tuple[float, float] | None:
    """95 % normal interval of a mean from its count, sum and sum of squares (k >= 2)."""
    if k < 2:
        return None
    mean = total / k
    variance = max(0.0, (squares - k * mean * mean) / (k - 1))
    half = WILSON_Z * math.sqrt(variance / k)
    return max(0.0, mean - half), mean + half


@shared_read
def fallback_economics(
    filters: Filters, group_by: str | None = None, interval: str | None = None
) -> MetricResult:
    if group_by is not None and group_by not in {key for key, _ in cohort_dimensions()}:
        raise InvalidQuery("group fallback economics by a cohort dimension")
    if interval not in (None, "day"):
        raise InvalidQuery("fallback economics: interval day, or none")
    where, params, group_sql = _where(filters, group_by, interval, histograms=False)
    sql = (
        f"SELECT {group_sql or 'NULL::text'}, {_time_sql(interval)}, {_SQL} {where}"
        " GROUP BY 1, 2 ORDER BY 2 NULLS FIRST, 1 NULLS FIRST"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        fetched = cursor.fetchall()
    range_days = (filters.end - filters.start).total_seconds() / 86400
    rows = []
    for grp, time, *sums in fetched:
        if time is None:
            days = range_days
        else:
            # A day bucket counts the part of it inside the range.
            day_end = time + timedelta(days=1)
            days = (min(day_end, filters.end) - max(time, filters.start)).total_seconds() / 86400
        row = economics_from_sums(sums, days)
        rows.append({"group": grp, "time": time.isoformat() if time else None, **row})
    notes = [] if rows else ["no traffic in range"]
    return _result("fallback-economics", filters, group_by, interval, rows, notes)
