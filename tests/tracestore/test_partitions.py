from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from tests.builders import micro_model_trace
from tracestore.models import Span, Trace
from tracestore.partitions import apply_retention, ensure_span_partitions, existing_partitions
from tracestore.services import create_project, store_spans

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


def test_retention_drops_old_days_and_prunes_the_default_partition() -> None:
    project = create_project("p")
    now = datetime.now(UTC)
    keep = micro_model_trace()
    ten_days = micro_model_trace()
    ten_days.start_ns = time.time_ns() - 10 * DAY_NS
    ten_days.spans.clear()
    ten_days.span("ten-days-ago")
    ancient = micro_model_trace()
    ancient.start_ns = time.time_ns() - 60 * DAY_NS
    ancient.spans.clear()
    ancient.span("sixty-days-ago")
    store_spans(project.id, keep.records() + ten_days.records() + ancient.records())

    result = apply_retention(now, retention_days=30, days_ahead=3)
    assert (result.partitions_dropped, result.default_rows_deleted) == (0, 1)
    assert result.traces_deleted == 1
    assert Span.objects.filter(name="sixty-days-ago").count() == 0
    assert Span.objects.filter(name="ten-days-ago").count() == 1

    result = apply_retention(now, retention_days=5, days_ahead=3)
    assert result.partitions_dropped == 25  # days -30 .. -6
    assert Span.objects.filter(name="ten-days-ago").count() == 0
    assert Span.objects.count() == 3
    assert Trace.objects.count() == 1
    assert min(existing_partitions().values()) == now.date() - timedelta(days=5)


def test_creating_partitions_again_is_a_no_op() -> None:
    assert ensure_span_partitions(datetime.now(UTC).date(), 30, 3) == 0
