"""Windows that do not fall on whole UTC hours, read exactly.

A window ``[start, end)`` is its whole hours ``[ceil_hour(start), floor_hour(end))``,
read from the hour and day rollups, plus at most two partial hours at its ends (one, when
the window lies inside a single hour). A partial hour is summed from the ``DecisionFact``
rows whose trace started inside it (through the ``(project, hour)`` index) by the same
``refresh.sum_facts`` that builds the hour rollups, and joins the rollup rows as rows of
width ``'e'``: every metric query reads the union, so a metric has one definition
whatever the window.

A 5-minute window ending 10:53 reads the facts of 10:48 to 10:53 and no rollup row; a
24-hour window ending 10:53 reads 10:53 to 11:00 yesterday and 10:00 to 10:53 today from
the facts and the 23 hours between from the rollups.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection

from .refresh import (
    _LABEL_COLUMNS,
    _ROLLUP_COLUMNS,
    SUMMED_FACT_COLUMNS,
    label_records,
    rollup_records,
    sum_facts,
)

EDGE_WIDTH = "e"

_TYPES = {
    "width": "text",
    "bucket": "timestamptz",
    "project_id": "bigint",
    "latency_hist": "integer[]",
    "cost_hist": "integer[]",
    "confidence_hist": "integer[]",
    "unpriced_models": "text[]",
    "cost_sum": "double precision",
    "prompt_tokens": "bigint",
    "completion_tokens": "bigint",
}
_TEXT = {"micro_model", "model", "route", "label", "expected_label", "dim_key", "dim_value"}
_TABLES = {"dashboard_rollup": _ROLLUP_COLUMNS, "dashboard_labelrollup": _LABEL_COLUMNS}


def _floor_hour(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _ceil_hour(at: datetime) -> datetime:
    floored = _floor_hour(at)
    return floored if floored == at else floored + timedelta(hours=1)


def whole_hours(start: datetime, end: datetime) -> tuple[datetime, datetime] | None:
    """The whole UTC hours inside ``[start, end)``, or None when there are none."""
    first, last = _ceil_hour(start), _floor_hour(end)
    return (first, last) if first < last else None


def partial_hours(start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """The parts of ``[start, end)`` outside its whole hours, each inside one hour."""
    first, last = _ceil_hour(start), _floor_hour(end)
    if first > last:  # start and end inside the same hour
        return [(start, end)] if start < end else []
    edges = []
    if start < first:
        edges.append((start, first))
    if last < end:
        edges.append((last, end))
    return edges


def _column_type(column: str) -> str:
    return "text" if column in _TEXT else _TYPES.get(column, "integer")


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def partial_hour_records(
    project_ids: list[int],
    edges: list[tuple[datetime, datetime]],
    dim_key: str,
    columns: dict[str, str],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rollup and label rows (width 'e') of the decisions in ``edges``, for the all-cohorts
    rows and ``dim_key``'s; ``columns`` narrows the facts read by exact column values
    (micro_model, route, model), which the rollup rows carry unchanged."""
    conditions = "".join(f" AND {column} = %s" for column in columns)
    keys = [dim_key] if dim_key else []
    rollups: list[dict[str, Any]] = []
    labels: list[dict[str, Any]] = []
    with connection.cursor() as cursor:
        for project_id in project_ids:
            for edge_start, edge_end in edges:
                cursor.execute(
                    f"SELECT {SUMMED_FACT_COLUMNS} FROM dashboard_decisionfact"  # noqa: S608 (constant SQL; values are parameters)
                    " WHERE project_id = %s AND hour = %s AND start_time >= %s"
                    f" AND start_time < %s{conditions}",
                    [project_id, _floor_hour(edge_start), edge_start, edge_end, *columns.values()],
                )
                summed, summed_labels = sum_facts(cursor.fetchall(), keys)
                rollups += _records(_ROLLUP_COLUMNS, rollup_records(EDGE_WIDTH, project_id, summed))
                labels += _records(
                    _LABEL_COLUMNS, label_records(EDGE_WIDTH, project_id, summed_labels)
                )
    return rollups, labels


def _records(columns: tuple[str, ...], rows: Iterator[tuple]) -> list[dict[str, Any]]:
    return [
        {column: _jsonable(value) for column, value in zip(columns, row, strict=True)}
        for row in rows
    ]


def source(table: str, records: list[dict[str, Any]]) -> tuple[str, list[Any]]:
    """``table``, or (when there are partial-hour rows) the union of its rows and them, as
    a FROM item the metric queries read like the table itself."""
    if not records:
        return table, []
    columns = _TABLES[table]
    names = ", ".join(columns)
    types = ", ".join(f"{column} {_column_type(column)}" for column in columns)
    return (
        f"(SELECT {names} FROM {table} UNION ALL"  # noqa: S608 (constant SQL; values are parameters)
        f" SELECT {names} FROM jsonb_to_recordset(%s::jsonb) AS e({types})) AS {table}",
        [json.dumps(records)],
    )
