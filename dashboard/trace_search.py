"""The Traces page's search: one query over the decision facts (one primary row per
trace), every filter evaluated in SQL, keyset pages both ways, bounded exports and
bounded value suggestions.

A trace matches when it started in ``[start, end)`` and:

- trace filters hold on the trace itself: ``q`` (every word, as a word prefix, in the
  name, input or output of one of its spans: tracestore's full-text index), ``service``,
  ``cohort.<key>=<value>`` (each one given), ``status`` (error/ok), ``min_ms``/``max_ms``
  (its duration), ``min_cost``/``max_cost`` (its cost in USD; a trace with no known cost
  matches no cost bound);
- decision filters hold on one and the same micro-model decision of it: ``micro_model``,
  ``route``, ``model``, ``label``, ``expected_label``, ``fallback`` (1: escalated, 0: not);
- ``failed_evaluator`` (an evaluator, or ``any``): a verdict of that evaluator on one of
  its spans failed, of the ``micro_model`` when given, in the ``cohort`` values given
  (the cells of the Cohorts page's heatmap link here with it).

The window is a preset ``range``, or ``start``/``end``: those are read only with
``range=custom`` or without ``range`` (the form sends its custom fields with every range;
without JavaScript it cannot leave them out).

Pages are newest first in the order (start time, trace id, project) descending; the
cursor is an opaque token of the row a page continues from and the direction.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from django.db import connection

from evaluators.contracts import EVALUATORS
from evaluators.queries import failed_evaluation_condition
from tracestore import cursors
from tracestore.queries import (
    recent_service_names,
    span_text_check,
    span_text_condition,
    span_text_matches_at_least,
    trace_service_condition,
    trace_summaries,
)

from . import metrics
from .metric_filters import COHORT_PREFIX, RANGES, parse_metric_query

InvalidQuery = metrics.InvalidQuery

# Every parameter the page reads (cohort.<key>: any cohort.-prefixed name); links to the
# page (from other pages, other tools) use these names.
PARAMS = ("start", "end", "range", "project", "q", "service", "micro_model", "route", "model",
          "label", "expected_label", "cohort.<key>", "fallback", "status", "failed_evaluator",
          "min_ms", "max_ms", "min_cost", "max_cost", "cursor")  # fmt: skip
# The parameters that switch the page from the newest traces (of any time, as they
# arrive) to a search of the folded facts in a time range: all but the project.
SEARCH_PARAMS = tuple(p for p in PARAMS if p not in ("project", "cohort.<key>"))
CUSTOM_RANGE = "custom"
ANY_EVALUATOR = "any"
MAX_TEXT = 200
SUGGESTION_SCAN = 2_000  # newest facts (and traces) per project read for suggestions
SUGGESTION_LIMIT = 50  # values offered per field
_DECISION_FILTERS = ("micro_model", "route", "model", "label", "expected_label")
# A search text found in at least this many spans of the window is checked trace by trace
# down the newest-first walk (span_text_check); a rarer one from its matching spans.
COMMON_TEXT_SPANS = 2_000
# With such a text the traces are counted up to this many ("10000+").
TEXT_COUNT_CAP = 10_000
# The duration and cost fields offer these percentiles of the window's traces.
RANGE_PERCENTILES = (0.5, 0.9, 0.99)


@dataclass(frozen=True, slots=True)
class TraceQuery:
    project_ids: tuple[int, ...]
    start: datetime
    end: datetime
    range_name: str | None
    text: str | None = None
    service: str | None = None
    micro_model: str | None = None
    route: str | None = None
    model: str | None = None
    label: str | None = None
    expected_label: str | None = None
    cohort: tuple[tuple[str, str], ...] = ()
    fallback: bool | None = None
    error: bool | None = None
    failed_evaluator: str | None = None  # an evaluator name or ANY_EVALUATOR
    min_ms: float | None = None
    max_ms: float | None = None
    min_cost: float | None = None
    max_cost: float | None = None


@dataclass(frozen=True, slots=True)
class TraceRow:
    project_id: int
    trace_id: str
    start_time: datetime
    root_name: str | None
    service_name: str | None
    micro_model: str
    route: str
    label: str
    expected_label: str
    is_fallback: bool
    is_error: bool
    duration_ms: float
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None  # the priced part when ``unpriced_models`` is not empty
    cohort: dict[str, str]
    unpriced_models: tuple[str, ...] = ()

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class TraceResultPage:
    rows: list[TraceRow]
    next_cursor: str | None  # older traces
    previous_cursor: str | None  # newer traces


def reads_custom_window(params: Mapping[str, str]) -> bool:
    """Whether ``start``/``end`` count: with ``range=custom``, or with no ``range`` at all
    (links from other tools). With a preset, or ``range=`` empty (the newest traces), the
    custom fields the form always sends are ignored."""
    return params.get("range", CUSTOM_RANGE) == CUSTOM_RANGE


def is_search(params: Mapping[str, str]) -> bool:
    """Whether the request asks for a search (any filter but the project, which the
    newest-traces listing answers too)."""
    ignored = {"project", "cohort.<key>"}
    if not reads_custom_window(params):
        ignored |= {"start", "end"}
    return any(params.get(name) for name in SEARCH_PARAMS if name not in ignored) or any(
        name.startswith(COHORT_PREFIX) and params.get(name) for name in params
    )


def _number(params: Mapping[str, str], name: str) -> float | None:
    value = params.get(name, "").strip()
    if not value:
        return None
    try:
        number = float(value)
    except ValueError as exc:
        raise InvalidQuery(f"{name}: a number, not {value!r}") from exc
    if not math.isfinite(number) or number < 0:
        raise InvalidQuery(f"{name}: a number of 0 or more, not {value!r}")
    return number


def _choice(params: Mapping[str, str], name: str, choices: dict[str, bool]) -> bool | None:
    value = params.get(name, "")
    if value == "":
        return None
    if value not in choices:
        raise InvalidQuery(f"{name}: one of {', '.join(choices)}, not {value!r}")
    return choices[value]


def _text(params: Mapping[str, str], name: str) -> str | None:
    value = params.get(name, "").strip()
    if len(value) > MAX_TEXT:
        raise InvalidQuery(f"{name}: at most {MAX_TEXT} characters")
    return value or None


def parse_trace_query(
    params: Mapping[str, str], project_ids: list[int], now: datetime | None = None
) -> TraceQuery:
    """The page's query parameters -> a TraceQuery; InvalidQuery (a 400 that says which
    parameter and why) for a value it cannot answer, ProjectNotFound for another's project."""
    time_params = {k: params[k] for k in ("start", "end", "range", "project") if params.get(k)}
    if not reads_custom_window(params):
        time_params.pop("start", None)
        time_params.pop("end", None)
    if time_params.get("range") == CUSTOM_RANGE:
        del time_params["range"]
    base = parse_metric_query(time_params, project_ids, now)
    dimensions = {key for key, _ in metrics.cohort_dimensions()}
    cohort = []
    getlist = getattr(params, "getlist", None)
    for name in sorted(params):
        if not name.startswith(COHORT_PREFIX) or not params.get(name):
            continue
        key = name[len(COHORT_PREFIX) :]
        if key not in dimensions:
            raise InvalidQuery(
                f"{name}: {key!r} is not a cohort dimension"
                f" (one of {', '.join(sorted(dimensions))})"
            )
        if getlist is not None and len(getlist(name)) > 1:
            raise InvalidQuery(f"{name}: give one value, not several")
        cohort.append((key, params[name]))
    failed = _text(params, "failed_evaluator")
    if failed is not None and failed not in (*EVALUATORS, ANY_EVALUATOR):
        raise InvalidQuery(
            f"failed_evaluator: one of {', '.join((*EVALUATORS, ANY_EVALUATOR))}, not {failed!r}"
        )
    text = _text(params, "q")
    if text is not None and not re.search(r"\w", text):
        raise InvalidQuery("q: give at least one word to search for")
    query = TraceQuery(
        project_ids=base.filters.project_ids,
        start=base.filters.start,
        end=base.filters.end,
        range_name=base.range_name,
        text=text,
        service=_text(params, "service"),
        micro_model=_text(params, "micro_model"),
        route=_text(params, "route"),
        model=_text(params, "model"),
        label=_text(params, "label"),
        expected_label=_text(params, "expected_label"),
        cohort=tuple(cohort),
        fallback=_choice(params, "fallback", {"1": True, "0": False}),
        error=_choice(params, "status", {"error": True, "ok": False}),
        failed_evaluator=failed,
        min_ms=_number(params, "min_ms"),
        max_ms=_number(params, "max_ms"),
        min_cost=_number(params, "min_cost"),
        max_cost=_number(params, "max_cost"),
    )
    for low, high in (("min_ms", "max_ms"), ("min_cost", "max_cost")):
        low_value, high_value = getattr(query, low), getattr(query, high)
        if low_value is not None and high_value is not None and low_value > high_value:
            raise InvalidQuery(f"{low} must not be above {high}")
    return query


