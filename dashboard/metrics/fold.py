"""The fold engine: what every metric rollup shares, declared once.

A ``Fold`` names its watermark, its advisory lock, the rollup tables it writes (each a
``RollupTable``: its key columns and its **named** sums) and its source: a function that
counts the hour rows of some (project, hours) from wherever the fold reads (decision facts,
evaluators' results). The engine owns the rest:

- the window: lock, read the watermark, re-read ``LATE_COMMIT_MARGIN`` before it, and
  advance it in the same transaction as the rows it wrote (``fold_window``);
- hour buckets: delete and re-count whole hours from the source (``rebuild_hours``);
- day buckets: delete and re-sum from their hours, never from the source
  (``resum_days``);
- expiry: hours and days past the cutoff, and the cutoff's day re-summed from the hours
  left (``expire_rollups``);
- flooring: ``floor_hour`` / ``ceil_hour`` / ``floor_day``, the only ones in the codebase.

A sum is written to the column of its name; ``RollupTable`` refuses at import a key or a
sum that is not a column of its model, so a declaration cannot drift from the schema.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from django.core.exceptions import FieldDoesNotExist
from django.db import connection, models, transaction
from django.utils import timezone

from ..models import RollupWatermark
from .histograms import add_into

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# updated_at is its transaction's start time: a batch that began before the last fold's
# end may commit after it. Re-reading this margin catches every batch shorter than it.
LATE_COMMIT_MARGIN = timedelta(minutes=5)


def floor_hour(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def ceil_hour(at: datetime) -> datetime:
    floored = floor_hour(at)
    return floored if floored == at else floored + timedelta(hours=1)


def floor_day(at: datetime) -> datetime:
    return floor_hour(at).replace(hour=0)


def ceil_day(at: datetime) -> datetime:
    floored = floor_day(at)
    return floored if floored == at else floored + timedelta(days=1)


SumKind = Literal["int", "float", "hist", "set"]


@dataclass(frozen=True, slots=True)
class Sum:
    """One summed column: counts and totals add, histograms add bin by bin, sets
    (``unpriced_models``) unite and are written sorted."""

    name: str
    kind: SumKind = "int"
    bins: int = 0  # a histogram's length

    def zero(self) -> Any:
        if self.kind == "hist":
            return [0] * self.bins
        if self.kind == "set":
            return set()
        return 0.0 if self.kind == "float" else 0


# (bucket, key values in declared order, sums by name)
RollupRow = tuple[datetime, tuple, Mapping[str, Any]]


@dataclass(frozen=True)
class RollupTable:
    """A rollup model: one row per width ("h"/"d") x bucket x project x ``keys``."""

    model: type[models.Model]
    keys: tuple[str, ...]
    sums: tuple[Sum, ...]
    table: str = field(init=False)
    columns: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        names = ("width", "bucket", "project_id", *self.keys, *(s.name for s in self.sums))
        if len(set(names)) != len(names):
            raise ValueError(f"{self.model.__name__}: a column is declared twice in {names}")
        for name in names:
            try:
                column = self.model._meta.get_field(name).column  # type: ignore[union-attr]
            except FieldDoesNotExist:
                column = None
            if column != name:
                raise ValueError(f"{self.model.__name__} has no column {name!r}")
        object.__setattr__(self, "table", self.model._meta.db_table)
        object.__setattr__(self, "columns", names)

    def new_sums(self) -> dict[str, Any]:
        return {s.name: s.zero() for s in self.sums}

    @property
    def summed_in_sql(self) -> bool:
        return all(s.kind in ("int", "float") for s in self.sums)


# (cursor, project id, hours, cohort dimension keys) -> the hour rows of each rollup table
HourSource = Callable[
    [Any, int, list[datetime], list[str]], Mapping[RollupTable, Iterable[RollupRow]]
]


@dataclass(frozen=True)
class Fold:
    watermark: str
    lock_id: int  # pg advisory lock: one run of this fold at a time
    rollups: tuple[RollupTable, ...]
    count_hours: HourSource
    # Hours per source query; None reads all the hours of a project at once.
    hours_per_query: int | None = None


@dataclass(frozen=True, slots=True)
class FoldWindow:
    start: datetime
    until: datetime


def lock(fold: Fold) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [fold.lock_id])


@contextmanager
def fold_window(
    fold: Fold, now: datetime | None = None, *, since: datetime | None = None
) -> Iterator[FoldWindow]:
    """One transaction under the fold's lock: yields ``[start, until)`` (``since``, or the
    watermark less the late-commit margin) and advances the watermark to ``until`` when
    the body returns."""
    until = now or timezone.now()
    with transaction.atomic():
        lock(fold)
        mark, _ = RollupWatermark.objects.select_for_update().get_or_create(
            name=fold.watermark, defaults={"folded_until": EPOCH}
        )
        start = since if since is not None else max(mark.folded_until - LATE_COMMIT_MARGIN, EPOCH)
        yield FoldWindow(start=start, until=until)
        mark.folded_until = max(until, mark.folded_until)
        mark.save(update_fields=["folded_until"])


def clear_rollups(fold: Fold) -> None:
    with connection.cursor() as cursor:
        for rollup in fold.rollups:
            cursor.execute(f"DELETE FROM {rollup.table}")  # noqa: S608 (declared table names)


def refold(
    fold: Fold, touched: set[tuple[int, datetime]], keys: list[str]
) -> set[tuple[int, datetime]]:
    """Re-count the (project, hour) buckets ``touched`` and re-sum their days; returns the
    (project, day) buckets."""
    rebuild_hours(fold, touched, keys)
    days = {(project_id, floor_day(hour)) for project_id, hour in touched}
    resum_days(fold, days)
    return days


def rebuild_hours(fold: Fold, buckets: set[tuple[int, datetime]], keys: list[str]) -> None:
    """Replace the hour rows of ``buckets`` by a fresh count from the fold's source."""
    by_project: dict[int, list[datetime]] = defaultdict(list)
    for project_id, hour in buckets:
        by_project[project_id].append(hour)
    with connection.cursor() as cursor:
        for project_id, hours in by_project.items():
            step = len(hours)
            if fold.hours_per_query:
                hours.sort()
                step = fold.hours_per_query
            for i in range(0, len(hours), step):
                chunk = hours[i : i + step]
                for rollup in fold.rollups:
                    cursor.execute(
                        f"DELETE FROM {rollup.table} WHERE project_id = %s AND width = 'h'"  # noqa: S608 (declared table names)
                        " AND bucket = ANY(%s::timestamptz[])",
                        [project_id, chunk],
                    )
                counted = fold.count_hours(cursor, project_id, chunk, keys)
                for rollup in fold.rollups:
                    write_rows(cursor, rollup, "h", project_id, counted.get(rollup, ()))


