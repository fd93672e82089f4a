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
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from evaluators.contracts import EvaluationCount
from evaluators.queries import (
    changed_evaluation_hours,
    evaluation_counts,
    evaluation_hour_counts,
)
from tracestore.queries import cohort_dimension_keys

from ..models import EvalRollup, RollupWatermark
from .filters import Filters
from .fold import (
    Fold,
    RollupRow,
    RollupTable,
    Sum,
    clear_rollups,
    expire_rollups,
    fold_window,
    lock,
    refold,
    resum_days,
)
from .sql import _where
from .windows import partial_hours, whole_hours

EVAL_ROLLUP = RollupTable(
    EvalRollup,
    keys=("micro_model", "evaluator", "dim_key", "dim_value"),
    sums=(
        Sum("evaluated"),
        Sum("failed"),
        Sum("weighted_evaluated", "float"),
        Sum("weighted_failed", "float"),
        Sum("weighted_sq_evaluated", "float"),
        Sum("weighted_sq_failed", "float"),
    ),
)
_SUM_NAMES = tuple(s.name for s in EVAL_ROLLUP.sums)


def count_evaluation_hours(
    cursor, project_id: int, hours: list[datetime], keys: list[str]
) -> dict[RollupTable, Iterable[RollupRow]]:
    """The EvalRollup hour rows of ``hours``: evaluators count them in the database."""
    counts = evaluation_hour_counts(project_id, hours, keys)
    return {
        EVAL_ROLLUP: (
            (
                c.hour,
                (c.micro_model, c.evaluator, c.dim_key, c.dim_value),
                {name: getattr(c, name) for name in _SUM_NAMES},
            )
            for c in counts
        )
    }


FOLD = Fold(
    watermark="evaluations",
    lock_id=0x6D6C_6576_6C72,
    rollups=(EVAL_ROLLUP,),
    count_hours=count_evaluation_hours,
    hours_per_query=168,
)


def rebuild_evaluation_days(buckets: set[tuple[int, datetime]]) -> None:
    """Day rows are the sums of their hours' rows."""
    resum_days(FOLD, buckets)


def fold_evaluations(now: datetime | None = None) -> tuple[int, int]:
    """Re-count every hour with results changed since the watermark; returns the number
    of (project, hour) and (project, day) buckets rewritten."""
    with fold_window(FOLD, now) as window:
        touched = changed_evaluation_hours(window.start)
        days = refold(FOLD, touched, cohort_dimension_keys()) if touched else set()
    return len(touched), len(days)


def rebuild_evaluation_rollups() -> tuple[int, int]:
    """Re-count every hour from scratch (after a cohort dimension change)."""
    with transaction.atomic():
        lock(FOLD)
        clear_rollups(FOLD)
        RollupWatermark.objects.filter(name=FOLD.watermark).delete()
        return fold_evaluations()


def expire_evaluation_rollups(now: datetime | None = None) -> None:
    """Drop rows past tracestore's retention; the day the cutoff falls in keeps only its
    unexpired hours."""
    retention = timedelta(days=settings.MICROLENS_RETENTION_DAYS)
    expire_rollups(FOLD, (now or timezone.now()) - retention)


def rollup_counts(filters: Filters, group_by: str | None) -> dict[tuple[str, Any], list]:
    """(evaluator, group) -> [failed, evaluated, weighted failed, weighted evaluated,
    w²-weighted failed, w²-weighted evaluated] over
    ``[start, end)`` exactly: its whole hours from the rollup (whole days from day rows,
    ragged hours from hour rows), the partial hours at its ends (windows.py) counted from
    evaluators' results, whose spans started inside them."""
    counts: dict[tuple[str, Any], list] = defaultdict(lambda: [0, 0, 0.0, 0.0, 0.0, 0.0])
    for evaluator, grp, *sums in whole_hour_counts(filters, group_by):
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
            add_count(counts[(c.evaluator, c.group)], c)
    return dict(counts)


def whole_hour_counts(
    filters: Filters, group_by: str | None, *, per_micro_model: bool = False
) -> list[tuple]:
    """The rollup's rows over the window's whole hours: (micro model when
    ``per_micro_model``,) evaluator, group, then the six sums of ``rollup_counts``."""
    hours = whole_hours(filters.start, filters.end)
    if hours is None:
        return []
    whole = replace(filters, start=hours[0], end=hours[1])
    where, params, group_sql = _where(whole, group_by, None, "dashboard_evalrollup")
    keys = ["evaluator", group_sql or "NULL::text"]
    if per_micro_model:
        keys.insert(0, "micro_model")
    sql = (
        f"SELECT {', '.join(keys)}, sum(failed), sum(evaluated),"
        " sum(weighted_failed), sum(weighted_evaluated), sum(weighted_sq_failed),"
        f" sum(weighted_sq_evaluated) {where} GROUP BY {', '.join(keys)}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def add_count(into: list, c: EvaluationCount) -> None:
    """Add one of evaluators' partial-hour counts to ``rollup_counts``' six sums."""
    _add(
        into,
        c.failed,
        c.evaluated,
        c.weighted_failed,
        c.weighted_evaluated,
        c.weighted_sq_failed,
        c.weighted_sq_evaluated,
    )


def _add(into: list, failed: int, evaluated: int, *weighted: float) -> None:
    into[0] += int(failed)
    into[1] += int(evaluated)
    for i, value in enumerate(weighted, start=2):
        into[i] += float(value)
