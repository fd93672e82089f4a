"""Beside each eval fail rate: how many evaluations it is over and how many are still
pending in the window; and "not applicable" verdicts count in no rate, rollup or alert."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from dashboard import metrics
from dashboard.alerts.models import AlertEvaluation
from dashboard.alerts.services import evaluate_alert_rule
from dashboard.metrics.evaluations import fold_evaluations
from dashboard.metrics.refresh import fold_changes
from dashboard.models import EvalRollup
from evaluators.contracts import EvaluationRecord
from evaluators.models import EvaluationJob
from evaluators.services import import_evaluation_results, run_evaluation_job
from tests.alerts.conftest import rule
from tests.evaluators.conftest import configure, generative_trace, schedule_all
from tracestore.services import issue_api_key, store_spans

pytestmark = pytest.mark.django_db

# (evaluator, passed) of one micro model's verdicts; None: not applicable.
VERDICTS = [
    *[("task_completion", True)] * 3,
    ("task_completion", False),
    *[("task_completion", None)] * 4,
    ("label_check", True),
    *[("label_check", False)] * 2,
    *[("label_check", None)] * 3,
]


def _hour() -> datetime:
    return timezone.now().astimezone(UTC).replace(minute=0, second=0, microsecond=0)


@pytest.fixture
def verdicts(project):
    at = _hour() - timedelta(hours=2) + timedelta(minutes=20)
    records = [
        EvaluationRecord(
            trace_id=i.to_bytes(16, "big"),
            span_id=i.to_bytes(8, "big"),
            span_start_time=at,
            micro_model="intent-mini",
            evaluator=evaluator,
            score=None if passed is None else (0.9 if passed else 0.1),
            passed=passed,
            threshold=0.5,
            reason="not applicable: no expected label" if passed is None else "judged",
            judge="exact",
            latency_ms=1.0,
            sampling_probability=1.0,
            cohort={"user.tier": "pro"},
        )
        for i, (evaluator, passed) in enumerate(VERDICTS, start=1)
    ]
    assert import_evaluation_results(project.id, records) == 14
    fold_evaluations()
    return project


def _rates(result: metrics.MetricResult) -> dict[str, tuple]:
    return {r["evaluator"]: (r["failed"], r["evaluated"], r["rate"]) for r in result.rows}


def test_not_applicable_verdicts_count_in_no_rollup_or_rate(verdicts) -> None:
    hour = _hour() - timedelta(hours=2)
    whole = metrics.Filters((verdicts.id,), hour, hour + timedelta(hours=1))
    ragged = metrics.Filters(
        (verdicts.id,), hour + timedelta(minutes=10), hour + timedelta(minutes=50)
    )

    rolled = dict(
        EvalRollup.objects.filter(width="h", dim_key="").values_list("evaluator", "evaluated")
    )

    assert rolled == {"task_completion": 4, "label_check": 3}
    expected = {"label_check": (2, 3, 2 / 3), "task_completion": (1, 4, 0.25)}
    assert _rates(metrics.eval_fail_rate(whole)) == expected
    assert _rates(metrics.eval_fail_rate(ragged)) == expected
    assert _rates(metrics.eval_fail_rate(whole, "user.tier")) == expected


def test_not_applicable_verdicts_do_not_trip_an_alert(verdicts) -> None:
    # Counted as failures, the 4 not-applicable TaskCompletion verdicts would make 5 / 8.
    r = rule(
        verdicts.id,
        metric="eval-fail-rate",
        evaluator="task_completion",
        window_seconds=4 * 3600,
        min_n=1,
        threshold=0.5,
    )

    evaluate_alert_rule(r.id, timezone.now())

    [reading] = AlertEvaluation.objects.filter(rule=r)
    assert (reading.value, reading.n, reading.breached) == (0.25, 4, False)


@pytest.fixture
def half_run(project):
    configure(project.id, "answer-mini", evaluators={"task_completion": 0.5, "groundedness": 0.5})
    tiers = ["pro", "pro", "pro", "free", "free"]
    for tier in tiers:
        trace = generative_trace(micro_model="answer-mini", tier=tier)
        store_spans(project.id, trace.records())
    fold_changes()
    job_ids = schedule_all().job_ids
    assert len(job_ids) == 10
    # Two TaskCompletion verdicts (one per tier) have run; the rest is still pending.
    run = {}
    for job in EvaluationJob.objects.filter(evaluator="task_completion").order_by("id"):
        tier = job.cohort["user.tier"]
        if tier not in run:
            run[tier] = job.id
            assert run_evaluation_job(job.id).status == "done"
    fold_evaluations()
    return project


def _window(project) -> metrics.Filters:
    now = timezone.now()
    return metrics.Filters((project.id,), now - timedelta(hours=1), now + timedelta(minutes=5))


def test_each_rate_comes_with_its_evaluated_and_pending_counts(half_run) -> None:
    by_model = metrics.eval_fail_rate(_window(half_run), "micro_model").rows
    by_tier = metrics.eval_fail_rate(_window(half_run), "user.tier").rows

    assert [(r["evaluator"], r["group"], r["evaluated"], r["pending"]) for r in by_model] == [
        ("groundedness", "answer-mini", 0, 5),
        ("task_completion", "answer-mini", 2, 3),
    ]
    assert by_model[0]["rate"] is None
    assert [(r["evaluator"], r["group"], r["evaluated"], r["pending"]) for r in by_tier] == [
        ("groundedness", "free", 0, 2),
        ("groundedness", "pro", 0, 3),
        ("task_completion", "free", 1, 1),
        ("task_completion", "pro", 1, 2),
    ]


def test_the_api_and_overview_show_evaluated_and_pending(half_run, member_client: Client) -> None:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {issue_api_key(half_run.id)}")
    now = timezone.now()
    window = {
        "start": (now - timedelta(hours=1)).isoformat(),
        "end": (now + timedelta(minutes=5)).isoformat(),
        "group_by": "micro_model",
    }

    rows = api.get("/api/v1/metrics/eval-fail-rate/", window).json()["results"]
    html = member_client.get("/overview/?range=24h").content.decode()

    assert [(r["evaluator"], r["n"], r["evaluated"], r["pending"]) for r in rows] == [
        ("groundedness", 0, 0, 5),
        ("task_completion", 2, 2, 3),
    ]
    assert "(2 evaluated, 3 pending)" in html
    assert "(0 evaluated, 5 pending)" in html
