"""The confidence-threshold optimiser on designed data: per threshold the accuracy of the
decisions kept, the share escalated and the cost per 1,000 decisions from the observed
fallback cost, and the cheapest threshold meeting a target (known answers computed here)."""

from __future__ import annotations

import random
import time
from datetime import date, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from dashboard import metrics
from dashboard.metrics import thresholds
from dashboard.metrics.refresh import fold_changes
from dashboard.metrics.thresholds import STEPS, parse_target, threshold_table
from dashboard.models import ModelPrice
from tests.builders import TraceBuilder
from tracestore.services import create_project, issue_api_key, store_spans

pytestmark = pytest.mark.django_db

# Micro model: 1,000 prompt tokens at $1/M -> $0.001 a decision; the fallback: 1,000 prompt
# tokens at $10/M -> $0.01 more for each escalated trace, twice that on enterprise.
MICRO_COST = 0.001
FALLBACK_COST = {"enterprise": 0.02, "free": 0.01}
FALLBACK_TOKENS = {"enterprise": 2000, "free": 1000}


def _trace(
    tier: str, confidence: float, right: bool, fallback: bool, start_ns: int | None = None
) -> TraceBuilder:
    trace = TraceBuilder() if start_ns is None else TraceBuilder(start_ns=start_ns)
    root = trace.span("POST /chat", attrs={"user.tier": tier})
    trace.span(
        "intent-classifier",
        parent=root,
        attrs={
            "micro_model.name": "intent-mini",
            "llm.model_name": "intent-mini-v2",
            "micro_model.label": "billing",
            "micro_model.expected_label": "billing" if right else "refund",
            "micro_model.confidence": confidence,
            "llm.token_count.prompt": 1000,
            "llm.token_count.completion": 0,
        },
    )
    if fallback:
        trace.span(
            "fallback-llm",
            parent=root,
            offset_ms=50,
            attrs={
                "gen_ai.request.model": "gpt-large",
                "gen_ai.usage.input_tokens": FALLBACK_TOKENS[tier],
                "gen_ai.usage.output_tokens": 0,
                "route.fallback": True,
            },
        )
    return trace


def _design() -> list[tuple[str, float, bool, bool]]:
    """Confidence drawn on a 0.01 grid; the chance of being right grows with it, faster for
    enterprise. Low-confidence decisions went to the fallback in production."""
    rng = random.Random(17)
    rows = []
    for tier, slope in (("enterprise", 1.0), ("free", 0.7)):
        for _ in range(150):
            confidence = rng.randrange(30, 101) / 100
            right = rng.random() < slope * confidence + (1 - slope) * 0.5
            rows.append((tier, confidence, right, confidence < 0.5))
    return rows


@pytest.fixture
def decided():
    project = create_project("shop")
    day = date(2020, 1, 1)
    ModelPrice.objects.create(
        model_pattern="intent-mini*",
        effective_from=day,
        input_per_million=1,
        output_per_million=1,
    )
    ModelPrice.objects.create(
        model_pattern="gpt-large", effective_from=day, input_per_million=10, output_per_million=10
    )
    design = _design()
    records = [r for row in design for r in _trace(*row).records()]
    store_spans(project.id, records)
    fold_changes()
    return project, design


def _filters(project, **changes) -> metrics.Filters:
    now = timezone.now()
    return metrics.Filters(
        project_ids=(project.id,),
        start=now - timedelta(hours=2),
        end=now + timedelta(minutes=5),
        micro_model="intent-mini",
        **changes,
    )


def _fallback_cost(design, tier: str | None) -> float:
    """The mean extra cost of an escalated trace: the tier's own when both of its sides
    have 30 traces, else over every tier."""
    rows = [r for r in design if r[0] == tier]
    escalated = sum(r[3] for r in rows)
    if tier is not None and min(escalated, len(rows) - escalated) >= 30:
        return FALLBACK_COST[tier]
    costs = [FALLBACK_COST[r[0]] for r in design if r[3]]
    return sum(costs) / len(costs)


def _expected(design, tier: str | None, threshold: float) -> dict:
    rows = [r for r in design if tier is None or r[0] == tier]
    kept = [r for r in rows if r[1] >= threshold - 1e-12]
    correct = sum(r[2] for r in kept)
    share = (len(rows) - len(kept)) / len(rows)
    return {
        "kept": len(kept),
        "correct": correct,
        "escalated_share": share,
        "cost_per_1000": 1000 * (MICRO_COST + share * _fallback_cost(design, tier)),
    }


