"""The evaluation rollup: eval fail rate without counting results at request time.

``EvalRollup`` holds, per hour (and per whole UTC day) x project x micro model x
evaluator x cohort value, the applicable verdicts, the failed ones, both weighted by
w = 1 / sampling probability and both weighted by w² (for the interval of the weighted
rate). ``fold_evaluations`` (the same beat task as the span rollups) asks evaluators which
(project, hour) buckets have results written or updated since the watermark and re-counts
each such hour whole from evaluators' results, then re-sums its day from the hours. A
verdict belongs to its span's hour forever, and a bucket is replaced, never added to: a
re-run or late feedback that flips a LabelCheck changes the count once, however often the
fold sees it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from evaluators.queries import (
    changed_evaluation_hours,
    evaluation_counts,
    evaluation_hour_counts,
)
from tracestore.queries import cohort_dimension_keys

from ..models import RollupWatermark
from .filters import Filters
from .refresh import LATE_COMMIT_MARGIN, _copy
from .sql import _where
from .windows import partial_hours, whole_hours

WATERMARK = "evaluations"
_LOCK_ID = 0x6D6C_6576_6C72  # pg advisory lock: one evaluation fold at a time
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_HOURS_PER_QUERY = 168
_COLUMNS = (
    "width",
    "bucket",
    "project_id",
    "micro_model",
    "evaluator",
    "dim_key",
    "dim_value",
    "evaluated",
    "failed",
    "weighted_evaluated",
    "weighted_failed",
    "weighted_sq_evaluated",
    "weighted_sq_failed",
)


def _day(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def rebuild_evaluation_hours(buckets: set[tuple[int, datetime]], keys: list[str]) -> None:
    """Replace the hour rows of ``buckets`` by a fresh count of evaluators' results."""
    by_project: dict[int, list[datetime]] = defaultdict(list)
    for project_id, hour in buckets:
        by_project[project_id].append(hour)
    with connection.cursor() as cursor:
        for project_id, hours in by_project.items():
            hours.sort()
            for i in range(0, len(hours), _HOURS_PER_QUERY):
                chunk = hours[i : i + _HOURS_PER_QUERY]
                cursor.execute(
                    "DELETE FROM dashboard_evalrollup WHERE project_id = %s AND width = 'h'"
                    " AND bucket = ANY(%s::timestamptz[])",
                    [project_id, chunk],
                )
                counts = evaluation_hour_counts(project_id, chunk, keys)
                _copy(
                    cursor,
                    "dashboard_evalrollup",
                    _COLUMNS,
                    (
                        (
                            "h",
                            c.hour,
                            project_id,
                            c.micro_model,
                            c.evaluator,
                            c.dim_key,
                            c.dim_value,
                            c.evaluated,
                            c.failed,
                            c.weighted_evaluated,
                            c.weighted_failed,
                            c.weighted_sq_evaluated,
                            c.weighted_sq_failed,
                        )
                        for c in counts
                    ),
                )


def rebuild_evaluation_days(buckets: set[tuple[int, datetime]]) -> None:
    """Day rows are the sums of their hours' rows."""
    with connection.cursor() as cursor:
        for project_id, day in sorted(buckets):
            cursor.execute(
                "DELETE FROM dashboard_evalrollup WHERE project_id = %s AND width = 'd'"
                " AND bucket = %s",
                [project_id, day],
            )
            cursor.execute(
                f"INSERT INTO dashboard_evalrollup ({', '.join(_COLUMNS)})"  # noqa: S608 (constant SQL; values are parameters)
                " SELECT 'd', %s, project_id, micro_model, evaluator, dim_key, dim_value,"
                " sum(evaluated), sum(failed), sum(weighted_evaluated), sum(weighted_failed),"
                " sum(weighted_sq_evaluated), sum(weighted_sq_failed)"
                " FROM dashboard_evalrollup WHERE project_id = %s AND width = 'h'"
                " AND bucket >= %s AND bucket < %s"
                " GROUP BY project_id, micro_model, evaluator, dim_key, dim_value",
                [day, project_id, day, day + timedelta(days=1)],
            )


