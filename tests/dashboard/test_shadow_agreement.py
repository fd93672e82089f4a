"""Shadow vs live agreement: mirrored spans pair with the live decision of their trace,
count in no live figure, and give the agreement, the live x shadow matrix and the paired
accuracy difference per cohort (known answers computed here from the designed data)."""

from __future__ import annotations

import math
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from dashboard import metrics
from dashboard.metrics.refresh import expire_before, fold_changes, rebuild_all_rollups
from dashboard.metrics.shadow import newcombe_paired_interval, shadow_agreement
from dashboard.models import ShadowPair
from tests.builders import TraceBuilder
from tracestore.services import create_project, issue_api_key, store_spans

pytestmark = pytest.mark.django_db

LIVE, SHADOW = "intent-mini", "intent-next"
# (tier, live label, shadow label, expected label or None, how many)
DESIGN = [
    ("enterprise", "billing", "billing", "billing", 10),  # both right
    ("enterprise", "refund", "billing", "billing", 4),  # only the shadow right
    ("enterprise", "billing", "refund", "billing", 1),  # only the live right
    ("enterprise", "refund", "refund", "billing", 3),  # both wrong, agreeing
    ("enterprise", "billing", "billing", None, 2),  # no expected label
    ("free", "billing", "billing", "billing", 6),
    ("free", "billing", "refund", "refund", 2),
    ("free", "refund", "billing", "refund", 2),
]


def _trace(tier: str, live: str, shadow: str, expected: str | None) -> TraceBuilder:
    trace = TraceBuilder()
    root = trace.span("POST /chat", duration_ms=900, attrs={"user.tier": tier})
    attrs: dict[str, Any] = {
        "micro_model.name": LIVE,
        "micro_model.label": live,
        "micro_model.confidence": 0.8,
        "route.name": live,
    }
    if expected:
        attrs["micro_model.expected_label"] = expected
    trace.span("intent-classifier", parent=root, offset_ms=5, attrs=attrs)
    trace.span(
        "intent-classifier shadow",
        parent=root,
        offset_ms=6,
        attrs={
            "micro_model.name": SHADOW,
            "micro_model.label": shadow,
            "micro_model.confidence": 0.7,
            "route.mirrored": True,
            "route.mirror_of": LIVE,
        },
    )
    return trace


@pytest.fixture
def shadowed():
    project = create_project("shop")
    for tier, live, shadow, expected, count in DESIGN:
        for _ in range(count):
            trace = _trace(tier, live, shadow, expected)
            # The shadow span first, in its own batch: pairing must not depend on order.
            store_spans(project.id, trace.records(trace.spans[2:]))
            store_spans(project.id, trace.records(trace.spans[:2]))
    # A shadow whose live decision never came, and one mirroring another micro model.
    orphan = _trace("free", "billing", "refund", "billing")
    store_spans(project.id, orphan.records([orphan.spans[0], orphan.spans[2]]))
    other = _trace("free", "billing", "refund", "billing")
    other.spans[2].attributes[-1].value.string_value = "router-mini"
    store_spans(project.id, other.records())
    fold_changes()
    return project


def _filters(project, **changes) -> metrics.Filters:
    now = timezone.now()
    return metrics.Filters(
        project_ids=(project.id,),
        start=now - timedelta(hours=2),
        end=now + timedelta(minutes=5),
        **changes,
    )


def _expected_cells(tier: str | None) -> Counter:
    cells: Counter = Counter()
    for t, live, shadow, expected, count in DESIGN:
        if tier is None or t == tier:
            cells[(live, shadow, expected)] += count
    return cells


