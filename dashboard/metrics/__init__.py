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
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection

from evaluators.queries import pending_counts
from tracestore.queries import cohort_dimensions

from ..models import PriceChange
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
from .weighting import WILSON_Z, weighted_rate
from .windows import partial_hours, partial_hours_once, source, whole_hours

COLUMN_GROUPS = ("micro_model", "route", "model")
INTERVALS = ("hour", "day")
# Below this many samples a rate is shown but marked as small-n.
SMALL_N = 30


class InvalidQuery(ValueError):
    """A metric query the rollups cannot answer (the message says why)."""


@dataclass(frozen=True, slots=True)
class Filters:
    project_ids: tuple[int, ...]
    start: datetime
    end: datetime
    micro_model: str | None = None
    route: str | None = None
    model: str | None = None
    cohort: tuple[str, str] | None = None

    def with_(self, **changes: Any) -> Filters:
        return replace(self, **changes)


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


def group_choices() -> list[str]:
    return [*COLUMN_GROUPS, *(key for key, _ in cohort_dimensions())]


from .fold import ceil_hour, floor_hour  # noqa: E402, F401 (re-exported)


def _ceil_day(at: datetime) -> datetime:
    day = at.replace(hour=0)
    return day if day == at else day + timedelta(days=1)


# -- reading the rollups -----------------------------------------------------------------

_SUMS = {
    "decisions": "sum(decisions)",
    "fallbacks": "sum(fallbacks)",
    "retries": "sum(retries)",
    "cache_hits": "sum(cache_hits)",
    "errors": "sum(errors)",
    "traces": "sum(traces)",
    "trace_errors": "sum(trace_errors)",
    "costed_traces": "sum(costed_traces)",
    "cost_sum": "sum(cost_sum)",
    "prompt_tokens": "sum(prompt_tokens)",
    "completion_tokens": "sum(completion_tokens)",
}


def _bucket_condition(start: datetime, end: datetime, interval: str | None) -> tuple[str, list]:
    """Whole UTC days inside the range come from day rows, the ragged hours at either end
    from hour rows (an hourly series reads hour rows only)."""
    if interval == "hour":
        return "(width = 'h' AND bucket >= %s AND bucket < %s)", [start, end]
    day_start, day_end = _ceil_day(start), end.replace(hour=0)
    if day_start >= day_end:
        return "(width = 'h' AND bucket >= %s AND bucket < %s)", [start, end]
    return (
        "((width = 'd' AND bucket >= %s AND bucket < %s) OR (width = 'h' AND"
        " ((bucket >= %s AND bucket < %s) OR (bucket >= %s AND bucket < %s))))",
        [day_start, day_end, start, day_start, day_end, end],
    )


def _where(
    filters: Filters,
    group_by: str | None,
    interval: str | None,
    table: str = "dashboard_rollup",
    *,
    histograms: bool = True,
) -> tuple[str, list, str | None]:
    """``FROM <table> WHERE <the filters>`` for either rollup table, and the group column
    expression. The window's whole hours are read from the table's rows, the partial
    hours at its ends (windows.py) from the facts, as rows of width 'e' (whose histograms
    and unpriced models are NULL unless ``histograms``: sums-only queries say so)."""
    if not filters.project_ids:
        return f"FROM {table} WHERE FALSE", [], None
    hours = whole_hours(filters.start, filters.end)
    bucket_sql, bucket_params = _bucket_condition(*hours, interval) if hours else ("FALSE", [])
    edges = partial_hours(filters.start, filters.end)
    conditions = ["project_id = ANY(%s::bigint[])"]
    params: list[Any] = [list(filters.project_ids)]
    if not edges:
        conditions.append(bucket_sql)
        params += bucket_params
    for column in COLUMN_GROUPS:
        value = getattr(filters, column)
        if value is not None:
            conditions.append(f"{column} = %s")
            params.append(value)
    group_sql = None
    dim_key = ""
    if filters.cohort is not None:
        dim_key = filters.cohort[0]
        conditions.append("dim_value = %s")
        params.append(filters.cohort[1])
    if group_by in COLUMN_GROUPS:
        group_sql = group_by
    elif group_by is not None:
        if dim_key and dim_key != group_by:
            raise InvalidQuery(
                "filter by one cohort dimension and group by the same one, or by micro_model,"
                " route or model (the rollups keep one cohort dimension per row)"
            )
        if group_by not in {key for key, _ in cohort_dimensions()}:
            raise InvalidQuery(f"unknown group_by {group_by!r}: one of {group_choices()}")
        dim_key = group_by
        group_sql = "dim_value"
    if filters.cohort is not None and filters.cohort[0] not in {k for k, _ in cohort_dimensions()}:
        raise InvalidQuery(f"unknown cohort dimension {filters.cohort[0]!r}")
    conditions.append("dim_key = %s")
    params.append(dim_key)
    columns = {c: getattr(filters, c) for c in COLUMN_GROUPS if getattr(filters, c) is not None}
    from_sql, from_params = source(
        table,
        list(filters.project_ids),
        edges,
        dim_key,
        columns,
        histograms=histograms,
        buckets=(bucket_sql, bucket_params),
    )
    return (
        f"FROM {from_sql} WHERE {' AND '.join(conditions)}",
        [*from_params, *params],
        group_sql,
    )


