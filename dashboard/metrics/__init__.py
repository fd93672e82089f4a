"""Every metric microlens shows, defined once (DESIGN.md "Metrics"). Pages, the API and
alert rules call these functions; they read the rollups (see refresh.py) and, for the
partial hours of a range, the decision facts the rollups are summed from; never spans.

A query is a ``Filters`` (projects, time range, micro model, route, model, one cohort
value) plus an optional ``group_by`` (micro_model, route, model or a cohort key) and an
optional ``interval`` (hour or day) for time series. A range is read exactly,
``[start, end)``: its whole UTC hours from the rollups, the partial hours at its ends from
the decision facts (windows.py). Every value comes with its n.

Decisions are micro-model spans; a decision counts as escalated (fallback) when its
trace went to a fallback model. Trace metrics (cost, tokens, error rate of traces) count
each trace once, under its first micro-model decision's micro model and route.

The filters are defined in filters.py, the SQL every rollup read goes through in sql.py,
the search for the decisions behind a number in decisions.py; this module re-exports what
callers use of them.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.db import connection

from evaluators.queries import pending_counts

from ..models import PriceChange
from .decisions import DecisionKey, find_decisions
from .evaluations import rollup_counts
from .filters import Filters, InvalidQuery
from .fold import ceil_hour, floor_hour
from .histograms import (
    CONFIDENCE_BINS,
    COST_BASE_USD,
    COST_BINS,
    LATENCY_BASE_MS,
    LATENCY_BINS,
    RESOLUTION_FACTOR,
    add_into,
    percentile,
)
from .pricing import PriceBook
from .sql import _histograms, _sums, _time_sql, _where, cohort_dimensions
from .weighting import WILSON_Z, weighted_rate
from .windows import partial_hours_once, shared_read

INTERVALS = ("hour", "day")
# Below this many samples a rate is shown but marked as small-n.
SMALL_N = 30


@dataclass(frozen=True, slots=True)
class MetricResult:
    metric: str
    start: datetime
    end: datetime
    group_by: str | None
    interval: str | None
    rows: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)


def wilson_interval(successes: int, n: int, z: float = WILSON_Z) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion (95 % by default); None when n is 0."""
    if n <= 0:
        return None
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # At 0 and n the bounds are exactly 0 and 1 (rounding would leave them a hair inside).
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _result(name: str, filters: Filters, group_by, interval, rows, notes=()) -> MetricResult:
    return MetricResult(
        metric=name,
        start=filters.start,
        end=filters.end,
        group_by=group_by,
        interval=interval,
        rows=rows,
        notes=list(notes),
    )


# -- the metrics -------------------------------------------------------------------------


def _rate(name: str, numerator: str, denominator: str) -> Callable[..., MetricResult]:
    def metric(
        filters: Filters, group_by: str | None = None, interval: str | None = None
    ) -> MetricResult:
        rows = []
        for r in _sums(filters, group_by, interval, [numerator, denominator]):
            n, k = int(r[denominator] or 0), int(r[numerator] or 0)
            interval_ = wilson_interval(k, n)
            rows.append(
                {
                    "group": r["group"],
                    "time": _iso(r["time"]),
                    "n": n,
                    "count": k,
                    "rate": k / n if n else None,
                    "low": interval_[0] if interval_ else None,
                    "high": interval_[1] if interval_ else None,
                }
            )
        return _result(name, filters, group_by, interval, rows)

    metric.__name__ = name.replace("-", "_")
    metric.__doc__ = f"{numerator} / {denominator}, with n and a Wilson 95 % interval."
    return metric


fallback_rate = _rate("fallback-rate", "fallbacks", "decisions")
retry_rate = _rate("retry-rate", "retries", "decisions")
cache_hit_rate = _rate("cache-hit-rate", "cache_hits", "decisions")
error_rate = _rate("error-rate", "errors", "decisions")
trace_error_rate = _rate("trace-error-rate", "trace_errors", "traces")


