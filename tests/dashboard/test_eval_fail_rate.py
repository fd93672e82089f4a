"""Eval fail rate by cohort from real evaluation results (evaluators' scheduler, jobs and
the offline local judge), through the metrics module, the API and the Cohorts page."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from dashboard import metrics
from dashboard.metrics.evaluations import fold_evaluations
from dashboard.metrics.refresh import fold_changes
from evaluators.judging import local_judge
from evaluators.services import run_evaluation_job, schedule_evaluations
from tests.builders import micro_model_trace
from tracestore.services import store_spans

pytestmark = pytest.mark.django_db


@pytest.fixture
def evaluated(project, settings):
    # The one-word answers are label decisions: LabelCheck alone judges them (the lexical
    # judge keeps any model-based evaluator offline and fast).
    settings.MICROLENS_LOCAL_JUDGE = "lexical"
    local_judge.cache_clear()
    for i in range(6):
        # Labels that disagree fail LabelCheck: two of three per tier.
        trace = micro_model_trace(
            tier=("free", "pro")[i % 2],
            fallback=True,
            label="billing",
            route="billing",
            expected="refund" if i < 4 else "billing",
        )
        store_spans(project.id, trace.records())
    fold_changes()
    result = schedule_evaluations(now=timezone.now() + timedelta(minutes=10))
    for job_id in result.job_ids:
        run_evaluation_job(job_id)
    fold_evaluations()
    yield project
    local_judge.cache_clear()


def test_fail_rates_come_per_evaluator_and_cohort_value_with_n(evaluated) -> None:
    now = timezone.now()
    filters = metrics.Filters((evaluated.id,), now - timedelta(hours=2), now + timedelta(hours=1))

    result = metrics.compute("eval-fail-rate", filters, group_by="user.tier")

    assert result.rows, result.notes
    assert {row["group"] for row in result.rows} == {"free", "pro"}
    for row in result.rows:
        assert row["n"] == 3
        assert 0 <= row["failed"] <= row["n"]
        assert row["low"] <= row["rate"] <= row["high"]
        assert row["small_n"] is True


def test_the_cohorts_page_draws_the_heatmap(evaluated, member_client: Client) -> None:
    html = member_client.get("/cohorts/?dimension=user.tier&range=24h").content.decode()

    assert 'id="eval-heatmap" type="application/json"' in html
    assert "n=3" in html


def test_a_heatmap_cell_links_to_its_failing_traces(evaluated, member_client: Client) -> None:
    from evaluators.queries import list_evaluations

    failing = {
        view.trace_id
        for view in list_evaluations([evaluated.id], limit=100, passed=False).results
        if view.cohort.get("user.tier") == "free"
    }
    assert failing

    url = "/?failed_evaluator=any&cohort.user.tier=free&range=24h"
    html = member_client.get(url).content.decode()

    listed = {t for t in failing if f"/traces/{t}/" in html}
    assert listed == failing
    assert html.count('href="/traces/') == len(failing)


def test_the_trace_page_shows_its_evaluations_with_reasons(
    evaluated, member_client: Client
) -> None:
    from evaluators.queries import list_evaluations

    view = list_evaluations([evaluated.id], limit=1).results[0]

    html = member_client.get(f"/traces/{view.trace_id}/").content.decode()

    assert f"{view.evaluator}: " in html
    assert view.reason.replace("'", "&#x27;").replace('"', "&quot;") in html