def write_rows(
    cursor, rollup: RollupTable, width: str, project_id: int, rows: Iterable[RollupRow]
) -> None:
    """COPY rows of one width: each sum into the column of its name."""
    sums = rollup.sums
    copy_rows(
        cursor,
        rollup.table,
        rollup.columns,
        (
            (
                width,
                bucket,
                project_id,
                *key,
                *(sorted(values[s.name]) if s.kind == "set" else values[s.name] for s in sums),
            )
            for bucket, key, values in rows
        ),
    )


def resum_days(fold: Fold, buckets: set[tuple[int, datetime]]) -> None:
    """Day rows are the sums of their hours' rows."""
    with connection.cursor() as cursor:
        for project_id, day in sorted(buckets):
            for rollup in fold.rollups:
                cursor.execute(
                    f"DELETE FROM {rollup.table} WHERE project_id = %s AND width = 'd'"  # noqa: S608 (declared table names)
                    " AND bucket = %s",
                    [project_id, day],
                )
                if rollup.summed_in_sql:
                    _resum_day_in_sql(cursor, rollup, project_id, day)
                else:
                    _resum_day(cursor, rollup, project_id, day)


def _resum_day_in_sql(cursor, rollup: RollupTable, project_id: int, day: datetime) -> None:
    keys = ", ".join(rollup.keys)
    sums = ", ".join(f"sum({s.name})" for s in rollup.sums)
    cursor.execute(
        f"INSERT INTO {rollup.table} ({', '.join(rollup.columns)})"  # noqa: S608 (declared names; values are parameters)
        f" SELECT 'd', %s, project_id, {keys}, {sums}"
        f" FROM {rollup.table} WHERE project_id = %s AND width = 'h'"
        " AND bucket >= %s AND bucket < %s"
        f" GROUP BY project_id, {keys}",
        [day, project_id, day, day + timedelta(days=1)],
    )


