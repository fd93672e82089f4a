"""Windows that do not fall on whole UTC hours, read exactly.

A window ``[start, end)`` is its whole hours ``[ceil_hour(start), floor_hour(end))``,
read from the hour and day rollups, plus at most two partial hours at its ends (one, when
the window lies inside a single hour). A partial hour is summed in the database from the
``DecisionFact`` rows whose trace started inside it (through the ``(project, hour)``
index) into rows shaped like the rollup rows, of width ``'e'``, that every metric query
reads together with the rollup rows: a metric has one definition whatever the window.

The sums are those ``refresh.count_fact_hours`` makes of an hour's facts (a decision counts
in decisions, fallbacks, retries, cache hits, errors and the latency histogram; a
trace's primary row in traces, trace errors, cost, tokens and the cost histogram; an
escalated decision with a label, an expected label and the fallback's label in one paired
sum; the label rows count decisions per label and expected label with a confidence histogram),
with the same bins (``histograms.lower_bounds`` via ``width_bucket``);
``tests/dashboard/test_metric_windows.py`` checks that over a whole hour they equal the
stored hour rows.

A 5-minute window ending 10:53 reads the facts of 10:48 to 10:53 and no rollup row; a
24-hour window ending 10:53 reads 10:53 to 11:00 a day earlier and 10:00 to 10:53 from
the facts, and the 23 hours between from the rollups.

A page runs a dozen metric queries over one window. Inside ``partial_hours_once()`` the
partial-hour rows of each (table, projects, window, cohort key) are summed once into a
temporary table (dropped at the block's commit) that the block's queries read, filtered
like rollup rows; outside it, each query sums them itself. The edges' facts are copied
once into a temporary table too, so those sums do not each find them through the index.

In the same block a read marked ``shared_read`` runs once per argument list: sections
of one page that ask the same question (the label rows behind label quality, the
confidence histogram and the threshold optimiser; fallback economics for the page's
section and for routing advice; the configured cohort dimensions) share the answer,
which its callers only read.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any, ParamSpec, TypeVar

from django.db import connection, transaction

from .fold import ceil_hour, floor_hour
from .histograms import (
    CONFIDENCE_BINS,
    COST_BASE_USD,
    COST_BINS,
    LATENCY_BASE_MS,
    LATENCY_BINS,
    lower_bounds,
)

EDGE_WIDTH = "e"
COLUMN_FILTERS = ("micro_model", "route", "model")


def whole_hours(start: datetime, end: datetime) -> tuple[datetime, datetime] | None:
    """The whole UTC hours inside ``[start, end)``, or None when there are none."""
    first, last = ceil_hour(start), floor_hour(end)
    return (first, last) if first < last else None


def partial_hours(start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """The parts of ``[start, end)`` outside its whole hours, each inside one hour."""
    first, last = ceil_hour(start), floor_hour(end)
    if first > last:  # start and end inside the same hour
        return [(start, end)] if start < end else []
    edges = []
    if start < first:
        edges.append((start, first))
    if last < end:
        edges.append((last, end))
    return edges


def _histogram(bins: str, size: int) -> str:
    """A dense ``size``-long count array from an array of bin numbers."""
    return (
        f"(SELECT array_agg(coalesce(c.n, 0) ORDER BY i) FROM generate_series(0, {size - 1}) i"  # noqa: S608 (constant SQL; values are parameters)
        f" LEFT JOIN (SELECT b, count(*)::int AS n FROM unnest({bins}) b GROUP BY b) c"
        " ON c.b = i)"
    )


def _edge_conditions(
    project_ids: list[int], edges: list[tuple[datetime, datetime]]
) -> tuple[str, list[Any]]:
    """The facts of ``edges``: through the (project, hour) index."""
    spans = " OR ".join("(hour = %s AND start_time >= %s AND start_time < %s)" for _ in edges)
    params: list[Any] = [list(project_ids)]
    for edge_start, edge_end in edges:
        params += [floor_hour(edge_start), edge_start, edge_end]
    return f"project_id = ANY(%s::bigint[]) AND ({spans})", params


def _facts(
    project_ids: list[int],
    edges: list[tuple[datetime, datetime]],
    dim_key: str,
    columns: dict[str, str],
    facts_table: str = "dashboard_decisionfact",
) -> tuple[str, list[Any]]:
    """FROM/WHERE over the facts of ``edges`` (in ``facts_table``: the facts, or a
    temporary copy of the edges' facts), with ``dim_key``'s value (or '' for the
    all-cohorts rows) as ``dim_value``; facts without that cohort key are left out."""
    where, where_params = _edge_conditions(project_ids, edges)
    conditions = "".join(f" AND {column} = %s" for column in columns)
    params: list[Any] = [dim_key, dim_key, dim_key, *where_params, *columns.values()]
    sql = (
        " FROM (SELECT f.*, %s::text AS dim_key,"  # noqa: S608 (constant SQL; values are parameters)
        " CASE WHEN %s = '' THEN '' ELSE f.cohort ->> %s END AS dim_value"
        f" FROM {facts_table} f"
        f" WHERE {where}{conditions}) AS f"
        " WHERE dim_value IS NOT NULL"
    )
    return sql, params


_RESCUE = (
    "(count(*) FILTER (WHERE rescue_cost IS NOT NULL))::int AS rescue_costed,"
    " coalesce(sum(rescue_cost), 0)::float8 AS rescue_cost_sum,"
    " coalesce(sum(rescue_cost * rescue_cost), 0)::float8 AS rescue_cost_sq_sum"
)
# Escalated decisions paired with the fallback's label (refresh._add_fact).
_PAIRED_FACT = "is_decision AND fallback_label <> '' AND label <> '' AND expected_label <> ''"
_PAIRED = ", ".join(
    f"(count(*) FILTER (WHERE {_PAIRED_FACT} AND ({micro}) AND ({fallback})))::int AS {name}"
    for name, micro, fallback in (
        ("paired_both_right", "label = expected_label", "fallback_label = expected_label"),
        ("paired_micro_right", "label = expected_label", "fallback_label <> expected_label"),
        ("paired_fallback_right", "label <> expected_label", "fallback_label = expected_label"),
        ("paired_neither_right", "label <> expected_label", "fallback_label <> expected_label"),
    )
)


def _rollup_rows(facts: str, histograms: bool) -> str:
    latency = lower_bounds(LATENCY_BASE_MS, LATENCY_BINS)
    cost = lower_bounds(COST_BASE_USD, COST_BINS)
    primary = "is_primary"
    # Fully priced traces (refresh._add_fact): a partly priced one lists what it lacks.
    priced = "is_primary AND cost IS NOT NULL AND cardinality(unpriced_models) = 0"
    if not histograms:
        # The histograms and unpriced models are most of the work; sums-only queries
        # (rates, shares, the micro model list) leave them out.
        return (
            f"SELECT '{EDGE_WIDTH}'::text AS width, hour AS bucket, project_id, micro_model,"
            " model, route, dim_key, dim_value,"
            " (count(*) FILTER (WHERE is_decision))::int AS decisions,"
            " (count(*) FILTER (WHERE is_decision AND is_fallback))::int AS fallbacks,"
            " (count(*) FILTER (WHERE is_decision AND is_retry))::int AS retries,"
            " (count(*) FILTER (WHERE is_decision AND cache_hit))::int AS cache_hits,"
            " (count(*) FILTER (WHERE is_decision AND is_error))::int AS errors,"
            f" (count(*) FILTER (WHERE {primary}))::int AS traces,"
            f" (count(*) FILTER (WHERE {primary} AND trace_error))::int AS trace_errors,"
            f" (count(*) FILTER (WHERE {priced}))::int AS costed_traces,"
            f" coalesce(sum(cost) FILTER (WHERE {priced}), 0)::float8 AS cost_sum,"
            f" coalesce(sum(prompt_tokens) FILTER (WHERE {primary}), 0)::bigint"
            " AS prompt_tokens,"
            f" coalesce(sum(completion_tokens) FILTER (WHERE {primary}), 0)::bigint"
            " AS completion_tokens,"
            " NULL::integer[] AS latency_hist, NULL::integer[] AS cost_hist,"
            " NULL::text[] AS unpriced_models,"
            f" {_RESCUE}, {_PAIRED}"
            f"{facts} GROUP BY 2, 3, 4, 5, 6, 7, 8"
        )
    return (
        f"SELECT '{EDGE_WIDTH}'::text AS width, g.bucket, g.project_id, g.micro_model,"  # noqa: S608 (constant SQL; values are parameters)
        " g.model, g.route, g.dim_key, g.dim_value, g.decisions, g.fallbacks, g.retries,"
        " g.cache_hits, g.errors, g.traces, g.trace_errors, g.costed_traces, g.cost_sum,"
        " g.prompt_tokens, g.completion_tokens,"
        f" {_histogram('g.latency_bins', LATENCY_BINS)} AS latency_hist,"
        f" {_histogram('g.cost_bins', COST_BINS)} AS cost_hist,"
        " ARRAY(SELECT DISTINCT m FROM jsonb_array_elements(coalesce(g.unpriced, '[]')) a,"
        " jsonb_array_elements_text(a) m) AS unpriced_models, g.rescue_costed,"
        " g.rescue_cost_sum, g.rescue_cost_sq_sum, g.paired_both_right, g.paired_micro_right,"
        " g.paired_fallback_right, g.paired_neither_right"
        " FROM (SELECT hour AS bucket, project_id, micro_model, model, route, dim_key,"
        " dim_value,"
        " (count(*) FILTER (WHERE is_decision))::int AS decisions,"
        " (count(*) FILTER (WHERE is_decision AND is_fallback))::int AS fallbacks,"
        " (count(*) FILTER (WHERE is_decision AND is_retry))::int AS retries,"
        " (count(*) FILTER (WHERE is_decision AND cache_hit))::int AS cache_hits,"
        " (count(*) FILTER (WHERE is_decision AND is_error))::int AS errors,"
        f" (count(*) FILTER (WHERE {primary}))::int AS traces,"
        f" (count(*) FILTER (WHERE {primary} AND trace_error))::int AS trace_errors,"
        f" (count(*) FILTER (WHERE {priced}))::int AS costed_traces,"
        f" coalesce(sum(cost) FILTER (WHERE {priced}), 0)::float8 AS cost_sum,"
        f" coalesce(sum(prompt_tokens) FILTER (WHERE {primary}), 0)::bigint AS prompt_tokens,"
        f" coalesce(sum(completion_tokens) FILTER (WHERE {primary}), 0)::bigint"
        " AS completion_tokens,"
        f" array_agg(width_bucket(latency_ms, '{_array(latency)}'::float8[]))"
        " FILTER (WHERE is_decision) AS latency_bins,"
        f" array_agg(width_bucket(cost, '{_array(cost)}'::float8[]))"
        f" FILTER (WHERE {priced}) AS cost_bins,"
        f" jsonb_agg(to_jsonb(unpriced_models)) FILTER (WHERE {primary} AND NOT ({priced}))"
        f" AS unpriced, {_RESCUE}, {_PAIRED}"
        f"{facts} GROUP BY 1, 2, 3, 4, 5, 6, 7) AS g"
    )


def _label_rows(facts: str) -> str:
    confidence = (
        f"least(greatest(floor(confidence * {CONFIDENCE_BINS})::int, 0), {CONFIDENCE_BINS - 1})"
    )
    return (
        f"SELECT '{EDGE_WIDTH}'::text AS width, g.bucket, g.project_id, g.micro_model,"  # noqa: S608 (constant SQL; values are parameters)
        " g.model, g.route, g.label, g.expected_label, g.dim_key, g.dim_value, g.n,"
        f" {_histogram('g.confidence_bins', CONFIDENCE_BINS)} AS confidence_hist"
        " FROM (SELECT hour AS bucket, project_id, micro_model, model, route, label,"
        " expected_label, dim_key, dim_value, count(*)::int AS n,"
        f" array_agg({confidence}) FILTER (WHERE confidence IS NOT NULL) AS confidence_bins"
        f"{facts} AND is_decision GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9) AS g"
    )


def _array(values: tuple[float, ...]) -> str:
    # repr() is the shortest string that reads back as the same double.
    return "{" + ",".join(repr(v) for v in values) + "}"


_COLUMNS = {
    "dashboard_rollup": (
        "width, bucket, project_id, micro_model, model, route, dim_key, dim_value, decisions,"
        " fallbacks, retries, cache_hits, errors, traces, trace_errors, costed_traces,"
        " cost_sum, prompt_tokens, completion_tokens, latency_hist, cost_hist, unpriced_models,"
        " rescue_costed, rescue_cost_sum, rescue_cost_sq_sum, paired_both_right,"
        " paired_micro_right, paired_fallback_right, paired_neither_right"
    ),
    "dashboard_labelrollup": (
        "width, bucket, project_id, micro_model, model, route, label, expected_label, dim_key,"
        " dim_value, n, confidence_hist"
    ),
}


def partial_hour_rows(
    table: str,
    project_ids: list[int],
    edges: list[tuple[datetime, datetime]],
    dim_key: str,
    columns: dict[str, str],
    *,
    histograms: bool = True,
    facts_table: str = "dashboard_decisionfact",
) -> tuple[str, list[Any]]:
    """A SELECT of ``table``-shaped rows (width 'e') summing the facts in ``edges``, for
    the all-cohorts rows (``dim_key`` '') or ``dim_key``'s values; ``columns`` narrows the
    facts by micro_model / route / model, which the rows carry unchanged. Without
    ``histograms`` the rollup rows' histograms and unpriced models are NULL."""
    facts, params = _facts(project_ids, edges, dim_key, columns, facts_table)
    if table == "dashboard_rollup":
        return _rollup_rows(facts, histograms), params
    return _label_rows(facts), params


# (table, project ids, edges, dim key) -> the temporary table holding those rows.
_SHARED: ContextVar[dict[tuple[Any, ...], str] | None] = ContextVar(
    "microlens_shared_partial_hours", default=None
)


# (read, arguments) -> its answer, inside partial_hours_once().
_READS: ContextVar[dict[tuple[Any, ...], Any] | None] = ContextVar(
    "microlens_shared_reads", default=None
)
_P = ParamSpec("_P")
_R = TypeVar("_R")


@contextmanager
def partial_hours_once() -> Iterator[None]:
    """Let the metric queries in this block share their partial hours' rows and the
    answers of ``shared_read`` reads (one page, one API answer). One transaction: the
    temporary tables go at its commit, and every read sees the same snapshot of data."""
    token = _SHARED.set({})
    reads = _READS.set({})
    try:
        with transaction.atomic():
            yield
    finally:
        _READS.reset(reads)
        _SHARED.reset(token)


def shared_read(read: Callable[_P, _R]) -> Callable[_P, _R]:
    """``read`` answered once per argument list inside ``partial_hours_once()`` (its
    callers must not change the answer); outside it, every call reads."""

    @functools.wraps(read)
    def shared(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        answers = _READS.get()
        if answers is None:
            return read(*args, **kwargs)
        key = (read.__module__, read.__qualname__, args, tuple(sorted(kwargs.items())))
        if key not in answers:
            answers[key] = read(*args, **kwargs)
        answers_for_key: _R = answers[key]
        return answers_for_key

    return shared


def _shared_rows(
    table: str,
    project_ids: list[int],
    edges: list[tuple[datetime, datetime]],
    dim_key: str,
    shared: dict[tuple[Any, ...], str],
    micro_model: str | None,
) -> str:
    """The name of a temporary table with every partial-hour row of ``dim_key`` (all
    routes and models of ``micro_model``, or of every micro model, with histograms),
    summed on first use from the edges' facts, themselves copied once (a page sums them
    for both rollup tables and every cohort key: each sum would otherwise find them again
    through the index)."""
    key = (table, tuple(project_ids), tuple(edges), dim_key, micro_model)
    name = shared.get(key)
    if name is None:
        facts = _shared_facts(project_ids, edges, shared)
        columns = {} if micro_model is None else {"micro_model": micro_model}
        rows, params = partial_hour_rows(
            table, project_ids, edges, dim_key, columns, histograms=True, facts_table=facts
        )
        name = f"microlens_partial_{uuid.uuid4().hex}"
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE TEMPORARY TABLE {name} ON COMMIT DROP AS {rows}", params)
        shared[key] = name
    return name


def _shared_facts(
    project_ids: list[int],
    edges: list[tuple[datetime, datetime]],
    shared: dict[tuple[Any, ...], str],
) -> str:
    """The name of a temporary table holding the facts of ``edges``, copied on first use."""
    key = ("facts", tuple(project_ids), tuple(edges))
    name = shared.get(key)
    if name is None:
        where, params = _edge_conditions(project_ids, edges)
        name = f"microlens_edge_facts_{uuid.uuid4().hex}"
        with connection.cursor() as cursor:
            cursor.execute(
                f"CREATE TEMPORARY TABLE {name} ON COMMIT DROP AS"  # noqa: S608 (a generated table name)
                f" SELECT * FROM dashboard_decisionfact WHERE {where}",
                params,
            )
        shared[key] = name
    return name


def source(
    table: str,
    project_ids: list[int],
    edges: list[tuple[datetime, datetime]],
    dim_key: str,
    columns: dict[str, str],
    *,
    histograms: bool = True,
    buckets: tuple[str, list[Any]] = ("TRUE", []),
) -> tuple[str, list[Any]]:
    """``table``, or when the window has partial hours the union of its rows in
    ``buckets`` (a condition on width and bucket: the whole hours) and theirs, as a FROM
    item the metric queries read like the table itself. The bucket condition goes inside
    the table's branch, next to the project and cohort key, so the table's index serves
    all three; outside the union, an OR with the partial hours' rows would make
    PostgreSQL read every bucket of the project and filter afterwards."""
    if not edges:
        return table, []
    shared = _SHARED.get()
    if shared is not None:
        # Narrowed by the micro model only (the queries of a micro model's page all name
        # it): the metric query's own WHERE filters these rows by micro model, route and
        # model as it filters the rollup's.
        micro_model = columns.get("micro_model")
        summed = _shared_rows(table, project_ids, edges, dim_key, shared, micro_model)
        rows = f"SELECT {_COLUMNS[table]} FROM {summed}"  # noqa: S608 (a generated table name)
        params: list[Any] = []
    else:
        rows, params = partial_hour_rows(
            table, project_ids, edges, dim_key, columns, histograms=histograms
        )
    names = _COLUMNS[table]
    bucket_sql, bucket_params = buckets
    union = (
        f"(SELECT {names} FROM {table} WHERE project_id = ANY(%s::bigint[])"  # noqa: S608 (constant SQL; values are parameters)
        f" AND dim_key = %s AND {bucket_sql} UNION ALL {rows}) AS {table}"
    )
    return union, [list(project_ids), dim_key, *bucket_params, *params]