# -- cursors ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Key:
    start_time: datetime
    trace_id: str
    project_id: int


_CURSOR_KIND = "trace-search"
_CURSOR_SHAPE = (re.compile(r"[np]"), datetime, re.compile(r"[0-9a-f]{32}"), int)


def encode_cursor(direction: str, row: TraceRow) -> str:
    """A next-page ("n") or previous-page ("p") cursor from ``row``, by the shared codec."""
    key = (direction, row.start_time, row.trace_id, row.project_id)
    return cursors.encode_cursor(_CURSOR_KIND, key)


def decode_cursor(cursor: str) -> tuple[str, _Key]:
    try:
        direction, start, trace_id, project_id = cursors.decode_cursor(
            cursor, _CURSOR_KIND, _CURSOR_SHAPE
        )
    except cursors.InvalidCursor as exc:
        message = "cursor: not a cursor of this page; follow the page's own links"
        raise InvalidQuery(message) from exc
    # The shape has checked each value's type.
    return cast(str, direction), _Key(
        cast(datetime, start), cast(str, trace_id), cast(int, project_id)
    )


# -- the query ---------------------------------------------------------------------------------


def _decision_match(query: TraceQuery, head: str) -> tuple[str, list[Any]]:
    """``head`` (an EXISTS or a count) over the decisions of the trace of ``f`` that match
    every decision filter, one and the same decision for all (a route of that micro model,
    ...): the decisions the metrics count, found by the facts' unique key. '' when no
    decision filter is set."""
    decision = _decision_filters(query)
    if not decision:
        return "", []
    matches = " AND ".join(f"d.{column} = %s" for column, _ in decision)
    sql = (
        f"{head} FROM dashboard_decisionfact d"
        " WHERE d.project_id = f.project_id AND d.trace_id = f.trace_id AND d.is_decision"
        f" AND {matches})"
    )
    return sql, [value for _, value in decision]