def _resum_day(cursor, rollup: RollupTable, project_id: int, day: datetime) -> None:
    # Histograms and sets have no SQL sum: the hours are summed here.
    key_names, sums = rollup.keys, rollup.sums
    cursor.execute(
        f"SELECT {', '.join((*key_names, *(s.name for s in sums)))}"  # noqa: S608 (declared names)
        f" FROM {rollup.table} WHERE project_id = %s AND width = 'h'"
        " AND bucket >= %s AND bucket < %s",
        [project_id, day, day + timedelta(days=1)],
    )
    width = len(key_names)
    totals: dict[tuple, dict[str, Any]] = {}
    for row in cursor.fetchall():
        key, values = row[:width], dict(zip((s.name for s in sums), row[width:], strict=True))
        total = totals.get(key)
        if total is None:
            totals[key] = {
                s.name: (
                    list(values[s.name])
                    if s.kind == "hist"
                    else set(values[s.name])
                    if s.kind == "set"
                    else values[s.name]
                )
                for s in sums
            }
            continue
        for s in sums:
            if s.kind == "hist":
                add_into(total[s.name], values[s.name])
            elif s.kind == "set":
                total[s.name].update(values[s.name])
            else:
                total[s.name] += values[s.name]
    write_rows(cursor, rollup, "d", project_id, ((day, k, v) for k, v in totals.items()))


def expire_rollups(fold: Fold, cutoff: datetime) -> None:
    """Drop hour rows before ``cutoff``'s hour and day rows before its day; the day the
    cutoff falls in keeps only its unexpired hours."""
    hour, day = floor_hour(cutoff), floor_day(cutoff)
    projects: set[int] = set()
    with connection.cursor() as cursor:
        for rollup in fold.rollups:
            cursor.execute(
                f"DELETE FROM {rollup.table} WHERE (width = 'h' AND bucket < %s)"  # noqa: S608 (declared table names)
                " OR (width = 'd' AND bucket < %s)",
                [hour, day],
            )
            cursor.execute(
                f"SELECT DISTINCT project_id FROM {rollup.table}"  # noqa: S608 (declared table names)
                " WHERE width = 'd' AND bucket = %s",
                [day],
            )
            projects.update(row[0] for row in cursor.fetchall())
    resum_days(fold, {(project_id, day) for project_id in projects})


def copy_rows(cursor, table: str, columns: Iterable[str], rows: Iterable[tuple]) -> None:
    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(tuple(_array(v) if type(v) is list else v for v in row))


def _array(values: list) -> str:
    # An array literal in COPY text: psycopg's generic list dumper is ten times slower.
    if values and type(values[0]) is int:
        return "{" + ",".join(map(str, values)) + "}"
    return "{" + ",".join(map(_element, values)) + "}"


def _element(value: object) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(value)


def cohort_dims(cohort: str | dict[str, str], keys: list[str]) -> list[tuple[str, str]]:
    """The (dim_key, dim_value) rows a fact counts in: all cohorts ('', '') and each
    configured key its cohort has."""
    values = json.loads(cohort) if isinstance(cohort, str) else cohort
    return [("", "")] + [(k, values[k]) for k in keys if k in values]
