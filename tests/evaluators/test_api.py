"""Evaluations through the API: filters, project isolation, cursor pages, evaluations in
the trace detail, and late feedback flipping a LabelCheck result without double counting."""

from __future__ import annotations

import pytest

from evaluators.models import EvaluationResult, Feedback
from evaluators.services import run_evaluation_job

from .conftest import Tenant, classifier_trace, configure, generative_trace, schedule_all

pytestmark = pytest.mark.django_db


def _evaluate(tenant: Tenant, traces: list) -> None:
    for trace in traces:
        tenant.store(trace)
    for job_id in schedule_all().job_ids:
        assert run_evaluation_job(job_id).status == "done"


def test_the_list_filters_and_stays_inside_the_callers_project(
    tenant: Tenant, other_tenant: Tenant
) -> None:
    configure(tenant.project_id)
    configure(other_tenant.project_id)
    good = classifier_trace(expected="billing")
    wrong = classifier_trace(expected="refund")
    _evaluate(tenant, [good, wrong])
    _evaluate(other_tenant, [classifier_trace(expected="billing")])
    client = tenant.client()

    everything = client.get("/api/v1/evaluations/").json()["results"]
    failed_labels = client.get(
        "/api/v1/evaluations/", {"evaluator": "label_check", "passed": "false"}
    ).json()["results"]
    one_trace = client.get("/api/v1/evaluations/", {"trace_id": good.trace_hex}).json()
    by_model = client.get("/api/v1/evaluations/", {"micro_model": "nope"}).json()

    assert len(everything) == 6
    assert {r["project_id"] for r in everything} == {tenant.project_id}
    assert [(r["trace_id"], r["expected_label"], r["passed"]) for r in failed_labels] == [
        (wrong.trace_hex, "refund", False)
    ]
    assert {r["evaluator"] for r in one_trace["results"]} == {
        "label_check",
        "task_completion",
        "groundedness",
    }
    assert by_model["results"] == []
    other_trace = other_tenant.client().get("/api/v1/evaluations/").json()["results"][0]
    assert (
        client.get("/api/v1/evaluations/", {"trace_id": other_trace["trace_id"]}).json()["results"]
        == []
    )


def test_cursor_pages_return_every_evaluation_once(tenant: Tenant) -> None:
    configure(tenant.project_id, evaluators={"label_check": 1.0})
    _evaluate(tenant, [classifier_trace(expected="billing") for _ in range(7)])
    client = tenant.client()

    seen, url = [], "/api/v1/evaluations/?limit=3"
    while url:
        page = client.get(url).json()
        seen += [r["id"] for r in page["results"]]
        url = page["next"]

    assert sorted(seen) == sorted(EvaluationResult.objects.values_list("id", flat=True))
    assert len(seen) == 7


@pytest.mark.parametrize(
    "query",
    [{"evaluator": "vibes"}, {"trace_id": "xyz"}, {"cursor": "nonsense"}, {"start": "yesterday"}],
)
def test_bad_filters_are_a_400_with_a_message(tenant: Tenant, query: dict) -> None:
    response = tenant.client().get("/api/v1/evaluations/", query)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"


def test_the_trace_detail_carries_each_spans_evaluations(tenant: Tenant) -> None:
    configure(tenant.project_id)
    trace = classifier_trace(expected="billing")
    _evaluate(tenant, [trace])

    body = tenant.client().get(f"/api/v1/traces/{trace.trace_hex}/").json()

    by_span = {s["name"]: s["evaluations"] for s in body["spans"]}
    assert by_span["POST /chat"] == [] and by_span["retrieve"] == []
    assert sorted((e["evaluator"], e["passed"]) for e in by_span["intent-classifier"]) == [
        ("groundedness", True),
        ("label_check", True),
        ("task_completion", True),
    ]


def test_late_feedback_flips_the_label_check_and_counts_once(tenant: Tenant) -> None:
    configure(tenant.project_id, evaluators={"label_check": 1.0}, label_synonyms={})
    trace = classifier_trace(label="billing", expected="billing")
    _evaluate(tenant, [trace])
    decision = trace.spans[1].span_id.hex()
    client = tenant.client()
    assert EvaluationResult.objects.get().passed is True

    wrong = client.post(
        "/api/v1/feedback/",
        {"trace_id": trace.trace_hex, "expected_label": "refund", "comment": "customer said so"},
        format="json",
    )
    again = client.post(
        "/api/v1/feedback/",
        {"trace_id": trace.trace_hex, "expected_label": "refund", "author": "ana"},
        format="json",
    )

    assert wrong.status_code == 201 and again.status_code == 200
    [evaluation] = again.json()["evaluations"]
    assert (evaluation["span_id"], evaluation["passed"], evaluation["source"]) == (
        decision,
        False,
        "feedback",
    )
    assert evaluation["reason"] == "predicted 'billing', expected 'refund'"
    assert EvaluationResult.objects.count() == 1
    assert Feedback.objects.get().author == "ana"

    # A thumbs up on the span itself wins over the trace-level label.
    up = client.post(
        "/api/v1/feedback/",
        {"trace_id": trace.trace_hex, "span_id": decision, "thumbs_up": True},
        format="json",
    )
    assert up.json()["evaluations"][0]["passed"] is True
    assert EvaluationResult.objects.count() == 1
    listed = client.get("/api/v1/evaluations/", {"evaluator": "label_check"}).json()["results"]
    assert len(listed) == 1


