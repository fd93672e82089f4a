"""Routing advice: which cohorts of a micro model to send to the fallback model now, and
which could be taken back, with what each change would cost or save per day.

For every micro model, cohort dimension, value and evaluator (``eval-fail-rate`` grouped
by the dimension: n and Wilson 95 % interval):

- an evaluator counts for a cohort when its Kish effective n (``effective_n``: what the
  sampling weights leave of the raw n) is at least ``min_n`` (default 10: why at
  ``DEFAULT_MIN_N``);
- **send** when, for any evaluator that counts, the fail rate's interval lies wholly
  above ``threshold`` (its lower bound above it). The cost: the cohort's decisions per
  day not escalated today x the observed cost of one rescue (``fallback-economics`` for
  the cohort, else the micro model's own when the cohort had no priced rescue), with the
  interval that cost's interval gives;
- **take back** only when every evaluator that counts has its interval wholly below
  ``threshold`` (upper bound below), and the cohort is escalated at all: the saving is its
  rescues per day x the cost of one. A cohort is never both sent and taken back.

A cohort listed for several evaluators appears once per evaluator.

Cost: the figures are read once per cohort dimension for every micro model at once
(grouped by micro model and cohort value), not once per micro model: over whole hours
3 + 4 x dimensions queries (the dimension look-ups included), plus the partial hours at a
ragged window's ends counted from the results, one query per partial hour and dimension
for every micro model (grouped by micro model too): 27 for 4 dimensions. The answers
are those of ``eval-fail-rate`` and ``fallback-economics`` for each micro model.

Where no rescue was ever priced the cost is None (shown as unknown, never as zero).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from typing import Any

from django.db import connection

from evaluators.queries import evaluation_counts

from . import Filters, InvalidQuery, _where, cohort_dimensions, micro_models
from .economics import _SQL, economics_row
from .evaluations import _add
from .weighting import weighted_rate
from .windows import partial_hours, whole_hours

DEFAULT_THRESHOLD = 0.10
# Compared with the Kish effective n, not the raw n. Sampled evaluations weigh 1 / their
# sampling probability, and verdicts always taken (on fallback or error) weigh 1, so a
# cohort's effective n is often a third of its raw n: 30, the small-n mark of the heatmap,
# would leave most sampled cohorts without advice however clear their interval. The
# interval (Wilson at the linearisation n*, weighting.py) already widens with a small n;
# the floor only keeps out the few verdicts whose estimated variance cannot be trusted.
DEFAULT_MIN_N = 10


def _pct(value: float) -> str:
    return f"{value * 100:.1f} %"


def _advice(
    action: str,
    key: str,
    row: dict[str, Any],
    units_per_day: float,
    per_rescue: tuple[float | None, float | None, float | None],
) -> dict[str, Any]:
    money, low, high = (None if c is None else units_per_day * c for c in per_rescue)
    cohort = f"{key}={row['group']}"
    # The effective n is said only where the weights make it differ from the raw n.
    effective = (
        f", effective n={row['effective_n']:.1f}"
        if abs(row["effective_n"] - row["n"]) >= 0.05
        else ""
    )
    rate = (
        f"{row['evaluator']} fail rate {_pct(row['rate'])}"
        f" ({row['low'] * 100:.1f}-{row['high'] * 100:.1f} %, n={row['n']}{effective})"
    )
    amount = "cost unknown (no priced rescue)" if money is None else f"${money:.2f}/day"
    if action == "send":
        sign = "" if money is None else "+"
        message = f"send `{cohort}` to the fallback now: {sign}{amount}, {rate}"
    else:
        sign = "" if money is None else "-"
        message = f"`{cohort}` could be taken back from the fallback: {sign}{amount}, {rate}"
    return {
        "dimension": key,
        "value": row["group"],
        "evaluator": row["evaluator"],
        "n": row["n"],
        "effective_n": row["effective_n"],
        "fail_rate": row["rate"],
        "low": row["low"],
        "high": row["high"],
        "usd_per_day": money,
        "usd_per_day_low": low,
        "usd_per_day_high": high,
        "message": message,
    }


def _per_rescue(row: dict[str, Any] | None) -> tuple[float | None, float | None, float | None]:
    if row is None:
        return None, None, None
    return row["cost_per_rescue"], row["cost_per_rescue_low"], row["cost_per_rescue_high"]


def _economics(
    filters: Filters, key: str | None, days: float
) -> dict[str, dict[Any, dict[str, Any]]]:
    """micro model -> group -> fallback-economics row, in one query: grouped by micro
    model (``key`` None: group None) or by micro model and the cohort value of ``key``."""
    where, params, group_sql = _where(filters, key or "micro_model", None, histograms=False)
    group = "NULL::text" if key is None else group_sql
    sql = f"SELECT micro_model, {group}, {_SQL} {where} GROUP BY 1, 2"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        fetched = cursor.fetchall()
    out: dict[str, dict[Any, dict[str, Any]]] = defaultdict(dict)
    for name, grp, *sums in fetched:
        out[name][grp] = economics_row(
            int(sums[0] or 0),
            int(sums[1] or 0),
            int(sums[2] or 0),
            float(sums[3] or 0.0),
            int(sums[4] or 0),
            float(sums[5] or 0.0),
            days,
            float(sums[6] or 0.0),
        )
    return out


def _fail_rates(filters: Filters, key: str, names: list[str]) -> dict[str, list[dict[str, Any]]]:
    """micro model -> eval-fail-rate rows grouped by ``key`` (evaluator, group, n, rate,
    low, high, effective_n), the whole hours of every micro model in one query."""
    counts: dict[str, dict[tuple[str, Any], list]] = defaultdict(
        lambda: defaultdict(lambda: [0, 0, 0.0, 0.0, 0.0, 0.0])
    )
    hours = whole_hours(filters.start, filters.end)
    if hours is not None:
        whole = replace(filters, start=hours[0], end=hours[1])
        where, params, group_sql = _where(whole, key, None, "dashboard_evalrollup")
        sql = (
            f"SELECT micro_model, evaluator, {group_sql}, sum(failed), sum(evaluated),"
            " sum(weighted_failed), sum(weighted_evaluated), sum(weighted_sq_failed),"
            f" sum(weighted_sq_evaluated) {where} GROUP BY 1, 2, 3"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            for name, evaluator, grp, *sums in cursor.fetchall():
                _add(counts[name][(evaluator, grp)], *sums)
    wanted = set(names)
    for edge_start, edge_end in partial_hours(filters.start, filters.end):
        for c in evaluation_counts(
            list(filters.project_ids),
            start=edge_start,
            end=edge_end,
            micro_model=filters.micro_model,
            group_by=key,
            cohort=filters.cohort,
            per_micro_model=True,
        ):
            if c.micro_model in wanted:
                _add(
                    counts[c.micro_model][(c.evaluator, c.group)],
                    c.failed,
                    c.evaluated,
                    c.weighted_failed,
                    c.weighted_evaluated,
                    c.weighted_sq_failed,
                    c.weighted_sq_evaluated,
                )
    out: dict[str, list[dict[str, Any]]] = {}
    for name, by_group in counts.items():
        rows = []
        for (evaluator, grp), (failed, evaluated, *sums) in sorted(
            by_group.items(), key=lambda item: (item[0][0], str(item[0][1]))
        ):
            weighted = weighted_rate(failed, evaluated, *sums)
            rows.append(
                {
                    "evaluator": evaluator,
                    "group": grp,
                    "n": evaluated,
                    "rate": weighted.rate,
                    "low": weighted.low,
                    "high": weighted.high,
                    "effective_n": round(weighted.effective_n, 2),
                }
            )
        out[name] = rows
    return out


def routing_advice(
    filters: Filters,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    min_n: int = DEFAULT_MIN_N,
) -> list[dict[str, Any]]:
    """Per micro model (``filters.micro_model``, or every one in range): ``send`` and
    ``take_back`` lists (module docstring)."""
    if not 0 < threshold < 1:
        raise InvalidQuery("threshold: a fail rate between 0 and 1, e.g. 0.1")
    if min_n < 1:
        raise InvalidQuery("min_n: at least 1")
    # The evaluation rollup has no route or model column (as in eval-fail-rate).
    for name in ("route", "model"):
        if getattr(filters, name) is not None:
            raise InvalidQuery(
                f"{name}: routing advice is filtered by micro model and cohort, not {name}"
            )
    names = (
        [filters.micro_model]
        if filters.micro_model
        else [row["name"] for row in micro_models(filters) if row["name"]]
    )
    days = (filters.end - filters.start).total_seconds() / 86400
    # A cohort filter narrows the advice to that cohort: its own dimension only (the
    # rollups keep one cohort dimension per row).
    dimensions = (
        [key for key, _ in cohort_dimensions()] if filters.cohort is None else [filters.cohort[0]]
    )
    overall = _economics(filters, None, days)
    by_dimension = [
        (key, _economics(filters, key, days), _fail_rates(filters, key, names))
        for key in dimensions
    ]
    out = []
    for name in names:
        own_overall = overall.get(name, {}).get(None)
        default = _per_rescue(own_overall)
        send: list[dict[str, Any]] = []
        take_back: list[dict[str, Any]] = []
        for key, economics_by_model, rates_by_model in by_dimension:
            economics = economics_by_model.get(name, {})
            cohorts: dict[Any, list[dict[str, Any]]] = defaultdict(list)
            for row in rates_by_model.get(name, []):
                if row["effective_n"] < min_n or row["rate"] is None:
                    continue
                cohorts[row["group"]].append(row)
            for grp, rows in cohorts.items():
                traffic = economics.get(grp)
                own = _per_rescue(traffic)
                per_rescue = own if own[0] is not None else default
                decisions = traffic["decisions"] if traffic else 0
                rescues = traffic["rescues"] if traffic else 0
                failing = [row for row in rows if row["low"] > threshold]
                if failing:
                    units = (decisions - rescues) / days
                    send += [_advice("send", key, row, units, per_rescue) for row in failing]
                elif rescues and all(row["high"] < threshold for row in rows):
                    take_back += [
                        _advice("take_back", key, row, rescues / days, per_rescue) for row in rows
                    ]
        send.sort(key=lambda a: -a["low"])
        take_back.sort(key=lambda a: a["high"])
        out.append(
            {
                "micro_model": name,
                "threshold": threshold,
                "min_n": min_n,
                "send": send,
                "take_back": take_back,
            }
        )
    return out