def _rebuild(touched: set[tuple[int, datetime]], keys: list[str]) -> set[tuple[int, datetime]]:
    rebuild_evaluation_hours(touched, keys)
    days = {(project_id, _day(hour)) for project_id, hour in touched}
    rebuild_evaluation_days(days)
    return days


def fold_evaluations(now: datetime | None = None) -> tuple[int, int]:
    """Re-count every hour with results changed since the watermark; returns the number
    of (project, hour) and (project, day) buckets rewritten."""
    until = now or timezone.now()
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_ID])
        mark, _ = RollupWatermark.objects.select_for_update().get_or_create(
            name=WATERMARK, defaults={"folded_until": _EPOCH}
        )
        # updated_at may be its transaction's start: re-read a margin for late commits.
        start = max(mark.folded_until - LATE_COMMIT_MARGIN, _EPOCH)
        touched = changed_evaluation_hours(start)
        days = _rebuild(touched, cohort_dimension_keys()) if touched else set()
        mark.folded_until = max(until, mark.folded_until)
        mark.save(update_fields=["folded_until"])
    return len(touched), len(days)


def rebuild_evaluation_rollups() -> tuple[int, int]:
    """Re-count every hour from scratch (after a cohort dimension change)."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_ID])
            cursor.execute("DELETE FROM dashboard_evalrollup")
        RollupWatermark.objects.filter(name=WATERMARK).delete()
        return fold_evaluations()


def expire_evaluation_rollups(now: datetime | None = None) -> None:
    """Drop rows past tracestore's retention; the day the cutoff falls in keeps only its
    unexpired hours."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.MICROLENS_RETENTION_DAYS)
    hour = cutoff.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    day = _day(cutoff)
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM dashboard_evalrollup WHERE (width = 'h' AND bucket < %s)"
            " OR (width = 'd' AND bucket < %s)",
            [hour, day],
        )
        cursor.execute(
            "SELECT DISTINCT project_id FROM dashboard_evalrollup WHERE width = 'd'"
            " AND bucket = %s",
            [day],
        )
        projects = [row[0] for row in cursor.fetchall()]
    rebuild_evaluation_days({(project_id, day) for project_id in projects})


def rollup_counts(filters: Filters, group_by: str | None) -> dict[tuple[str, Any], list]:
    """(evaluator, group) -> [failed, evaluated, weighted failed, weighted evaluated,
    w²-weighted failed, w²-weighted evaluated] over
    ``[start, end)`` exactly: its whole hours from the rollup (whole days from day rows,
    ragged hours from hour rows), the partial hours at its ends (windows.py) counted from
    evaluators' results, whose spans started inside them."""
    counts: dict[tuple[str, Any], list] = defaultdict(lambda: [0, 0, 0.0, 0.0, 0.0, 0.0])
    hours = whole_hours(filters.start, filters.end)
    if hours is not None:
        whole = replace(filters, start=hours[0], end=hours[1])
        where, params, group_sql = _where(whole, group_by, None, "dashboard_evalrollup")
        sql = (
            f"SELECT evaluator, {group_sql or 'NULL::text'}, sum(failed), sum(evaluated),"
            f" sum(weighted_failed), sum(weighted_evaluated), sum(weighted_sq_failed),"
            f" sum(weighted_sq_evaluated) {where} GROUP BY 1, 2"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            for evaluator, grp, *sums in cursor.fetchall():
                _add(counts[(evaluator, grp)], *sums)
    for edge_start, edge_end in partial_hours(filters.start, filters.end):
        for c in evaluation_counts(
            list(filters.project_ids),
            start=edge_start,
            end=edge_end,
            micro_model=filters.micro_model,
            group_by=group_by,
            cohort=filters.cohort,
        ):
            _add(
                counts[(c.evaluator, c.group)],
                c.failed,
                c.evaluated,
                c.weighted_failed,
                c.weighted_evaluated,
                c.weighted_sq_failed,
                c.weighted_sq_evaluated,
            )
    return dict(counts)


def _add(into: list, failed: int, evaluated: int, *weighted: float) -> None:
    into[0] += int(failed)
    into[1] += int(evaluated)
    for i, value in enumerate(weighted, start=2):
        into[i] += float(value)