def _newcombe(both: int, first: int, second: int, neither: int) -> tuple[float, float]:
    # Newcombe (1998), method 10, written out from the paper's formulas.
    z = 1.959963984540054
    n = both + first + second + neither

    def wilson(x: int) -> tuple[float, float]:
        p = x / n
        a = 2 * n * p + z * z
        b = z * math.sqrt(z * z + 4 * n * p * (1 - p))
        return (a - b) / (2 * (n + z * z)), (a + b) / (2 * (n + z * z))

    p1, p2 = (both + first) / n, (both + second) / n
    (l1, u1), (l2, u2) = wilson(both + first), wilson(both + second)
    e, f = both + first, second + neither
    g, h = both + second, first + neither
    phi = (both * neither - first * second) / math.sqrt(e * f * g * h)
    d = p1 - p2
    return (
        d - math.sqrt((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2),
        d + math.sqrt((u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2),
    )


def test_mirrored_spans_are_not_live_decisions(shadowed):
    f = _filters(shadowed)
    live_n = sum(count for *_, count in DESIGN)
    by_model = {r["group"]: r["n"] for r in metrics.fallback_rate(f, "micro_model").rows if r["n"]}
    # The orphan's and the other trace's traces count as traces, not as decisions.
    assert by_model == {LIVE: live_n + 1}
    quality = metrics.label_quality(f.with_(micro_model=LIVE)).rows[0]
    assert quality["n"] == live_n + 1 - 2  # the live decisions with an expected label


@pytest.mark.parametrize("tier", [None, "enterprise", "free"])
def test_agreement_matrix_and_paired_difference_per_cohort(shadowed, tier):
    rows = shadow_agreement(_filters(shadowed, micro_model=LIVE), "user.tier")
    row = next(r for r in rows if r["cohort"] == (tier or ""))
    cells = _expected_cells(tier)
    n = sum(cells.values())
    agree = sum(c for (live, shadow, _), c in cells.items() if live == shadow)
    assert row["shadow_model"] == SHADOW
    assert (row["n"], row["agreement"]["successes"]) == (n, agree)
    assert row["agreement"]["rate"] == pytest.approx(agree / n)
    assert (row["agreement"]["low"], row["agreement"]["high"]) == pytest.approx(
        metrics.wilson_interval(agree, n)
    )
    labels = ["billing", "refund"]
    matrix = [
        [sum(c for (lv, sh, _), c in cells.items() if (lv, sh) == (a, b)) for b in labels]
        for a in labels
    ]
    assert row["matrix"] == {"labels": labels, "live_by_shadow": matrix}

    labelled = {k: c for k, c in cells.items() if k[2]}
    both = sum(c for (lv, sh, ex), c in labelled.items() if lv == ex and sh == ex)
    shadow_only = sum(c for (lv, sh, ex), c in labelled.items() if sh == ex != lv)
    live_only = sum(c for (lv, sh, ex), c in labelled.items() if lv == ex != sh)
    neither = sum(labelled.values()) - both - shadow_only - live_only
    m = sum(labelled.values())
    assert row["with_expected_label"] == m
    assert row["live_accuracy"]["rate"] == pytest.approx((both + live_only) / m)
    assert row["shadow_accuracy"]["rate"] == pytest.approx((both + shadow_only) / m)
    difference = row["difference"]
    assert difference["value"] == pytest.approx((shadow_only - live_only) / m)
    assert (difference["low"], difference["high"]) == pytest.approx(
        _newcombe(both, shadow_only, live_only, neither)
    )


def test_enterprise_known_answer():
    # Designed enterprise figures: 18 labelled pairs, shadow right 14, live right 11.
    assert newcombe_paired_interval(10, 4, 1, 3) == pytest.approx(_newcombe(10, 4, 1, 3))
    low, high = newcombe_paired_interval(10, 4, 1, 3)
    assert low < 3 / 18 < high
    assert newcombe_paired_interval(0, 0, 0, 0) is None


def test_shadow_endpoint_answers_per_cohort_and_refuses_a_bad_split(shadowed):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {issue_api_key(shadowed.id)}")
    response = api.get(f"/api/v1/micro-models/{LIVE}/shadow/", {"group_by": "user.tier"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["micro_model"] == LIVE
    assert [(r["cohort"], r["n"]) for r in body["results"]] == [
        ("", 30),
        ("enterprise", 20),
        ("free", 10),
    ]
    response = api.get(f"/api/v1/micro-models/{LIVE}/shadow/", {"group_by": "colour"})
    assert response.status_code == 400
    assert "not a cohort dimension" in response.content.decode()


def test_the_micro_model_page_shows_the_paired_difference(shadowed):
    user = get_user_model().objects.create_user("ana", password="pw-for-tests-1")
    user.projects.add(shadowed.id)
    client = Client()
    client.force_login(user)
    html = client.get(f"/micro-models/{LIVE}/?dimension=user.tier").content.decode()
    assert 'id="shadow"' in html
    # enterprise: 18 labelled pairs, shadow right on 4 the live missed, live on 1: +16.7 pp.
    assert "+16.7 pp" in html
    assert 'id="shadow-matrix-0"' in html


def test_a_shadow_pairs_once_its_live_decision_arrives_and_leaves_with_retention():
    project = create_project("shop")
    trace = _trace("free", "billing", "refund", "billing")
    store_spans(project.id, trace.records([trace.spans[0], trace.spans[2]]))
    fold_changes()
    assert ShadowPair.objects.count() == 0  # no live decision to pair with yet

    store_spans(project.id, trace.records([trace.spans[1]]))
    fold_changes()
    rebuild_all_rollups()  # folding again changes nothing
    [pair] = ShadowPair.objects.all()
    assert (pair.micro_model, pair.shadow_model) == (LIVE, SHADOW)
    assert (pair.live_label, pair.shadow_label, pair.expected_label) == (
        "billing",
        "refund",
        "billing",
    )
    assert pair.cohort == {"user.tier": "free"}

    expire_before(timezone.now() + timedelta(hours=2))
    assert ShadowPair.objects.count() == 0
