"""The scheduler, through its service functions, on real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from evaluators.models import EvaluationJob, EvaluationResult, MicroModel, SchedulerCursor
from evaluators.sampling import in_sample
from evaluators.services import record_feedback, run_evaluation_job, schedule_evaluations
from tests.builders import TraceBuilder, key_values

from .conftest import (
    Tenant,
    after_quiet,
    classifier_trace,
    configure,
    generative_trace,
    schedule_all,
)

pytestmark = pytest.mark.django_db


def _jobs(**filters) -> list[tuple[str, str, float]]:
    rows = EvaluationJob.objects.filter(**filters).order_by("evaluator")
    return [(bytes(j.span_id).hex(), j.evaluator, j.sampling_probability) for j in rows]


def test_an_unknown_micro_model_registers_itself_with_defaults(tenant: Tenant) -> None:
    traces = [classifier_trace(micro_model="tone-mini", expected="billing") for _ in range(40)]
    for trace in traces:
        tenant.store(trace)

    result = schedule_all()

    model = MicroModel.objects.get(project_id=tenant.project_id, name="tone-mini")
    assert (model.auto_registered, model.micro_model_name, model.sample_rate) == (
        True,
        "tone-mini",
        10.0,
    )
    assert sorted(model.evaluators.values_list("evaluator", "threshold", "enabled")) == [
        ("groundedness", 0.5, True),
        ("label_check", 1.0, True),
        ("task_completion", 0.5, True),
    ]
    assert result.models_registered == 1
    assert model.task == "auto"
    # Label decisions: LabelCheck on every span with an expected label, and neither
    # TaskCompletion nor Groundedness (they judged label outputs as text: noise).
    assert EvaluationJob.objects.filter(evaluator="label_check").count() == 40
    assert EvaluationJob.objects.exclude(evaluator="label_check").count() == 0


def test_an_auto_registered_generator_is_sampled_at_ten_percent(tenant: Tenant) -> None:
    traces = [generative_trace(micro_model="answer-mini") for _ in range(40)]
    for trace in traces:
        tenant.store(trace)

    schedule_all()

    sampled = sum(in_sample(t.trace_hex, 10.0) for t in traces)
    assert EvaluationJob.objects.filter(evaluator="task_completion").count() == sampled
    assert EvaluationJob.objects.filter(evaluator="groundedness").count() == sampled
    assert set(EvaluationJob.objects.values_list("sampling_probability", flat=True)) <= {0.1}


def test_a_trace_is_scheduled_only_once_quiet_even_when_spans_arrive_out_of_order(
    tenant: Tenant,
) -> None:
    configure(tenant.project_id, evaluators={"task_completion": 0.5})
    trace = classifier_trace()
    root, decision, retriever = trace.spans
    tenant.store(trace, [decision])

    assert schedule_evaluations(now=timezone.now()).jobs_created == 0

    tenant.store(trace, [retriever])
    tenant.store(trace, [root])  # the root, last as usual
    assert schedule_evaluations(now=timezone.now()).jobs_created == 0
    assert EvaluationJob.objects.count() == 0

    result = schedule_all()

    assert result.jobs_created == 1
    assert _jobs() == [(decision.span_id.hex(), "task_completion", 1.0)]


# Each batch commits on its own (a trace's updated_at is its batch's transaction time).
@pytest.mark.django_db(transaction=True)
def test_a_span_arriving_after_scheduling_gets_its_job_and_nothing_is_created_twice(
    tenant: Tenant,
) -> None:
    configure(tenant.project_id, evaluators={"task_completion": 0.5})
    trace = classifier_trace()
    tenant.store(trace)
    assert schedule_all().jobs_created == 1

    late = trace.span(
        "second-decision",
        attrs={"micro_model.name": "intent-mini", "input.value": "q", "output.value": "a"},
    )
    tenant.store(trace, [trace.spans[-1]])
    assert schedule_all().jobs_created == 1

    SchedulerCursor.objects.all().delete()  # a re-read from the start
    assert schedule_all().jobs_created == 0
    assert sorted(s for s, _, _ in _jobs()) == sorted([trace.spans[1].span_id.hex(), late.hex()])


def test_sampling_at_zero_percent_still_takes_the_always_rules(tenant: Tenant) -> None:
    configure(
        tenant.project_id,
        sample_rate=0.0,
        evaluators={"task_completion": 0.5},
        always_below_confidence=0.5,
        fallback_models=["gpt-large"],
    )
    plain = classifier_trace()
    failed = classifier_trace(error=True)
    unsure = classifier_trace(confidence=0.2)
    rescued = classifier_trace()
    rescued.span("fallback-llm", offset_ms=100, attrs={"gen_ai.request.model": "gpt-large"})
    for trace in (plain, failed, unsure, rescued):
        tenant.store(trace)

    schedule_all()

    jobs = {bytes(j.trace_id).hex(): j.sampling_probability for j in EvaluationJob.objects.all()}
    assert jobs == {failed.trace_hex: 1.0, unsure.trace_hex: 1.0, rescued.trace_hex: 1.0}


def test_the_hourly_budget_caps_model_based_jobs_not_label_checks(tenant: Tenant) -> None:
    configure(tenant.project_id, hourly_judge_budget=3)
    for _ in range(5):
        tenant.store(classifier_trace(expected="billing"))

    result = schedule_all()

    counts = {
        e: EvaluationJob.objects.filter(evaluator=e).count()
        for e in ("label_check", "task_completion", "groundedness")
    }
    assert counts == {"label_check": 5, "task_completion": 3, "groundedness": 0} or counts == {
        "label_check": 5,
        "task_completion": 2,
        "groundedness": 1,
    }
    assert result.skipped_over_budget == 7


def test_duplicate_delivery_runs_a_job_once_with_one_result(tenant: Tenant) -> None:
    configure(tenant.project_id, evaluators={"groundedness": 0.5})
    tenant.store(classifier_trace())
    [job_id] = schedule_all().job_ids

    first = run_evaluation_job(job_id, token="worker-a")
    second = run_evaluation_job(job_id, token="worker-b")

    assert (first.status, second.status) == ("done", "skipped")
    result = EvaluationResult.objects.get()
    # Groundedness is decided by the lexical part under either local judge (MiniLM or not),
    # whichever local judge this process loaded first.
    assert (result.job_id, result.passed, result.judge) == (job_id, True, "local-lexical")
    job = EvaluationJob.objects.get()
    assert (job.status, job.attempts) == ("done", 1)


def test_a_routing_decision_gets_no_task_completion(tenant: Tenant) -> None:
    configure(tenant.project_id, evaluators={"task_completion": 0.5}, task="routing")
    tenant.store(classifier_trace(answer="I'm sorry, but I cannot help with that."))

    result = schedule_all(after_quiet())

    assert (result.jobs_created, result.not_applicable) == (0, 1)


def test_a_generated_refusal_fails_task_completion(tenant: Tenant) -> None:
    configure(tenant.project_id, evaluators={"task_completion": 0.5})
    tenant.store(generative_trace(answer="I'm sorry, but I cannot help with that."))
    [job_id] = schedule_all(after_quiet()).job_ids

    assert run_evaluation_job(job_id).status == "done"

    result = EvaluationResult.objects.get()
    assert (result.passed, result.cohort) == (False, {"user.tier": "pro"})
    assert "refuses" in result.reason


def test_custom_label_and_confidence_attributes_are_read(tenant: Tenant) -> None:
    configure(
        tenant.project_id,
        sample_rate=0.0,
        evaluators={"label_check": 1.0, "task_completion": 0.5},
        label_attribute="intent.predicted",
        confidence_attribute="intent.score",
        always_below_confidence=0.5,
    )
    trace = classifier_trace(expected="billing", confidence=0.99)
    trace.spans[1].attributes.extend(
        key_values({"intent.predicted": "Billing", "intent.score": 0.1})
    )
    tenant.store(trace)

    for job_id in schedule_all().job_ids:
        run_evaluation_job(job_id)

    results = dict(EvaluationResult.objects.values_list("evaluator", "predicted_label"))
    assert results == {"label_check": "Billing", "task_completion": None}


def _shadowed_trace(*, confidence: float = 0.9) -> TraceBuilder:
    """classifier_trace with a candidate answering the same input as a mirrored call."""
    trace = classifier_trace(expected="billing", confidence=confidence)
    trace.span(
        "intent-classifier shadow",
        parent=trace.spans[0].span_id,
        offset_ms=6,
        attrs={
            "openinference.span.kind": "LLM",
            "micro_model.name": "intent-next",
            # A model name the live micro model's pattern matches too.
            "llm.model_name": "intent-mini-v3",
            "micro_model.label": "refund",
            "micro_model.expected_label": "billing",
            "micro_model.confidence": confidence,
            "input.value": "Why was I charged twice this month?",
            "output.value": "Refunds take 3 days.",
            "route.mirrored": True,
            "route.mirror_of": "intent-mini",
        },
    )
    return trace


def test_mirrored_shadow_spans_get_no_evaluation_jobs(tenant: Tenant) -> None:
    configure(
        tenant.project_id,
        model_pattern="intent-mini*",
        always_below_confidence=0.5,
    )
    sure, unsure = _shadowed_trace(), _shadowed_trace(confidence=0.2)
    for trace in (sure, unsure):
        tenant.store(trace)

    result = schedule_all()

    live = {trace.spans[1].span_id.hex() for trace in (sure, unsure)}
    jobs = {(bytes(j.span_id).hex(), j.evaluator) for j in EvaluationJob.objects.all()}
    assert jobs == {
        (span, evaluator)
        for span in live
        for evaluator in ("groundedness", "label_check", "task_completion")
    }
    # The candidate is not registered as a live micro model of its own either.
    assert result.models_registered == 0
    assert list(MicroModel.objects.values_list("name", flat=True)) == ["intent-mini"]


def test_trace_feedback_judges_the_live_decision_not_its_mirrored_shadow(
    tenant: Tenant,
) -> None:
    configure(tenant.project_id, model_pattern="intent-mini*")
    trace = _shadowed_trace()
    tenant.store(trace)

    outcome = record_feedback(
        [tenant.project_id], trace_id=trace.trace_hex, expected_label="billing"
    )

    assert [e.span_id for e in outcome.evaluations] == [trace.spans[1].span_id.hex()]
    assert list(EvaluationResult.objects.values_list("micro_model__name", "passed")) == [
        ("intent-mini", True)
    ]
    assert list(MicroModel.objects.values_list("name", flat=True)) == ["intent-mini"]


def test_a_job_is_stored_with_its_spans_ids_and_its_traces_cohort(tenant: Tenant) -> None:
    configure(tenant.project_id, evaluators={"task_completion": 0.5})
    trace = generative_trace(tier="enterprise")
    decision = next(s for s in trace.spans if s.name == "intent-classifier")
    tenant.store(trace)

    [job_id] = schedule_all(after_quiet()).job_ids

    job = EvaluationJob.objects.get(id=job_id)
    assert (bytes(job.trace_id), bytes(job.span_id)) == (trace.trace_id, decision.span_id)
    assert (job.evaluator, job.cohort, job.status) == (
        "task_completion",
        {"user.tier": "enterprise"},
        "pending",
    )
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert job.span_start_time == epoch + timedelta(
        microseconds=decision.start_time_unix_nano // 1000
    )