def route_share(
    filters: Filters, group_by: str | None = None, interval: str | None = None
) -> MetricResult:
    """Micro-model decisions per route / all decisions in the same window (and group)."""
    if group_by == "route":
        group_by = None
    where, params, group_sql = _where(filters, group_by, interval, histograms=False)
    sql = (
        f"SELECT {group_sql or 'NULL::text'}, {_time_sql(interval)}, route, sum(decisions)"
        f" {where} AND decisions > 0 GROUP BY 1, 2, 3"
        " ORDER BY 2 NULLS FIRST, 1 NULLS FIRST, 3"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        raw = cursor.fetchall()
    totals: dict[tuple, int] = defaultdict(int)
    for grp, t, _, n in raw:
        totals[(grp, t)] += int(n)
    rows = [
        {
            "group": grp,
            "time": _iso(t),
            "route": route or "(none)",
            "count": int(n),
            "n": totals[(grp, t)],
            "share": int(n) / totals[(grp, t)],
        }
        for grp, t, route, n in raw
    ]
    return _result("route-share", filters, group_by, interval, rows)


def latency(
    filters: Filters, group_by: str | None = None, interval: str | None = None
) -> MetricResult:
    """Decision latency p50/p90/p99 in ms per micro model and route (or per group)."""
    extra = "" if group_by else "micro_model, model, route"
    hists = _histograms(filters, group_by, "latency_hist", extra)
    rows = []
    for key, hist in sorted(hists.items(), key=lambda item: tuple(str(k) for k in item[0])):
        row: dict[str, Any] = (
            {"group": key[0]}
            if group_by
            else {"micro_model": key[0], "model": key[1], "route": key[2] or "(none)"}
        )
        row.update(
            n=sum(hist),
            p50_ms=percentile(hist, 0.5, LATENCY_BASE_MS),
            p90_ms=percentile(hist, 0.9, LATENCY_BASE_MS),
            p99_ms=percentile(hist, 0.99, LATENCY_BASE_MS),
        )
        rows.append(row)
    if interval:
        rows = _latency_series(filters, group_by, interval) or rows
    return _result(
        "latency",
        filters,
        group_by,
        interval,
        rows,
        [_resolution_note()],
    )


def _latency_series(filters: Filters, group_by: str | None, interval: str) -> list[dict]:
    where, params, group_sql = _where(filters, group_by, interval)
    sql = (
        f"SELECT {group_sql or 'NULL::text'}, {_time_sql(interval)}, latency_hist"
        f" {where} AND decisions > 0"
    )
    totals: dict[tuple, list[int]] = {}
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for grp, t, hist in cursor.fetchall():
            if (grp, t) not in totals:
                totals[(grp, t)] = list(hist)
            else:
                add_into(totals[(grp, t)], hist)
    return [
        {
            "group": grp,
            "time": _iso(t),
            "n": sum(hist),
            "p50_ms": percentile(hist, 0.5, LATENCY_BASE_MS),
            "p90_ms": percentile(hist, 0.9, LATENCY_BASE_MS),
            "p99_ms": percentile(hist, 0.99, LATENCY_BASE_MS),
        }
        for (grp, t), hist in sorted(totals.items(), key=lambda i: (i[0][1], str(i[0][0])))
    ]


def _resolution_note() -> str:
    return (
        f"percentiles are read from log buckets: within a factor {RESOLUTION_FACTOR:.4f} "
        f"(±{(RESOLUTION_FACTOR - 1) * 100:.1f} %) of the exact value"
    )


PER_TRACES = 1000  # cost is shown per 1,000 traces: a micro model's trace costs micro-dollars


def cost_per_trace(
    filters: Filters, group_by: str | None = None, interval: str | None = None
) -> MetricResult:
    """Cost per trace in USD (mean, p50, p90, and the same per 1,000 traces) over the
    traces whose every model is priced, tokens per trace over all traces; traces with an
    unpriced model are counted apart (``uncosted_traces``) and the models named per row
    (``unpriced_models``)."""
    sums = _sums(
        filters,
        group_by,
        interval,
        ["traces", "costed_traces", "cost_sum", "prompt_tokens", "completion_tokens"],
    )
    hists = _histograms(filters, group_by, "cost_hist") if interval is None else {}
    unpriced = unpriced_by_group(filters, group_by)
    rows = []
    for r in sums:
        traces, costed = int(r["traces"] or 0), int(r["costed_traces"] or 0)
        hist = hists.get((r["group"],), [0] * COST_BINS)
        mean = r["cost_sum"] / costed if costed else None
        p50 = percentile(hist, 0.5, COST_BASE_USD) if interval is None else None
        p90 = percentile(hist, 0.9, COST_BASE_USD) if interval is None else None
        rows.append(
            {
                "group": r["group"],
                "time": _iso(r["time"]),
                "n": costed,
                "traces": traces,
                "uncosted_traces": traces - costed,
                "unpriced_models": unpriced.get(r["group"], []) if traces > costed else [],
                "mean_usd": mean,
                "p50_usd": p50,
                "p90_usd": p90,
                "mean_usd_per_1000_traces": _per_traces(mean),
                "p50_usd_per_1000_traces": _per_traces(p50),
                "p90_usd_per_1000_traces": _per_traces(p90),
                "prompt_tokens_per_trace": int(r["prompt_tokens"] or 0) / traces
                if traces
                else None,
                "completion_tokens_per_trace": int(r["completion_tokens"] or 0) / traces
                if traces
                else None,
            }
        )
    notes = [_resolution_note()]
    names = sorted({m for models in unpriced.values() for m in models})
    if names:
        notes.append(
            f"no price for: {', '.join(names)} (add them under Admin → Model prices;"
            " traces using them count apart, with the cost of their priced spans)"
        )
    if PriceChange.objects.exists():
        notes.append(
            "a model price changed: costs and the unpriced models are being updated"
            " (within a minute)"
        )
    return _result("cost-per-trace", filters, group_by, interval, rows, notes)


def _per_traces(usd: float | None) -> float | None:
    return None if usd is None else usd * PER_TRACES


def unpriced_models(filters: Filters) -> list[str]:
    """Models that left traces in range without a price, as far as prices are known now."""
    return sorted({m for models in unpriced_by_group(filters, None).values() for m in models})


def unpriced_by_group(filters: Filters, group_by: str | None) -> dict[Any, list[str]]:
    """Per group, the models that left traces in range partly priced. A model priced now
    from the range's first day on is left out even before the next fold re-prices its
    traces: the note never names a model that has a price for the whole range."""
    where, params, group_sql = _where(filters, group_by, None)
    sql = (
        f"SELECT DISTINCT {group_sql or 'NULL::text'}, unnest(unpriced_models)"
        f" {where} AND costed_traces < traces ORDER BY 1, 2 LIMIT 1000"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    if not rows:
        return {}
    prices = PriceBook.load()
    first_day = filters.start.astimezone(UTC).date()
    out: dict[Any, list[str]] = defaultdict(list)
    for group, model in rows:
        if prices.price(model, first_day) is None:
            out[group].append(model)
    return dict(out)


@shared_read
def _label_rows(filters: Filters, group_by: str | None) -> list[tuple]:
    where, params, group_sql = _where(filters, group_by, None, "dashboard_labelrollup")
    sql = (
        f"SELECT {group_sql or 'NULL::text'}, label, expected_label, sum(n),"
        " array_agg(confidence_hist)"
        f" {where} GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def f1_interval(tp: int, fp: int, fn: int) -> tuple[float, float] | None:
    """95 % interval of F1 = 2tp / (2tp + fp + fn). F1 = 2J / (1 + J), J = tp / (tp + fp
    + fn) (the Jaccard index), and J is a binomial proportion over the tp + fp + fn
    decisions that predicted or should have predicted the label: its Wilson interval,
    mapped through the increasing 2J / (1 + J), is F1's (docs/metrics.md)."""
    bounds = wilson_interval(tp, tp + fp + fn)
    if bounds is None:
        return None
    low, high = bounds
    return 2 * low / (1 + low), 2 * high / (1 + high)


def _label_intervals(tp: int, predicted: int, actual: int, has_f1: bool) -> dict[str, Any]:
    """Wilson intervals of precision (over ``predicted``) and recall (over ``actual``), the
    F1 interval, and the n each is over."""
    precision = wilson_interval(tp, predicted)
    recall = wilson_interval(tp, actual)
    f1 = f1_interval(tp, predicted - tp, actual - tp) if has_f1 else None
    return {
        "precision_n": predicted,
        "precision_low": precision[0] if precision else None,
        "precision_high": precision[1] if precision else None,
        "recall_n": actual,
        "recall_low": recall[0] if recall else None,
        "recall_high": recall[1] if recall else None,
        "f1_n": predicted + actual - tp,
        "f1_low": f1[0] if f1 else None,
        "f1_high": f1[1] if f1 else None,
    }


def label_quality(
    filters: Filters, group_by: str | None = None, interval: str | None = None
) -> MetricResult:
    """Per label precision, recall and F1, each with its 95 % interval and n (Wilson for
    precision and recall, F1's through the Jaccard index: ``f1_interval``), and the
    confusion matrix (rows: expected label, columns: predicted), over decisions with a
    known expected label; per group (micro model, route, model or a cohort key's value)."""
    if interval is not None:
        raise InvalidQuery("label-quality is not a time series: leave out interval")
    by_group: dict[Any, dict[tuple[str, str], int]] = defaultdict(dict)
    unlabelled: dict[Any, int] = defaultdict(int)
    for grp, label, expected, n, _ in _label_rows(filters, group_by):
        if expected == "":
            unlabelled[grp] += int(n)
        else:
            by_group[grp][(label, expected)] = int(n)
    rows = []
    for grp in sorted(set(by_group) | set(unlabelled), key=str):
        cells = by_group.get(grp, {})
        labels = sorted({label for label, _ in cells} | {expected for _, expected in cells})
        matrix = [[cells.get((p, e), 0) for p in labels] for e in labels]
        per_label = []
        for i, label in enumerate(labels):
            tp = matrix[i][i]
            predicted = sum(matrix[e][i] for e in range(len(labels)))
            actual = sum(matrix[i])
            precision = tp / predicted if predicted else None
            recall = tp / actual if actual else None
            f1 = (
                2 * precision * recall / (precision + recall)
                if precision and recall
                else (0.0 if precision is not None and recall is not None else None)
            )
            per_label.append(
                {
                    "label": label,
                    "n": actual,
                    "predicted": predicted,
                    "true_positives": tp,
                    "precision": precision,
                    "recall": recall,
                    "f1": f1,
                    **_label_intervals(tp, predicted, actual, f1 is not None),
                }
            )
        total = sum(sum(row) for row in matrix)
        correct = sum(matrix[i][i] for i in range(len(labels)))
        rows.append(
            {
                "group": grp,
                "n": total,
                "accuracy": correct / total if total else None,
                "without_expected_label": unlabelled.get(grp, 0),
                "labels": per_label,
                "confusion": {"labels": labels, "matrix": matrix},
            }
        )
    return _result("label-quality", filters, group_by, None, rows)


def confidence_histogram(filters: Filters) -> dict[str, list[int]]:
    """Decisions per confidence bin (0..1 in CONFIDENCE_BINS steps), split by whether the
    label matched the expected label (pass / fail) or no expected label is known."""
    out = {"pass": [0] * CONFIDENCE_BINS, "fail": [0] * CONFIDENCE_BINS}
    out["unknown"] = [0] * CONFIDENCE_BINS
    for _, label, expected, _, hists in _label_rows(filters, None):
        key = "unknown" if expected == "" else ("pass" if label == expected else "fail")
        for hist in hists:
            add_into(out[key], hist)
    return out


def _evaluation_counts(filters: Filters, group_by: str | None) -> dict[tuple[str, Any], list]:
    """(evaluator, group) -> [failed, evaluated, Σw·failed, Σw, Σw²·failed, Σw²] (w = 1 /
    sampling probability): whole hours from the evaluation rollup, partial hours from the
    results (see evaluations.py)."""
    return rollup_counts(filters, group_by)


def eval_fail_rate(
    filters: Filters, group_by: str | None = None, interval: str | None = None
) -> MetricResult:
    """Failed / evaluated per evaluator x group (micro_model or a cohort key). The headline
    ``rate`` is the sampling-weighted one (weighting.py): each verdict weighs 1 / its
    sampling probability, with the interval of that ratio estimator (``low``, ``high``),
    the raw n and the Kish ``effective_n``; ``raw_rate`` (with its Wilson interval) is the
    plain share of the verdicts run. Evaluations that do not apply are left out. The
    window's whole hours are read from the evaluation rollup, the partial hours at its ends
    counted from the results."""
    if interval is not None:
        raise InvalidQuery("eval-fail-rate is not a time series: leave out interval")
    if group_by not in (None, "micro_model") and group_by not in {
        key for key, _ in cohort_dimensions()
    }:
        raise InvalidQuery("group eval-fail-rate by micro_model or a cohort dimension")
    if filters.route is not None or filters.model is not None:
        raise InvalidQuery("eval-fail-rate is filtered by micro model and cohort, not route")
    counts = _evaluation_counts(filters, group_by)
    pending = pending_counts(
        list(filters.project_ids),
        start=filters.start,
        end=filters.end,
        micro_model=filters.micro_model,
        group_by=group_by,
        cohort=filters.cohort,
    )
    for key in pending:
        counts.setdefault(key, [0, 0, 0.0, 0.0, 0.0, 0.0])
    rows = []
    for (evaluator, grp), (failed, evaluated, *sums) in sorted(
        counts.items(), key=lambda item: (item[0][0], str(item[0][1]))
    ):
        raw = wilson_interval(failed, evaluated)
        weighted = weighted_rate(failed, evaluated, *sums)
        rows.append(
            {
                "evaluator": evaluator,
                "group": grp,
                "n": evaluated,
                # What the rate is over, and what is scheduled in the window but not run
                # yet: a rate over 10 evaluations with 90 pending is not yet the window's.
                "evaluated": evaluated,
                "pending": pending.get((evaluator, grp), 0),
                "failed": failed,
                # Reweighted by 1 / sampling probability: a cohort sampled at 5 % and
                # always-evaluated traces (fallbacks, errors) count for what they are in
                # the whole traffic.
                "rate": weighted.rate,
                "low": weighted.low,
                "high": weighted.high,
                "effective_n": round(weighted.effective_n, 2),
                "weighted_rate": weighted.rate,
                "raw_rate": failed / evaluated if evaluated else None,
                "raw_low": raw[0] if raw else None,
                "raw_high": raw[1] if raw else None,
                "small_n": weighted.effective_n < SMALL_N,
            }
        )
    notes = [] if rows else ["no evaluations yet"]
    return _result("eval-fail-rate", filters, group_by, None, rows, notes)


METRICS: dict[str, Callable[..., MetricResult]] = {
    "route-share": route_share,
    "fallback-rate": fallback_rate,
    "retry-rate": retry_rate,
    "cache-hit-rate": cache_hit_rate,
    "error-rate": error_rate,
    "latency": latency,
    "cost-per-trace": cost_per_trace,
    "eval-fail-rate": eval_fail_rate,
    "label-quality": label_quality,
}


def compute(
    name: str, filters: Filters, group_by: str | None = None, interval: str | None = None
) -> MetricResult:
    if name not in METRICS:
        raise InvalidQuery(f"unknown metric {name!r}: one of {sorted(METRICS)}")
    if interval is not None and interval not in INTERVALS:
        raise InvalidQuery(f"interval must be one of {list(INTERVALS)}")
    if filters.end <= filters.start:
        raise InvalidQuery("end must be after start")
    return METRICS[name](filters, group_by, interval)


__all__ = [
    "CONFIDENCE_BINS",
    "LATENCY_BINS",
    "METRICS",
    "SMALL_N",
    "DecisionKey",
    "Filters",
    "InvalidQuery",
    "MetricResult",
    "ceil_hour",
    "compute",
    "find_decisions",
    "floor_hour",
    "partial_hours_once",
    "wilson_interval",
]


# -- the micro models seen in a range ----------------------------------------------------


def micro_models(filters: Filters, name: str | None = None) -> list[dict[str, Any]]:
    """The micro models seen in range (or one of them): decisions, fallbacks, the routes
    and model versions they used, and the last hour they were seen in."""
    where, params, _ = _where(filters.with_(micro_model=name), None, None, histograms=False)
    sql = (
        "SELECT micro_model, sum(decisions), sum(fallbacks), sum(errors),"
        " array_agg(DISTINCT route), array_agg(DISTINCT model), max(bucket)"
        f" {where} AND decisions > 0 AND micro_model <> ''"
        " GROUP BY micro_model ORDER BY micro_model"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return [
        {
            "name": mm,
            "n": int(n),
            "fallbacks": int(fallbacks),
            "fallback_rate": int(fallbacks) / int(n),
            "errors": int(errors),
            "routes": sorted(r for r in routes if r),
            "models": sorted(m for m in models if m),
            "last_seen_bucket": last.isoformat(),
        }
        for mm, n, fallbacks, errors, routes, models, last in rows
    ]
