"""Finding micro-model decisions by their metric facts: ``find_decisions`` pages through
``dashboard_decisionfact``'s decision rows for the span search (``/api/v1/spans/``),
newest trace first, by keyset on ``DecisionKey``; tracestore then reads the spans."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection

from .filters import Filters

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
