"""An eval-fail-rate rule reads the very rows the metrics module answers, from real
evaluation results (evaluators' scheduler, jobs and the offline local judge)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from dashboard import metrics
from dashboard.alerts.evaluation import read_rule
from dashboard.alerts.models import AlertEvaluation, AlertState
from dashboard.alerts.services import evaluate_alert_rule
from dashboard.metrics.evaluations import fold_evaluations
from dashboard.metrics.refresh import fold_changes
from evaluators.services import run_evaluation_job, schedule_evaluations
from tests.builders import micro_model_trace
from tests.evaluators.conftest import classifier_trace, configure
from tracestore.services import store_spans

from .conftest import rule

pytestmark = pytest.mark.django_db


def _evaluated_traffic(project_id: int) -> None:
    for i in range(6):
        # Labels that disagree fail LabelCheck: two of three per tier.
        trace = micro_model_trace(
            tier=("free", "pro")[i % 2],
            fallback=True,
            label="billing",
            route="billing",
            expected="refund" if i < 4 else "billing",
        )
        store_spans(project_id, trace.records())
    fold_changes()
    for job_id in schedule_evaluations(now=timezone.now() + timedelta(minutes=10)).job_ids:
        run_evaluation_job(job_id)
    fold_evaluations()


def test_a_split_eval_fail_rate_rule_equals_the_metric_per_cohort_value(project) -> None:
    _evaluated_traffic(project.id)
    now = timezone.now() + timedelta(minutes=1)
    expected = metrics.compute(
        "eval-fail-rate",
        metrics.Filters((project.id,), now - timedelta(hours=1), now),
        group_by="user.tier",
    ).rows
    evaluator = expected[0]["evaluator"]
    r = rule(
        project.id,
        metric="eval-fail-rate",
        evaluator=evaluator,
        split_by="user.tier",
        min_n=1,
        threshold=0.5,
    )

    evaluate_alert_rule(r.id, now)

    got = {
        e.split_value: (e.value, e.n, e.low, e.high) for e in AlertEvaluation.objects.filter(rule=r)
    }
    assert got == {
        row["group"]: (row["rate"], row["n"], row["low"], row["high"])
        for row in expected
        if row["evaluator"] == evaluator
    }
    assert set(got) == {"free", "pro"}


def test_an_any_evaluator_rule_fires_when_one_evaluator_crosses(project) -> None:
    configure(project.id)  # every evaluator applies to these decisions
    for i in range(6):
        trace = classifier_trace(label="billing", expected="refund" if i < 4 else "billing")
        store_spans(project.id, trace.records())
    fold_changes()
    for job_id in schedule_evaluations(now=timezone.now() + timedelta(minutes=10)).job_ids:
        run_evaluation_job(job_id)
    fold_evaluations()
    now = timezone.now() + timedelta(minutes=1)
    rows = metrics.compute(
        "eval-fail-rate", metrics.Filters((project.id,), now - timedelta(hours=1), now)
    ).rows
    rates = {row["evaluator"]: (row["rate"], row["n"]) for row in rows}
    # LabelCheck fails 4 of 6 (expected refund, said billing); the grounded, complete
    # answers pass the other two.
    assert rates == {
        "groundedness": (0.0, 6),
        "label_check": (4 / 6, 6),
        "task_completion": (0.0, 6),
    }
    anyone = rule(
        project.id, name="any", metric="eval-fail-rate", evaluator="*", min_n=1, threshold=0.5
    )
    higher = rule(
        project.id, name="any, 70 %", metric="eval-fail-rate", evaluator="*", min_n=1, threshold=0.7
    )
    grounded = rule(
        project.id,
        name="groundedness",
        metric="eval-fail-rate",
        evaluator="groundedness",
        min_n=1,
        threshold=0.5,
    )

    for r in (anyone, higher, grounded):
        evaluate_alert_rule(r.id, now)

    states = dict(AlertState.objects.values_list("rule__name", "state"))
    assert states == {"any": "firing", "any, 70 %": "ok", "groundedness": "ok"}
    assert AlertEvaluation.objects.get(rule=anyone).value == 4 / 6
    [reading] = read_rule(anyone, now)
    assert (reading.evaluator, reading.n) == ("label_check", 6)