def _time_sql(interval: str | None) -> str:
    if interval is None:
        return "NULL::timestamptz"
    return f"date_trunc('{interval}', bucket AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"


def _sums(
    filters: Filters, group_by: str | None, interval: str | None, columns: list[str]
) -> list[dict[str, Any]]:
    where, params, group_sql = _where(filters, group_by, interval, histograms=False)
    select = [f"{group_sql or 'NULL::text'} AS grp", f"{_time_sql(interval)} AS t"]
    select += [f"{_SUMS[c]} AS {c}" for c in columns]
    sql = f"SELECT {', '.join(select)} {where} GROUP BY 1, 2 ORDER BY 2 NULLS FIRST, 1 NULLS FIRST"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        names = ["group", "time", *columns]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _histograms(
    filters: Filters, group_by: str | None, column: str, extra: str = ""
) -> dict[tuple, list[int]]:
    """Element-wise sums of a histogram column per group (summed here: a few hundred
    short arrays even for 30 days)."""
    where, params, group_sql = _where(filters, group_by, None)
    group_cols = extra or (group_sql or "NULL::text")
    sql = (
        f"SELECT {group_cols}, {column} {where}"
        f" AND {'decisions' if column == 'latency_hist' else 'costed_traces'} > 0"
    )
    totals: dict[tuple, list[int]] = {}
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for row in cursor.fetchall():
            key, hist = tuple(row[:-1]), row[-1]
            if key not in totals:
                totals[key] = list(hist)
            else:
                add_into(totals[key], hist)
    return totals


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
    from .evaluations import rollup_counts

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
    "Filters",
    "InvalidQuery",
    "MetricResult",
    "compute",
    "partial_hours_once",
    "wilson_interval",
]


# -- finding traces by their metric facts ---------------------------------------------------


def _fact_conditions(
    filters: Filters,
    rows: str,
    *,
    label: str | None,
    fallback: bool | None,
    error: tuple[str, bool | None],
) -> tuple[list[str], list[Any]]:
    """WHERE conditions on the decision facts (as ``f``, per project ``p``) of one kind of
    row (``is_primary``: a trace; ``is_decision``: a decision) in the filters' range."""
    conditions = ["f.project_id = p.id", rows, "start_time >= %s", "start_time < %s"]
    params: list[Any] = [filters.start, filters.end]
    for column, value in (
        ("micro_model", filters.micro_model),
        ("route", filters.route),
        ("model", filters.model),
        ("label", label),
        ("is_fallback", fallback),
        error,
    ):
        if value is not None:
            conditions.append(f"{column} = %s")
            params.append(value)
    if filters.cohort is not None:
        conditions.append("cohort ->> %s = %s")
        params += list(filters.cohort)
    return conditions, params


@dataclass(frozen=True, slots=True)
class DecisionKey:
    """Where a micro-model decision's span is: enough to read it from tracestore. Facts
    carry their trace's start (decisions count in their trace's hour), not the span's."""

    project_id: int
    trace_id: str
    span_id: str
    trace_start: datetime


def find_decisions(
    filters: Filters,
    *,
    label: str | None = None,
    fallback: bool | None = None,
    error: bool | None = None,
    trace_id: str | None = None,
    before: DecisionKey | None = None,
    limit: int = 50,
) -> list[DecisionKey]:
    """Micro-model decisions (spans) whose trace started in range, newest trace first,
    strictly after ``before`` in the order (trace start, trace id, span id, project)
    descending: keyset pages, per project down its decision index, then merged."""
    if not filters.project_ids or limit <= 0:
        return []
    conditions, params = _fact_conditions(
        filters, "is_decision", label=label, fallback=fallback, error=("is_error", error)
    )
    if trace_id is not None:
        conditions.append("trace_id = %s")
        params.append(bytes.fromhex(trace_id))
    if before is not None:
        # The plain bound lets the index scan start at the cursor; the row comparison then
        # drops the cursor's own decision and those before it at the same instant.
        conditions.append(
            "start_time <= %s AND (start_time, trace_id, span_id, p.id) < (%s, %s, %s, %s)"
        )
        params += [
            before.trace_start,
            before.trace_start,
            bytes.fromhex(before.trace_id),
            bytes.fromhex(before.span_id),
            before.project_id,
        ]
    sql = (
        "SELECT project_id, trace_id, span_id, start_time FROM"  # noqa: S608 (constant SQL; values are parameters)
        " unnest(%s::bigint[]) AS p(id) CROSS JOIN LATERAL ("
        " SELECT f.project_id, trace_id, span_id, start_time FROM dashboard_decisionfact f"
        f" WHERE {' AND '.join(conditions)}"
        " ORDER BY start_time DESC, trace_id DESC, span_id DESC LIMIT %s) AS head"
        " ORDER BY start_time DESC, trace_id DESC, span_id DESC, project_id DESC LIMIT %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [list(filters.project_ids), *params, limit, limit])
        rows = cursor.fetchall()
    return [DecisionKey(r[0], bytes(r[1]).hex(), bytes(r[2]).hex(), r[3]) for r in rows]


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
