"""Evaluators chosen by what a span is: a label decision gets LabelCheck, generated text
with an input TaskCompletion, generated text where the trace retrieved context
Groundedness. What does not apply gets no job, or, judged anyway, "not applicable"."""

from __future__ import annotations

import importlib
from collections import Counter

import pytest
from django.apps import apps

from evaluators.models import EvaluationJob, EvaluationResult, MicroModel
from evaluators.sampling import not_applicable_reason
from evaluators.services import register_micro_model, run_evaluation_job

from .conftest import Tenant, classifier_trace, configure, generative_trace, schedule_all

pytestmark = pytest.mark.django_db


def _jobs() -> list[tuple[str, int]]:
    return sorted(Counter(EvaluationJob.objects.values_list("evaluator", flat=True)).items())


def test_an_auto_registered_classifier_gets_label_check_only(tenant: Tenant) -> None:
    for _ in range(30):
        tenant.store(classifier_trace(micro_model="tone-mini", expected="billing"))
    for _ in range(10):
        tenant.store(classifier_trace(micro_model="tone-mini"))  # no expected label yet

    result = schedule_all()

    model = MicroModel.objects.get(name="tone-mini")
    assert (model.auto_registered, model.task) == (True, "auto")
    assert _jobs() == [("label_check", 30)]
    # 40 label decisions x (TaskCompletion, Groundedness) + 10 without an expected label.
    assert result.not_applicable == 90


def test_an_auto_registered_generator_gets_task_completion_and_groundedness_where_context_exists(
    tenant: Tenant,
) -> None:
    register_micro_model(tenant.project_id, "answer-mini")
    MicroModel.objects.filter(name="answer-mini").update(sample_rate=100.0)
    for _ in range(3):
        tenant.store(generative_trace(micro_model="answer-mini"))
    for _ in range(2):
        tenant.store(generative_trace(micro_model="answer-mini", retriever=False))

    result = schedule_all()

    assert _jobs() == [("groundedness", 3), ("task_completion", 5)]
    # 5 spans without a label (no LabelCheck) + 2 traces without retrieved context.
    assert result.not_applicable == 7


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        ("classification", [("label_check", 2)]),
        ("routing", [("label_check", 2)]),
        ("safety", [("label_check", 2)]),
        ("generation", [("groundedness", 2), ("label_check", 2), ("task_completion", 2)]),
        ("auto", [("label_check", 2)]),
    ],
)
def test_a_configured_task_decides_what_its_labelled_spans_are(
    tenant: Tenant, task: str, expected: list
) -> None:
    configure(tenant.project_id, task=task)
    for _ in range(2):
        tenant.store(classifier_trace(expected="billing"))

    schedule_all()

    assert _jobs() == expected


def test_a_job_that_no_longer_applies_records_not_applicable(tenant: Tenant) -> None:
    model = configure(tenant.project_id, evaluators={"task_completion": 0.5})
    tenant.store(classifier_trace())
    [job_id] = schedule_all().job_ids
    # Scheduled as generated text; the micro model is then said to be a classifier.
    MicroModel.objects.filter(pk=model.pk).update(task="classification")

    assert run_evaluation_job(job_id).status == "done"

    result = EvaluationResult.objects.get()
    assert (result.score, result.passed, result.judge) == (None, None, "rule")
    assert result.reason == (
        "not applicable: a label decision is judged by LabelCheck, not as generated text"
    )


def test_the_migration_gives_auto_registered_classifiers_the_auto_task(tenant: Tenant) -> None:
    migration = importlib.import_module(
        "evaluators.migrations.0007_auto_registered_micro_models_choose_evaluators_per_span"
    )
    common = {"project_id": tenant.project_id}
    MicroModel.objects.create(name="seen", micro_model_name="seen", auto_registered=True, **common)
    MicroModel.objects.create(name="edited", micro_model_name="edited", **common)
    MicroModel.objects.create(
        name="seen-gen",
        micro_model_name="seen-gen",
        auto_registered=True,
        task="generation",
        **common,
    )

    migration.auto_registered_to_auto(apps, None)

    assert dict(MicroModel.objects.values_list("name", "task")) == {
        "seen": "auto",
        "edited": "classification",
        "seen-gen": "generation",
    }


@pytest.mark.parametrize(
    ("evaluator", "span", "reason"),
    [
        ("label_check", {"predicted_label": "billing", "expected_label": "refund"}, ""),
        ("label_check", {"predicted_label": "billing"}, "no expected label"),
        ("label_check", {"expected_label": "refund"}, "no predicted label"),
        ("task_completion", {"input_text": "q", "output_text": "a"}, ""),
        ("task_completion", {"output_text": "a"}, "no input to judge the output against"),
        ("task_completion", {"input_text": "q"}, "the span has no output"),
        (
            "task_completion",
            {"predicted_label": "billing", "input_text": "q", "output_text": "billing"},
            "a label decision is judged by LabelCheck, not as generated text",
        ),
        ("groundedness", {"output_text": "a", "has_context": True}, ""),
        ("groundedness", {"output_text": "a"}, "no retrieved context in the trace"),
    ],
)
def test_which_evaluator_applies_to_an_auto_span(evaluator: str, span: dict, reason: str) -> None:
    given = {
        "predicted_label": None,
        "expected_label": None,
        "input_text": None,
        "output_text": None,
        "has_context": False,
        **span,
    }
    assert not_applicable_reason(evaluator, task="auto", **given) == reason