@pytest.mark.parametrize("tier", [None, "enterprise", "free"])
def test_each_threshold_counts_kept_accuracy_share_escalated_and_cost(decided, tier):
    project, design = decided
    table = threshold_table(_filters(project), 0.9, "user.tier")
    assert table["costs"]["cost_kept"] == pytest.approx(MICRO_COST)
    assert table["costs"]["fallback_cost"] == pytest.approx(_fallback_cost(design, None))
    cohort = next(c for c in table["cohorts"] if c["cohort"] == (tier or ""))
    # The design gives each tier more than 30 escalated traces: each has its own costs.
    assert cohort["cost_basis"] == ("cohort" if tier else "all")
    assert cohort["n"] == len([r for r in design if tier is None or r[0] == tier])
    assert len(cohort["thresholds"]) == STEPS
    for row in cohort["thresholds"]:
        expected = _expected(design, tier, row["threshold"])
        assert (row["kept"], row["correct"]) == (expected["kept"], expected["correct"])
        assert row["escalated_share"] == pytest.approx(expected["escalated_share"])
        assert row["cost_per_1000"] == pytest.approx(expected["cost_per_1000"])
        if row["kept"]:
            assert (row["low"], row["high"]) == pytest.approx(
                metrics.wilson_interval(row["correct"], row["kept"])
            )
    # The cheapest threshold meeting 90 %: the lowest whose kept accuracy reaches it.
    meeting = [
        k / STEPS
        for k in range(STEPS)
        if (e := _expected(design, tier, k / STEPS))["kept"] and e["correct"] / e["kept"] >= 0.9
    ]
    if meeting:
        assert cohort["best"]["threshold"] == pytest.approx(min(meeting))
    else:
        assert cohort["best"] is None


def test_the_target_decides_the_threshold_and_the_api_answers_it(decided):
    project, design = decided
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {issue_api_key(project.id)}")
    url = "/api/v1/micro-models/intent-mini/thresholds/"
    response = api.get(url, {"target": "85%", "group_by": "user.tier"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["target"] == pytest.approx(0.85)
    assert [c["cohort"] for c in body["cohorts"]] == ["", "enterprise", "free"]
    enterprise = body["cohorts"][1]
    best = enterprise["best"]
    expected = _expected(design, "enterprise", best["threshold"])
    assert best["correct"] / best["kept"] >= 0.85
    assert (best["kept"], best["correct"]) == (expected["kept"], expected["correct"])
    assert best["threshold"] > 0  # the design keeps too many wrong decisions at 0
    lower = _expected(design, "enterprise", best["threshold"] - 1 / STEPS)
    assert lower["correct"] / lower["kept"] < 0.85
    for bad in ("1.5", "0", "abc"):
        response = api.get(url, {"target": bad})
        assert response.status_code == 400, bad
        assert "target" in response.content.decode()


@pytest.mark.parametrize(
    ("value", "target"), [(None, 0.95), ("0.9", 0.9), ("97.5%", 0.975), ("1", 1.0)]
)
def test_target_reads_a_fraction_or_a_percentage(value, target):
    assert parse_target(value) == pytest.approx(target)


def test_the_micro_model_page_shows_the_chosen_threshold_and_the_frontier(decided):
    project, _ = decided
    user = get_user_model().objects.create_user("ana", password="pw-for-tests-1")
    user.projects.add(project.id)
    client = Client()
    client.force_login(user)
    response = client.get("/micro-models/intent-mini/?dimension=user.tier&target=85%25")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="thresholds"' in html
    assert 'value="85.0%"' in html
    assert 'id="threshold-frontier"' in html  # the figure's data
    enterprise = threshold_table(_filters(project), 0.85, "user.tier")["cohorts"][1]
    assert f'<td class="num">{enterprise["best"]["threshold"]:.2f}</td>' in html
    response = client.get("/micro-models/intent-mini/?target=2")
    assert response.status_code == 400


@pytest.mark.parametrize("both_projects", [False, True])
def test_unit_costs_are_over_the_newest_traces_of_every_project_asked_for(
    decided, monkeypatch, both_projects
):
    project, design = decided
    other = create_project("other")
    # Four enterprise traces in the other project, a minute newer than any of shop's.
    newer = [True, False, True, False]  # escalated?
    start = time.time_ns() + 60 * 10**9
    records = [
        r
        for i, fallback in enumerate(newer)
        for r in _trace("enterprise", 0.9, True, fallback, start + i * 10**9).records()
    ]
    store_spans(other.id, records)
    fold_changes()
    monkeypatch.setattr(thresholds, "COST_SAMPLE", 4)
    projects = (project.id, other.id) if both_projects else (project.id,)
    costs = threshold_table(_filters(project).with_(project_ids=projects))["costs"]
    if both_projects:
        # The sample is the other project's four: $0.001 kept, $0.02 more escalated.
        expected = {"kept": 2, "escalated": 2, "fallback_cost": FALLBACK_COST["enterprise"]}
    else:
        # Shop's four newest: its design's last four traces (stored in design order).
        last = design[-4:]
        escalated = sum(r[3] for r in last)
        expected = {
            "kept": 4 - escalated,
            "escalated": escalated,
            "fallback_cost": _fallback_cost(last, None) if 0 < escalated < 4 else None,
        }
    assert costs["kept_traces"] == expected["kept"]
    assert costs["escalated_traces"] == expected["escalated"]
    if expected["fallback_cost"] is None:
        assert costs["fallback_cost"] is None
    else:
        assert costs["fallback_cost"] == pytest.approx(expected["fallback_cost"])
        assert costs["cost_kept"] == pytest.approx(MICRO_COST)
