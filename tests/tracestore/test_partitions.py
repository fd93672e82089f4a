from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection

from tests.builders import micro_model_trace
from tracestore.contracts import FLAG_OLD_START
from tracestore.models import Span, Trace
from tracestore.partitions import (
    _KEPT_FROM_RECEIPT,
    apply_retention,
    ensure_span_partitions,
    existing_partitions,
)
from tracestore.services import create_project, maintain_span_partitions, store_spans
from tracestore.tasks import maintain_partitions

pytestmark = pytest.mark.django_db

DAY_NS = 24 * 3600 * 10**9


def _partition_of(trace_id: bytes) -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT tableoid::regclass::text FROM tracestore_span WHERE trace_id = %s",
            [trace_id],
        )
        return {row[0] for row in cursor.fetchall()}


def test_migrate_creates_daily_partitions_for_the_retention_window_and_ahead() -> None:
    days = sorted(existing_partitions().values())
    today = datetime.now(UTC).date()
    assert days[0] == today - timedelta(days=30)
    assert days[-1] == today + timedelta(days=3)
    assert len(days) == 34


def test_spans_land_in_their_days_partition_or_the_default_one() -> None:
    project = create_project("p")
    recent = micro_model_trace()
    old = micro_model_trace()
    old.start_ns = time.time_ns() - 45 * DAY_NS
    old.spans.clear()
    old.span("ancient", duration_ms=5)
    store_spans(project.id, recent.records() + old.records())

    today = datetime.now(UTC).date()
    assert _partition_of(recent.trace_id) == {f"tracestore_span_p{today:%Y%m%d}"}
    assert _partition_of(old.trace_id) == {"tracestore_span_default"}


def _trace_starting(start_ns: int, name: str) -> Any:
    trace = micro_model_trace()
    trace.start_ns = start_ns
    trace.spans.clear()
    trace.span(name, duration_ms=5)
    return trace


def test_retention_drops_old_days_and_prunes_the_default_partition() -> None:
    project = create_project("p")
    now = datetime.now(UTC)
    keep = micro_model_trace()
    ten_days = _trace_starting(time.time_ns() - 10 * DAY_NS, "ten-days-ago")
    ancient = _trace_starting(time.time_ns() - 60 * DAY_NS, "sixty-days-ago")
    store_spans(project.id, keep.records() + ten_days.records() + ancient.records())
    # Older than retention keeps when received: flagged, and kept from its receipt.
    assert Span.objects.get(name="sixty-days-ago").flags == FLAG_OLD_START
    assert Span.objects.get(name="ten-days-ago").flags == 0

    result = apply_retention(now, retention_days=30, days_ahead=3)
    assert (result.partitions_dropped, result.default_rows_deleted) == (0, 0)
    assert result.traces_deleted == 0
    assert Span.objects.count() == 5

    result = apply_retention(now, retention_days=5, days_ahead=3)
    assert result.partitions_dropped == 25  # days -30 .. -6
    assert Span.objects.filter(name="ten-days-ago").count() == 0
    assert Span.objects.count() == 4
    assert Trace.objects.count() == 2
    assert min(existing_partitions().values()) == now.date() - timedelta(days=5)

    # Thirty-one days on, today's spans have expired, and so has the flagged one: it was
    # received today.
    result = apply_retention(now + timedelta(days=31), retention_days=30, days_ahead=3)
    assert result.default_rows_deleted == 1
    assert Span.objects.count() == 0
    assert Trace.objects.count() == 0


def test_a_span_from_1970_is_flagged_and_kept_for_retention_from_its_receipt() -> None:
    project = create_project("p")
    epoch = _trace_starting(10**9, "from-1970")
    today = micro_model_trace()
    store_spans(project.id, epoch.records() + today.records())
    stored = Span.objects.get(name="from-1970")
    assert stored.flags == FLAG_OLD_START
    assert _partition_of(epoch.trace_id) == {"tracestore_span_default"}

    maintain_partitions()  # the daily task, now
    now = datetime.now(UTC)
    for days_later in (1, 29):
        maintain_span_partitions(now + timedelta(days=days_later))
        assert Span.objects.filter(name="from-1970").count() == 1
        assert Trace.objects.filter(trace_id=epoch.trace_id).count() == 1

    result = maintain_span_partitions(now + timedelta(days=31))
    assert result.default_rows_deleted == 1
    assert result.traces_deleted == 2
    assert Span.objects.count() == 0


def test_a_flagged_span_in_a_day_partition_outlives_that_partition(settings: Any) -> None:
    settings.MICROLENS_SPAN_MAX_AGE_DAYS = 7
    project = create_project("p")
    replayed = _trace_starting(time.time_ns() - 10 * DAY_NS, "replayed")
    ordinary = _trace_starting(time.time_ns() - 6 * DAY_NS, "six-days-ago")
    store_spans(project.id, replayed.records() + ordinary.records())
    assert Span.objects.get(name="replayed").flags == FLAG_OLD_START
    assert Span.objects.get(name="six-days-ago").flags == 0
    ten_days_ago = datetime.now(UTC).date() - timedelta(days=10)
    assert _partition_of(replayed.trace_id) == {f"tracestore_span_p{ten_days_ago:%Y%m%d}"}

    # Twenty-five days on, both days are past the retention window.
    now = datetime.now(UTC)
    result = maintain_span_partitions(now + timedelta(days=25))
    assert result.partitions_dropped >= 5
    assert Span.objects.filter(name="six-days-ago").count() == 0
    assert Span.objects.filter(name="replayed").count() == 1
    assert _partition_of(replayed.trace_id) == {"tracestore_span_default"}
    assert Trace.objects.filter(trace_id=replayed.trace_id).count() == 1
    assert Trace.objects.filter(trace_id=ordinary.trace_id).count() == 0

    maintain_span_partitions(now + timedelta(days=31))
    assert Span.objects.count() == 0


def test_creating_partitions_again_is_a_no_op() -> None:
    assert ensure_span_partitions(datetime.now(UTC).date(), 30, 3) == 0


def test_retention_finds_the_spans_kept_from_receipt_through_their_partial_index() -> None:
    # Retention looks for them in a day it drops while holding the table's lock: the
    # lookup must be able to use the index (matching its predicate), not scan the day.
    today = datetime.now(UTC).date()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(
            f"EXPLAIN SELECT * FROM tracestore_span_p{today:%Y%m%d} "  # noqa: S608
            f"WHERE {_KEPT_FROM_RECEIPT} AND received_at >= %s",
            [datetime.now(UTC)],
        )
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "received_at_idx" in plan or "kept_from_receipt" in plan, plan