def text_is_common(query: TraceQuery) -> bool:
    """Whether the query's search text is common enough to be checked trace by trace
    (``COMMON_TEXT_SPANS``): read through the text index once per request, its answer
    handed to ``search_traces`` and ``match_counts``."""
    return query.text is not None and span_text_matches_at_least(
        query.project_ids, query.text, query.start, query.end, COMMON_TEXT_SPANS
    )


def _conditions(query: TraceQuery, *, common_text: bool = False) -> tuple[list[str], list[Any]]:
    """WHERE conditions on a trace's primary fact (``f``, in project ``p``); a
    ``common_text`` is checked per trace (``span_text_check``)."""
    conditions = [
        "f.project_id = p.id",
        "f.is_primary",
        "f.start_time >= %s",
        "f.start_time < %s",
    ]
    params: list[Any] = [query.start, query.end]
    if query.cohort:
        conditions.append("f.cohort @> %s::jsonb")
        params.append(json.dumps(dict(query.cohort)))
    if query.error is not None:
        conditions.append("f.trace_error = %s")
        params.append(query.error)
    for column, value, op in (
        ("f.trace_duration_ms", query.min_ms, ">="),
        ("f.trace_duration_ms", query.max_ms, "<="),
        ("f.cost", query.min_cost, ">="),
        ("f.cost", query.max_cost, "<="),
    ):
        if value is not None:
            conditions.append(f"{column} {op} %s")
            params.append(value)
    decision_sql, decision_params = _decision_match(query, "EXISTS (SELECT 1")
    if decision_sql:
        conditions.append(decision_sql)
        params += decision_params
    for sql, values in _trace_conditions(query, common_text=common_text):
        conditions.append(sql)
        params += values
    return conditions, params


