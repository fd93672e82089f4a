"""The shadow pair rollup: shadow agreement over any window (whole days and hours from the
rollup, partial hours from the pairs) equals a count of the pairs themselves, and the
rollup stays equal to a direct count of the pairs through re-folds, feedback, expiry,
rebuilds and the migration that first fills it."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from dashboard import metrics
from dashboard.metrics.fold import floor_day, floor_hour
from dashboard.metrics.refresh import (
    expire_before,
    fold_changes,
    rebuild_all_rollups,
    resum_rollups,
)
from dashboard.metrics.shadow import _row, shadow_agreement
from dashboard.models import ShadowPair, ShadowPairRollup
from tests.builders import TraceBuilder
from tracestore.queries import cohort_dimension_keys
from tracestore.services import create_project, issue_api_key, store_spans

LIVE = "intent-mini"
SHADOWS = ("intent-next", "intent-distilled")
LABELS = ("billing", "refund", "other")
TIERS = ("enterprise", "free", None)  # None: a trace without the cohort attribute
TRACES = 90
STEP = timedelta(minutes=47)  # 90 traces over ~70 hours, at every minute of the hour


def _base() -> datetime:
    return floor_day(timezone.now()) - timedelta(days=3)


def _trace(i: int, start: datetime) -> TraceBuilder:
    trace = TraceBuilder(start_ns=int(start.timestamp() * 1e9))
    tier = TIERS[i % 3]
    root = trace.span("POST /chat", duration_ms=900, attrs={"user.tier": tier} if tier else {})
    attrs: dict[str, Any] = {
        "micro_model.name": LIVE,
        "micro_model.label": LABELS[i % 3],
        "route.name": LABELS[i % 3],
    }
    if i % 4:
        attrs["micro_model.expected_label"] = LABELS[(i // 4) % 3]
    trace.span("intent-classifier", parent=root, offset_ms=5, attrs=attrs)
    trace.span(
        "intent-classifier shadow",
        parent=root,
        offset_ms=6,
        attrs={
            "micro_model.name": SHADOWS[int(i % 5 == 0)],
            "micro_model.label": LABELS[(i // 2) % 3],
            "route.mirrored": True,
            "route.mirror_of": LIVE,
        },
    )
    return trace


def _seed() -> tuple[Any, list[TraceBuilder]]:
    project = create_project("shop")
    base = _base()
    traces = [_trace(i, base + timedelta(minutes=20) + i * STEP) for i in range(TRACES)]
    for trace in traces:
        store_spans(project.id, trace.records())
    fold_changes()
    return project, traces


@pytest.fixture
def mirrored(db):
    return _seed()


def _direct_rows(
    project_id: int, start: datetime, end: datetime, dimension: str | None, cohort
) -> list[dict]:
    """Shadow agreement counted here from the pair rows of the window."""
    cells: dict[tuple[str, str], Counter] = defaultdict(Counter)
    pairs = ShadowPair.objects.filter(
        project_id=project_id, micro_model=LIVE, start_time__gte=start, start_time__lt=end
    )
    for pair in pairs:
        if cohort and pair.cohort.get(cohort[0]) != cohort[1]:
            continue
        cell = (pair.live_label, pair.shadow_label, pair.expected_label)
        cells[(pair.shadow_model, "")][cell] += 1
        if dimension and pair.cohort.get(dimension):
            cells[(pair.shadow_model, pair.cohort[dimension])][cell] += 1
    return [_row(shadow, value, counts) for (shadow, value), counts in sorted(cells.items())]


def _at(days: int = 0, hours: int = 0, minutes: int = 0, seconds: int = 0) -> datetime:
    return _base() + timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


def _windows() -> dict[str, tuple[datetime, datetime]]:
    now = timezone.now()
    return {
        "custom, mid-hour to mid-hour": (_at(hours=1, minutes=13), _at(hours=5, minutes=41)),
        "inside one hour": (_at(hours=3, minutes=5), _at(hours=3, minutes=50)),
        "crossing midnight": (_at(hours=22, minutes=30), _at(days=1, hours=2, minutes=15)),
        "two whole days": (_at(), _at(days=2)),
        "two days and ragged ends": (_at(hours=7, seconds=1), _at(days=2, hours=19, minutes=59)),
        "24h": (now - timedelta(hours=24), now),
        "30d": (now - timedelta(days=30), now),
    }


@pytest.mark.parametrize(
    ("dimension", "cohort"),
    [
        (None, None),
        ("user.tier", None),
        (None, ("user.tier", "free")),
        ("user.tier", ("user.tier", "enterprise")),
    ],
)
def test_agreement_over_ragged_windows_equals_a_count_of_the_pairs(mirrored, dimension, cohort):
    project, _ = mirrored
    assert ShadowPairRollup.objects.filter(width="d").exists()
    for name, (start, end) in _windows().items():
        filters = metrics.Filters(
            project_ids=(project.id,), start=start, end=end, micro_model=LIVE, cohort=cohort
        )
        expected = _direct_rows(project.id, start, end, dimension, cohort)
        assert expected or name == "inside one hour", name  # the windows hold pairs
        assert shadow_agreement(filters, dimension) == expected, name


def test_a_cohort_key_no_longer_configured_is_counted_from_the_pairs(mirrored):
    from tracestore.models import CohortDimension

    project, _ = mirrored
    CohortDimension.objects.filter(key="user.tier").delete()  # its rollup rows stay
    ShadowPairRollup.objects.filter(dim_key="user.tier").delete()  # as after a --resum
    start, end = _windows()["two days and ragged ends"]
    cohort = ("user.tier", "free")
    filters = metrics.Filters(
        project_ids=(project.id,), start=start, end=end, micro_model=LIVE, cohort=cohort
    )
    expected = _direct_rows(project.id, start, end, "user.tier", cohort)
    # Traces i = 9..86 start in the window; the free tier is every third (i % 3 == 1).
    assert sum(r["n"] for r in expected if r["cohort"] == "") == 26
    assert shadow_agreement(filters, "user.tier") == expected


def test_the_windows_count_what_the_data_puts_in_them(mirrored):
    project, _ = mirrored
    base = _base()
    filters = metrics.Filters(
        project_ids=(project.id,),
        start=base + timedelta(hours=22, minutes=30),
        end=base + timedelta(days=1, hours=2, minutes=15),
        micro_model=LIVE,
    )
    # Traces start at 20 min + i x 47 min: i = 28..32 fall between 22:30 and 02:15.
    assert sum(r["n"] for r in shadow_agreement(filters)) == 5


def _rollup_rows() -> Counter:
    return Counter(
        {
            (r.width, r.bucket, r.project_id, r.micro_model, r.shadow_model, r.dim_key,
             r.dim_value, r.live_label, r.shadow_label, r.expected_label): r.n
            for r in ShadowPairRollup.objects.all()
        }
    )  # fmt: skip


def _grouped_pairs() -> Counter:
    """The rollup's rows as a direct GROUP BY over the pairs would give them."""
    keys = cohort_dimension_keys()
    rows: Counter = Counter()
    for p in ShadowPair.objects.all():
        dims = [("", "")] + [(k, p.cohort[k]) for k in keys if k in p.cohort]
        for dim_key, dim_value in dims:
            rest = (p.project_id, p.micro_model, p.shadow_model, dim_key, dim_value,
                    p.live_label, p.shadow_label, p.expected_label)  # fmt: skip
            rows[("h", p.hour, *rest)] += 1
            rows[("d", floor_day(p.hour), *rest)] += 1
    return rows