def test_feedback_before_any_evaluation_creates_the_label_check(tenant: Tenant) -> None:
    trace = classifier_trace(label="refund")  # no expected label, model not configured
    tenant.store(trace)

    response = tenant.client().post(
        "/api/v1/feedback/",
        {"trace_id": trace.trace_hex, "expected_label": "billing"},
        format="json",
    )

    assert response.status_code == 201
    [evaluation] = response.json()["evaluations"]
    assert (evaluation["micro_model"], evaluation["passed"]) == ("intent-mini", False)
    # The scheduler later reads the same trace: the feedback result is not doubled.
    for job_id in schedule_all().job_ids:
        run_evaluation_job(job_id)
    assert EvaluationResult.objects.filter(evaluator="label_check").count() == 1


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"trace_id": "ab" * 16, "expected_label": "x"}, 404),
        ({"trace_id": "zz", "expected_label": "x"}, 400),
        ({"trace_id": "ab" * 16}, 400),
    ],
)
def test_feedback_on_unknown_or_malformed_targets(tenant: Tenant, body: dict, status: int) -> None:
    response = tenant.client().post("/api/v1/feedback/", body, format="json")

    assert response.status_code == status
    assert response.json()["error"]["message"]


def test_feedback_cannot_reach_another_projects_trace(tenant: Tenant, other_tenant: Tenant) -> None:
    trace = classifier_trace()
    other_tenant.store(trace)

    response = tenant.client().post(
        "/api/v1/feedback/", {"trace_id": trace.trace_hex, "expected_label": "x"}, format="json"
    )

    assert response.status_code == 404
    assert not Feedback.objects.exists()


def test_evaluation_counts_per_evaluator_micro_model_and_cohort(tenant: Tenant) -> None:
    from evaluators.contracts import EvaluationCount
    from evaluators.queries import evaluation_counts

    configure(tenant.project_id, evaluators={"label_check": 1.0, "groundedness": 0.5})
    _evaluate(
        tenant,
        [
            classifier_trace(expected="billing"),
            classifier_trace(expected="refund"),
            classifier_trace(expected="refund", documents=()),  # groundedness n/a
        ],
    )

    assert evaluation_counts([tenant.project_id]) == [
        # sample_rate 100 %: each verdict weighs 1, and 1² (the dict holds thresholds)
        EvaluationCount("groundedness", None, 0, 2, 0.0, 2.0, 0.0, 2.0),
        EvaluationCount("label_check", None, 2, 3, 2.0, 3.0, 2.0, 3.0),
    ]
    assert evaluation_counts(
        [tenant.project_id], evaluator="label_check", group_by="user.tier"
    ) == [EvaluationCount("label_check", "pro", 2, 3, 2.0, 3.0, 2.0, 3.0)]
    assert evaluation_counts(
        [tenant.project_id], evaluator="label_check", group_by="micro_model"
    ) == [EvaluationCount("label_check", "intent-mini", 2, 3, 2.0, 3.0, 2.0, 3.0)]
    assert evaluation_counts([tenant.project_id], cohort=("user.tier", "free")) == []
    assert evaluation_counts([tenant.project_id + 1000]) == []


def test_a_later_feedback_without_a_label_replaces_the_earlier_label(tenant: Tenant) -> None:
    trace = classifier_trace(label="billing")  # no expected label on the span
    tenant.store(trace)
    decision = trace.spans[1].span_id.hex()
    client = tenant.client()
    target = {"trace_id": trace.trace_hex, "span_id": decision}

    labelled = client.post("/api/v1/feedback/", {**target, "expected_label": "refund"}).json()
    commented = client.post("/api/v1/feedback/", {**target, "comment": "not sure"}).json()

    assert [(e["expected_label"], e["passed"]) for e in labelled["evaluations"]] == [
        ("refund", False)
    ]
    # The label is withdrawn: the LabelCheck no longer applies and counts in no rate.
    assert [(e["expected_label"], e["passed"], e["source"]) for e in commented["evaluations"]] == [
        (None, None, "feedback")
    ]
    assert EvaluationResult.objects.count() == 1


def test_an_expected_label_on_generated_text_is_no_label_check_but_a_thumbs_is(
    tenant: Tenant,
) -> None:
    trace = generative_trace(micro_model="answer-mini")  # registered from traffic: "auto"
    tenant.store(trace)
    client = tenant.client()

    labelled = client.post(
        "/api/v1/feedback/", {"trace_id": trace.trace_hex, "expected_label": "billing"}
    ).json()
    thumbs = client.post(
        "/api/v1/feedback/", {"trace_id": trace.trace_hex, "thumbs_up": False}
    ).json()

    assert labelled["evaluations"] == []
    assert [(e["passed"], e["reason"]) for e in thumbs["evaluations"]] == [
        (False, "feedback: thumbs down")
    ]
