"""The SQL builder every rollup read goes through: ``_where`` turns ``Filters`` (and a
group, an interval) into ``FROM <rollup rows of the range> WHERE ...`` over whole days,
whole hours and, for the partial hours at the ends, fact rows summed in the database
(windows.py); ``_sums`` and ``_histograms`` run the two shapes of query the metrics read.
``dashboard_rollup``, ``dashboard_labelrollup`` and ``dashboard_evalrollup`` share it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import connection

from tracestore.queries import cohort_dimensions as configured_cohort_dimensions

from .filters import COLUMN_GROUPS, Filters, InvalidQuery
from .fold import ceil_day, floor_day
from .histograms import add_into
from .windows import partial_hours, shared_read, source, whole_hours

cohort_dimensions = shared_read(configured_cohort_dimensions)  # one read a page


def group_choices() -> list[str]:
    return [*COLUMN_GROUPS, *(key for key, _ in cohort_dimensions())]


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
    day_start, day_end = ceil_day(start), floor_day(end)
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
