"""Daily partitions of the span table: created ahead of time, dropped whole at retention.

Partition ``tracestore_span_pYYYYMMDD`` holds spans whose start_time falls on that UTC day.
Partitions exist for the whole retention window and a few days ahead, so a late or
replayed span inside the window lands in its own day; anything else lands in the DEFAULT
partition, which retention prunes with a bounded DELETE instead of a DROP.

Retention counts from a span's start, except for spans flagged FLAG_OLD_START (their start
was already older than retention keeps when they were received: a clock at the epoch, a
replay of old data): those are kept until their receipt is older than the cutoff. When
their day's partition is dropped they are moved to the DEFAULT partition first.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.db import DatabaseError, ProgrammingError, connection, transaction

from .contracts import FLAG_OLD_START

log = logging.getLogger(__name__)

_PARTITION = re.compile(r"^tracestore_span_p(\d{8})$")
_DELETE_BATCH = 10_000


@dataclass(frozen=True, slots=True)
class RetentionResult:
    partitions_created: int
    partitions_dropped: int
    default_rows_deleted: int
    traces_deleted: int


def _name(day: date) -> str:
    return f"tracestore_span_p{day:%Y%m%d}"


def existing_partitions() -> dict[str, date]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'tracestore_span'::regclass"
        )
        names = [row[0] for row in cursor.fetchall()]
    found = {}
    for name in names:
        match = _PARTITION.match(name)
        if match:
            found[name] = datetime.strptime(match.group(1), "%Y%m%d").date()
    return found


def ensure_span_partitions(today: date, days_back: int, days_ahead: int) -> int:
    """Create the missing daily partitions from ``today - days_back`` to ``today +
    days_ahead``; returns how many were created."""
    have = existing_partitions()
    created = 0
    for offset in range(-days_back, days_ahead + 1):
        day = today + timedelta(days=offset)
        name = _name(day)
        if name in have:
            continue
        start = datetime.combine(day, time.min, tzinfo=UTC)
        end = start + timedelta(days=1)
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(
                    f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF tracestore_span "
                    "FOR VALUES FROM (%s) TO (%s)",
                    [start, end],
                )
            created += 1
        except DatabaseError as exc:
            # Only possible if the DEFAULT partition already holds rows of that day: they
            # stay there (retention prunes them) and this day is retried tomorrow.
            log.warning("partitions.create_failed partition=%s error=%s", name, exc)
    return created


def apply_retention(now: datetime, retention_days: int, days_ahead: int) -> RetentionResult:
    """Drop span partitions older than the retention window, prune the default partition
    and the rollups of expired traces, and create the partitions ahead."""
    cutoff_day = now.date() - timedelta(days=retention_days)
    cutoff = datetime.combine(cutoff_day, time.min, tzinfo=UTC)
    dropped = 0
    for name, day in sorted(existing_partitions().items(), key=lambda item: item[1]):
        if day < cutoff_day:
            try:
                _drop_partition(name, cutoff)
            except ProgrammingError as exc:
                # Another retention run dropped it since it was listed.
                log.warning("partitions.drop_skipped partition=%s error=%s", name, exc)
                continue
            dropped += 1
    default_deleted = _delete_in_batches(
        "DELETE FROM tracestore_span_default WHERE ctid IN ("
        " SELECT ctid FROM tracestore_span_default WHERE start_time < %(cutoff)s"
        " AND (flags & %(kept)s = 0 OR received_at < %(cutoff)s) LIMIT %(batch)s)",
        cutoff,
    )
    # A trace's rollup goes with its spans: not while a span of it is kept by its receipt
    # (those are all in the DEFAULT partition: their start is before the cutoff).
    traces_deleted = _delete_in_batches(
        "DELETE FROM tracestore_trace WHERE (project_id, trace_id) IN ("
        " SELECT project_id, trace_id FROM tracestore_trace t WHERE end_time < %(cutoff)s"
        " AND NOT EXISTS (SELECT 1 FROM tracestore_span_default s"
        "  WHERE s.project_id = t.project_id AND s.trace_id = t.trace_id"
        "  AND s.flags & %(kept)s <> 0 AND s.received_at >= %(cutoff)s)"
        " LIMIT %(batch)s)",
        cutoff,
    )
    created = ensure_span_partitions(now.date(), retention_days, days_ahead)
    log.info(
        "retention.applied cutoff=%s dropped=%s default_deleted=%s traces_deleted=%s",
        cutoff_day,
        dropped,
        default_deleted,
        traces_deleted,
    )
    return RetentionResult(created, dropped, default_deleted, traces_deleted)


# Literal, so the planner matches the partial index span_kept_from_receipt_idx.
_KEPT_FROM_RECEIPT = f"(flags & {FLAG_OLD_START}) > 0"


def _drop_partition(name: str, cutoff: datetime) -> None:
    """Drop one expired day, keeping its spans flagged FLAG_OLD_START that were received
    after the cutoff: detached first, so they land in the DEFAULT partition when moved
    back. The table is locked meanwhile; the partial index makes finding them (usually
    none) a lookup, not a scan of the day."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE tracestore_span DETACH PARTITION {name}")
        cursor.execute(
            f"INSERT INTO tracestore_span SELECT * FROM {name} "  # noqa: S608 (our name)
            f"WHERE {_KEPT_FROM_RECEIPT} AND received_at >= %s",
            [cutoff],
        )
        cursor.execute(f"DROP TABLE {name}")


def _delete_in_batches(sql: str, cutoff: datetime) -> int:
    total = 0
    params: dict[str, Any] = {"cutoff": cutoff, "kept": FLAG_OLD_START, "batch": _DELETE_BATCH}
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, params)
            deleted = cursor.rowcount
        total += deleted
        if deleted < _DELETE_BATCH:
            return total
