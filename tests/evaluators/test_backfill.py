from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from evaluators.models import EvaluationJob, EvaluationResult, EvaluatorConfig, MicroModel

from .conftest import Tenant, classifier_trace, configure

pytestmark = pytest.mark.django_db


def _backfill(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    start = (timezone.now() - timedelta(days=1)).isoformat()
    end = (timezone.now() + timedelta(days=1)).isoformat()
    call_command(
        "backfill_evaluations", "--start", start, "--end", end, *args, stdout=out, stderr=err
    )
    return out.getvalue(), err.getvalue()


def test_backfill_evaluates_the_range_and_reruns_after_a_threshold_change(tenant: Tenant) -> None:
    model = configure(tenant.project_id, evaluators={"label_check": 1.0, "task_completion": 0.5})
    for _ in range(3):
        tenant.store(classifier_trace(expected="billing"))  # not quiet yet: no matter

    out, err = _backfill()

    assert "traces: 3, new jobs: 6, jobs to re-run: 0" in out
    assert "evaluated: done: 6" in out
    assert "evaluations [" in err and "6/6 100%" in err
    assert EvaluationResult.objects.filter(passed=True).count() == 6

    EvaluatorConfig.objects.filter(micro_model=model, evaluator="task_completion").update(
        threshold=0.99
    )
    out, _ = _backfill("--evaluator", "task_completion", "--rerun")

    assert "new jobs: 0, jobs to re-run: 3" in out
    assert EvaluationResult.objects.count() == 6
    rerun = EvaluationResult.objects.filter(evaluator="task_completion")
    assert set(rerun.values_list("threshold", "passed")) == {(0.99, False)}
    assert set(EvaluationJob.objects.values_list("status", flat=True)) == {"done"}


def test_backfill_can_limit_to_one_micro_model(tenant: Tenant) -> None:
    configure(tenant.project_id, evaluators={"label_check": 1.0})
    configure(tenant.project_id, "tone-mini", evaluators={"label_check": 1.0})
    tenant.store(classifier_trace(expected="billing"))
    tenant.store(classifier_trace(expected="billing", micro_model="tone-mini"))

    out, _ = _backfill("--micro-model", "tone-mini")

    assert "new jobs: 1" in out
    assert list(EvaluationResult.objects.values_list("micro_model__name", flat=True)) == [
        "tone-mini"
    ]


def test_a_rerun_turns_verdicts_that_no_longer_apply_into_not_applicable(tenant: Tenant) -> None:
    # A classifier judged as generated text (what micro models registered from traffic got
    # before evaluators were chosen per span), then given its task.
    model = configure(tenant.project_id, evaluators={"label_check": 1.0, "task_completion": 0.5})
    for _ in range(2):
        tenant.store(classifier_trace(expected="billing"))
    _backfill()
    assert EvaluationResult.objects.filter(evaluator="task_completion", passed=True).count() == 2
    MicroModel.objects.filter(pk=model.pk).update(task="auto")

    out, _ = _backfill("--rerun")

    assert "new jobs: 0, jobs to re-run: 4" in out
    judged = EvaluationResult.objects.values_list("evaluator", "passed")
    assert sorted(judged) == [
        ("label_check", True),
        ("label_check", True),
        ("task_completion", None),
        ("task_completion", None),
    ]