def test_the_rollup_equals_the_pairs_through_feedback_expiry_rebuild_and_resum(mirrored):
    project, traces = mirrored
    assert _rollup_rows() == _grouped_pairs()
    assert sum(n for k, n in _rollup_rows().items() if k[0] == "h" and k[5] == "") == TRACES

    # Feedback gives the live decision of two traces another expected label.
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {issue_api_key(project.id)}")
    for trace, label in ((traces[0], "other"), (traces[41], "billing")):
        body = {"trace_id": trace.trace_hex, "span_id": trace.spans[1].span_id.hex(),
                "expected_label": label}  # fmt: skip
        response = api.post("/api/v1/feedback/", body, format="json")
        assert response.status_code in (200, 201), response.content
    fold_changes()
    relabelled = ShadowPair.objects.get(trace_id=traces[0].trace_id)
    assert relabelled.expected_label == "other"
    assert _rollup_rows() == _grouped_pairs()

    # A late span moves a trace's start (and so its pair) to another hour and day.
    moved = traces[50]
    early = TraceBuilder(trace_id=moved.trace_id, start_ns=moved.start_ns - 26 * 3600 * 10**9)
    early.span("queue wait", duration_ms=5)
    store_spans(project.id, early.records())
    fold_changes()
    assert ShadowPair.objects.get(trace_id=moved.trace_id).hour == floor_hour(
        datetime.fromtimestamp(early.start_ns / 1e9, tz=UTC)
    )
    assert _rollup_rows() == _grouped_pairs()

    rebuild_all_rollups()
    assert _rollup_rows() == _grouped_pairs()
    resum_rollups()
    assert _rollup_rows() == _grouped_pairs()

    # Expiry in the middle of the second day: that day keeps its unexpired hours only.
    before = ShadowPair.objects.count()
    expire_before(_base() + timedelta(days=1, hours=13, minutes=30))
    assert 0 < ShadowPair.objects.count() < before
    assert _rollup_rows() == _grouped_pairs()


@pytest.mark.django_db(transaction=True)
def test_the_migration_fills_the_rollup_as_the_fold_does():
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    _seed()
    folded = _rollup_rows()
    assert folded == _grouped_pairs()

    executor = MigrationExecutor(connection)
    leaves = executor.loader.graph.leaf_nodes()
    executor.migrate([("dashboard", "0011_decision_fact_model_index_covers_cohort")])
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass('dashboard_shadowpairrollup')")
        assert cursor.fetchone() == (None,)
    executor = MigrationExecutor(connection)
    executor.migrate(leaves)

    assert _rollup_rows() == folded