def _trace_conditions(query: TraceQuery, *, common_text: bool) -> list[tuple[str, list[Any]]]:
    """The filters on a trace's other rows (its service, verdicts and spans), as conditions
    on ``f.project_id`` and ``f.trace_id``, the most expensive last: it runs on the fewest
    rows."""
    found: list[tuple[str, list[Any]]] = []
    if query.service is not None:
        found.append(trace_service_condition("f.project_id", "f.trace_id", query.service))
    if query.failed_evaluator is not None:
        found.append(
            failed_evaluation_condition(
                "f.project_id",
                "f.trace_id",
                evaluator=None
                if query.failed_evaluator == ANY_EVALUATOR
                else query.failed_evaluator,
                micro_model=query.micro_model,
                cohort=dict(query.cohort),
            )
        )
    if query.text is not None:
        found.append(
            span_text_check("f.project_id", "f.trace_id", "f.start_time", query.text)
            if common_text
            else span_text_condition("f.project_id", "f.trace_id", query.text, query.start)
        )
    return found


_COLUMNS = (
    "project_id, trace_id, start_time, micro_model, route, label, expected_label,"
    " is_fallback, trace_error, trace_duration_ms, prompt_tokens, completion_tokens, cost,"
    " cohort, unpriced_models"
)


def _fetch(
    query: TraceQuery,
    *,
    after: _Key | None,
    direction: str,
    limit: int,
    common_text: bool = False,
) -> list[tuple]:
    """Up to ``limit`` primary facts strictly past ``after`` in ``direction`` ('n': older,
    newest first; 'p': newer, oldest first). Per project down its (project, start time)
    index of primary facts from the cursor, then merged: no sort of every match."""
    if not query.project_ids or limit <= 0:
        return []
    conditions, params = _conditions(query, common_text=common_text)
    order = "DESC" if direction == "n" else "ASC"
    if after is not None:
        # The plain bound lets the index scan start at the cursor; the row comparison then
        # drops the cursor's own trace and its neighbours at the same instant.
        bound, compare = ("<=", "<") if direction == "n" else (">=", ">")
        conditions.append(
            f"f.start_time {bound} %s AND (f.start_time, f.trace_id, p.id) {compare} (%s, %s, %s)"
        )
        params += [
            after.start_time,
            after.start_time,
            bytes.fromhex(after.trace_id),
            after.project_id,
        ]
    sql = (
        f"SELECT {_COLUMNS.replace('cohort', 'cohort::text')} FROM"  # noqa: S608 (constant SQL; values are parameters)
        " unnest(%s::bigint[]) AS p(id) CROSS JOIN LATERAL ("
        f" SELECT {', '.join('f.' + c.strip() for c in _COLUMNS.split(','))}"
        f" FROM dashboard_decisionfact f WHERE {' AND '.join(conditions)}"
        f" ORDER BY f.start_time {order}, f.trace_id {order} LIMIT %s) AS head"
        f" ORDER BY start_time {order}, trace_id {order}, project_id {order} LIMIT %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [list(query.project_ids), *params, limit, limit])
        rows = cursor.fetchall()
    return rows if direction == "n" else rows[::-1]


def _rows(facts: list[tuple]) -> list[TraceRow]:
    keys = [(r[0], bytes(r[1]).hex()) for r in facts]
    summaries = trace_summaries(keys)
    rows = []
    for r, key in zip(facts, keys, strict=True):
        summary = summaries.get(key)
        rows.append(
            TraceRow(
                project_id=r[0],
                trace_id=key[1],
                start_time=r[2],
                root_name=summary.root_name if summary else None,
                service_name=summary.service_name if summary else None,
                micro_model=r[3],
                route=r[4],
                label=r[5],
                expected_label=r[6],
                is_fallback=r[7],
                is_error=r[8],
                duration_ms=r[9],
                prompt_tokens=r[10],
                completion_tokens=r[11],
                cost_usd=r[12],
                cohort=json.loads(r[13]),
                unpriced_models=tuple(r[14]),
            )
        )
    return rows


def search_traces(
    query: TraceQuery, *, cursor: str | None, size: int, common_text: bool | None = None
) -> TraceResultPage:
    """One page of matching traces: the newest, or those past ``cursor`` (older for a
    next-page cursor, newer for a previous-page one). One extra row tells whether a page
    lies beyond, without a COUNT."""
    direction, after = decode_cursor(cursor) if cursor else ("n", None)
    facts = _fetch(
        query,
        after=after,
        direction=direction,
        limit=size + 1,
        common_text=text_is_common(query) if common_text is None else common_text,
    )
    more = len(facts) > size
    if direction == "n":
        facts = facts[:size]
        older, newer = more, after is not None
    else:
        facts = facts[len(facts) - size :] if more else facts
        older, newer = True, more
    rows = _rows(facts)
    return TraceResultPage(
        rows=rows,
        next_cursor=encode_cursor("n", rows[-1]) if rows and older else None,
        previous_cursor=encode_cursor("p", rows[0]) if rows and newer else None,
    )


def iter_traces(query: TraceQuery, *, limit: int, chunk: int = 500) -> Iterator[TraceRow]:
    """Every matching trace newest first, at most ``limit``, read ``chunk`` at a time down
    the same keyset (an export streams them without holding the set)."""
    after: _Key | None = None
    left = limit
    common_text = text_is_common(query)
    while left > 0:
        facts = _fetch(
            query, after=after, direction="n", limit=min(chunk, left), common_text=common_text
        )
        if not facts:
            return
        rows = _rows(facts)
        yield from rows
        left -= len(rows)
        last = rows[-1]
        after = _Key(last.start_time, last.trace_id, last.project_id)
        if len(facts) < chunk:
            return


@dataclass(frozen=True, slots=True)
class MatchCounts:
    traces: int
    decisions: int | None  # decisions matching the decision filters, when any is set
    failed_verdicts: int | None  # failed verdicts counted, with failed_evaluator
    capped: bool = False  # a common search text: traces counted up to TEXT_COUNT_CAP only


def match_counts(query: TraceQuery, *, common_text: bool | None = None) -> MatchCounts:
    """How many traces match, and in them how many decisions match the decision filters
    and how many failed verdicts the failed_evaluator filter counts: the numbers the
    metrics show for the same filters (a fallback count, a failed-evaluation count). One
    query, but over every match in the range (not a page): see docs/traces.md."""
    if not query.project_ids:
        return MatchCounts(0, None, None)
    if text_is_common(query) if common_text is None else common_text:
        return _capped_counts(query)
    failed: str = ""
    failed_params: list[Any] = []
    if query.failed_evaluator is not None:
        failed, failed_params = failed_evaluation_condition(
            "f.project_id",
            "f.trace_id",
            evaluator=None if query.failed_evaluator == ANY_EVALUATOR else query.failed_evaluator,
            micro_model=query.micro_model,
            cohort=dict(query.cohort),
            count=True,
        )
    decision_filters = _decision_filters(query)
    if decision_filters:
        sql, params = _decision_count_sql(query, decision_filters, failed)
        params = [*failed_params, *params]
    else:
        conditions, where_params = _conditions(query)
        sql = (
            f"SELECT count(*), NULL, sum({failed or 0})"  # noqa: S608 (constant SQL; values are parameters)
            " FROM unnest(%s::bigint[]) AS p(id) JOIN dashboard_decisionfact f"
            f" ON {' AND '.join(conditions)}"
        )
        params = [*failed_params, list(query.project_ids), *where_params]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        traces, decided, failed_count = cursor.fetchone()
    return MatchCounts(
        traces=traces,
        decisions=int(decided or 0) if decision_filters else None,
        failed_verdicts=int(failed_count or 0) if failed else None,
    )


def _capped_counts(query: TraceQuery) -> MatchCounts:
    """The traces of a search whose text most traces hold, counted down the newest-first
    walk up to TEXT_COUNT_CAP (counting every match took 14 s over 30 days at 20 M
    spans). No metric links to a text search, so no number shown elsewhere needs the
    exact count; the decision and verdict counts are left out."""
    conditions, params = _conditions(query, common_text=True)
    sql = (
        "SELECT count(*) FROM (SELECT 1"  # noqa: S608 (constant SQL; values are parameters)
        " FROM unnest(%s::bigint[]) AS p(id) JOIN dashboard_decisionfact f"
        f" ON {' AND '.join(conditions)} LIMIT %s) AS matches"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [list(query.project_ids), *params, TEXT_COUNT_CAP + 1])
        (traces,) = cursor.fetchone()
    capped = traces > TEXT_COUNT_CAP
    return MatchCounts(min(traces, TEXT_COUNT_CAP), None, None, capped=capped)


def _decision_count_sql(
    query: TraceQuery, decision_filters: list[tuple[str, Any]], failed: str
) -> tuple[str, list[Any]]:
    """The counts when decision filters are set, read from the matching decisions (down
    the (project, micro model, start time) or (project, start time) decision index) and
    grouped by trace: a decision fact carries its trace's start time, cohort, error and
    duration, so only a cost bound needs the trace's primary fact. Checking every trace
    of the range for a matching decision instead took 4 s for one micro model's day at
    20 M spans (docs/benchmarks.md)."""
    conditions = [
        "d.project_id = p.id",
        "d.is_decision",
        "d.start_time >= %s",
        "d.start_time < %s",
    ]
    params: list[Any] = [query.start, query.end]
    for column, value in decision_filters:
        conditions.append(f"d.{column} = %s")
        params.append(value)
    if query.cohort:
        conditions.append("d.cohort @> %s::jsonb")
        params.append(json.dumps(dict(query.cohort)))
    if query.error is not None:
        conditions.append("d.trace_error = %s")
        params.append(query.error)
    for value, op in ((query.min_ms, ">="), (query.max_ms, "<=")):
        if value is not None:
            conditions.append(f"d.trace_duration_ms {op} %s")
            params.append(value)
    outer: list[str] = []
    outer_params: list[Any] = []
    costs = [
        (value, op)
        for value, op in ((query.min_cost, ">="), (query.max_cost, "<="))
        if value is not None
    ]
    if costs:
        bounds = " AND ".join(f"t.cost {op} %s" for _, op in costs)
        outer.append(
            "EXISTS (SELECT 1 FROM dashboard_decisionfact t WHERE t.project_id = f.project_id"  # noqa: S608 (constant SQL; values are parameters)
            f" AND t.trace_id = f.trace_id AND t.is_primary AND {bounds})"
        )
        outer_params += [value for value, _ in costs]
    # A common text never comes here: match_counts counts it up to the cap.
    for sql, values in _trace_conditions(query, common_text=False):
        outer.append(sql)
        outer_params += values
    sql = (
        f"SELECT count(*), sum(f.decisions), sum({failed or 0}) FROM ("  # noqa: S608 (constant SQL; values are parameters)
        " SELECT d.project_id, d.trace_id, count(*) AS decisions"
        " FROM unnest(%s::bigint[]) AS p(id) JOIN dashboard_decisionfact d"
        f" ON {' AND '.join(conditions)} GROUP BY d.project_id, d.trace_id) AS f"
        + (f" WHERE {' AND '.join(outer)}" if outer else "")
    )
    return sql, [list(query.project_ids), *params, *outer_params]


def _decision_filters(query: TraceQuery) -> list[tuple[str, Any]]:
    """(column, value) of the decision filters set: one and the same decision must match
    them all."""
    decision = [(c, getattr(query, c)) for c in _DECISION_FILTERS if getattr(query, c) is not None]
    if query.fallback is not None:
        decision.append(("is_fallback", query.fallback))
    return decision


def window_params(start: datetime, end: datetime, range_name: str | None) -> dict[str, str]:
    """The page's parameters for a metric page's window: its preset, or its exact bounds."""
    if range_name:
        return {"range": range_name}
    return {"range": CUSTOM_RANGE, "start": start.isoformat(), "end": end.isoformat()}


# -- suggestions -------------------------------------------------------------------------------


def suggestions(project_ids: tuple[int, ...]) -> dict[str, list[str]]:
    """Values to offer in each filter field: the distinct values of each project's newest
    SUGGESTION_SCAN decisions (and traces, for services), at most SUGGESTION_LIMIT per
    field. Two bounded queries whatever the table sizes."""
    found: dict[str, set[str]] = {name: set() for name in _DECISION_FILTERS}
    cohort: dict[str, set[str]] = {}
    if project_ids:
        sql = (
            "SELECT micro_model, route, model, label, expected_label, cohort::text"
            " FROM unnest(%s::bigint[]) AS p(id) CROSS JOIN LATERAL ("
            " SELECT f.micro_model, f.route, f.model, f.label, f.expected_label, f.cohort"
            " FROM dashboard_decisionfact f WHERE f.project_id = p.id AND f.is_decision"
            " ORDER BY f.start_time DESC LIMIT %s) AS head"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [list(project_ids), SUGGESTION_SCAN])
            for row in cursor.fetchall():
                for name, value in zip(_DECISION_FILTERS, row[:5], strict=True):
                    if value:
                        found[name].add(value)
                for key, value in json.loads(row[5]).items():
                    if isinstance(value, str) and value:
                        cohort.setdefault(key, set()).add(value)
    result = {name: sorted(values)[:SUGGESTION_LIMIT] for name, values in found.items()}
    result["service"] = recent_service_names(
        project_ids, scan=SUGGESTION_SCAN, limit=SUGGESTION_LIMIT
    )
    result["failed_evaluator"] = [*EVALUATORS, ANY_EVALUATOR]
    for key, values in cohort.items():
        result[COHORT_PREFIX + key] = sorted(values)[:SUGGESTION_LIMIT]
    return result


def _significant(value: float, digits: int = 3) -> str:
    """``value`` to ``digits`` significant digits, as a field takes it: 1234.5 -> 1230,
    0.00012345 -> 0.000123 (never an exponent)."""
    return format(Decimal(f"{value:.{digits}g}"), "f")


def range_suggestions(
    project_ids: tuple[int, ...], start: datetime | None, end: datetime | None
) -> dict[str, list[tuple[str, str]]]:
    """(value, label) to offer in the duration (ms) and cost (USD) fields: the
    RANGE_PERCENTILES (nearest rank) of the trace duration and of the trace cost over each
    project's newest SUGGESTION_SCAN traces that started in ``[start, end)`` (of any time
    without a window), to 3 significant digits; percentiles that round alike share one
    value ("p90, p99"). The cost's are over the traces with a known cost (the ones a cost
    bound can match). One query down the primary-fact index, at most SUGGESTION_SCAN rows
    per project, whatever the window holds."""
    result: dict[str, list[tuple[str, str]]] = {"duration": [], "cost": []}
    if not project_ids:
        return result
    window = ""
    params: list[Any] = [list(RANGE_PERCENTILES), list(RANGE_PERCENTILES), list(project_ids)]
    if start is not None and end is not None:
        window = " AND f.start_time >= %s AND f.start_time < %s"
        params += [start, end]
    sql = (
        "SELECT percentile_disc(%s::float8[]) WITHIN GROUP (ORDER BY trace_duration_ms),"  # noqa: S608 (constant SQL; values are parameters)
        " percentile_disc(%s::float8[]) WITHIN GROUP (ORDER BY cost)"
        " FROM unnest(%s::bigint[]) AS p(id) CROSS JOIN LATERAL ("
        " SELECT f.trace_duration_ms, f.cost FROM dashboard_decisionfact f"
        f" WHERE f.project_id = p.id AND f.is_primary{window}"
        " ORDER BY f.start_time DESC LIMIT %s) AS head"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, SUGGESTION_SCAN])
        durations, costs = cursor.fetchone()
    for name, values in (("duration", durations), ("cost", costs)):
        labels: dict[str, list[str]] = {}
        for p, value in zip(RANGE_PERCENTILES, values or (), strict=False):
            if value is not None:
                labels.setdefault(_significant(value), []).append(f"p{p * 100:g}")
        result[name] = [(value, ", ".join(names)) for value, names in labels.items()]
    return result


def range_names() -> list[str]:
    return list(RANGES)
