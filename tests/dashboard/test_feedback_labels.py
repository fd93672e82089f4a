"""Late ground truth counts like an expected label sent on the span: label quality, the
confusion matrix, the trace page and the API read it, with its source, and a later
feedback for the same span replaces the earlier one."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from dashboard.metrics.refresh import fold_changes
from tests.evaluators.conftest import classifier_trace
from tracestore.services import create_project, issue_api_key, store_spans

pytestmark = pytest.mark.django_db

# (predicted label, expected on the span, feedback on the span, feedback on the trace)
DECISIONS = [
    ("billing", None, "billing", None),
    ("billing", None, "billing", None),
    ("billing", None, "refund", None),  # posted as "billing" first, then replaced
    ("refund", None, "refund", None),
    ("refund", None, "billing", None),
    ("refund", None, None, None),  # never labelled
    ("billing", "billing", None, None),  # labelled on the span itself
    ("billing", None, None, "refund"),  # feedback on the whole trace
]


@pytest.fixture
def labelled():
    project = create_project("shop")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {issue_api_key(project.id)}")
    traces = []
    for predicted, attribute, _, _ in DECISIONS:
        trace = classifier_trace(label=predicted, expected=attribute)
        store_spans(project.id, trace.records())
        traces.append(trace)
    fold_changes()  # the beat fold runs before any feedback arrives

    def post(trace, label: str, span: bool = True) -> None:
        body = {"trace_id": trace.trace_hex, "expected_label": label}
        if span:
            body["span_id"] = trace.spans[1].span_id.hex()
        response = api.post("/api/v1/feedback/", body, format="json")
        assert response.status_code in (200, 201), response.content

    post(traces[2], "billing")
    for trace, (_, _, on_span, on_trace) in zip(traces, DECISIONS, strict=True):
        if on_span:
            post(trace, on_span)
        if on_trace:
            post(trace, on_trace, span=False)
    return project, api, traces


def _quality(api: APIClient) -> dict:
    now = timezone.now()
    window = {
        "start": (now - timedelta(hours=2)).isoformat(),
        "end": (now + timedelta(minutes=5)).isoformat(),
    }
    response = api.get("/api/v1/metrics/label-quality/", window)
    assert response.status_code == 200, response.content
    [row] = response.json()["results"]
    return row


def _expect_feedback_counted(row: dict) -> None:
    assert row["confusion"] == {"labels": ["billing", "refund"], "matrix": [[3, 1], [2, 1]]}
    assert (row["n"], row["without_expected_label"]) == (7, 1)
    billing, refund = row["labels"]
    assert (billing["label"], billing["n"], billing["predicted"]) == ("billing", 4, 5)
    assert billing["precision"] == pytest.approx(0.6)
    assert billing["recall"] == pytest.approx(0.75)
    assert billing["f1"] == pytest.approx(2 / 3)
    assert (refund["label"], refund["n"], refund["predicted"]) == ("refund", 3, 2)
    assert refund["precision"] == pytest.approx(0.5)
    assert refund["recall"] == pytest.approx(1 / 3)
    assert refund["f1"] == pytest.approx(0.4)


def test_feedback_labels_count_in_label_quality_at_the_next_fold(labelled) -> None:
    _, api, _ = labelled

    fold_changes()

    _expect_feedback_counted(_quality(api))


def test_feedback_labels_count_after_a_rebuild(labelled) -> None:
    _, api, _ = labelled

    call_command("refresh_metrics", "--rebuild")

    _expect_feedback_counted(_quality(api))


def test_a_later_feedback_for_the_same_span_replaces_the_earlier_one(labelled) -> None:
    _, api, traces = labelled
    trace = traces[2]
    decision = trace.spans[1].span_id.hex()

    detail = api.get(f"/api/v1/traces/{trace.trace_hex}/").json()
    evaluations = api.get(
        "/api/v1/evaluations/", {"trace_id": trace.trace_hex, "evaluator": "label_check"}
    ).json()["results"]

    [span] = [s for s in detail["spans"] if s["span_id"] == decision]
    assert (span["expected_label"], span["expected_label_source"]) == ("refund", "feedback")
    assert [(e["expected_label"], e["passed"], e["source"]) for e in evaluations] == [
        ("refund", False, "feedback")
    ]


def test_the_api_and_trace_page_show_where_the_expected_label_came_from(labelled) -> None:
    project, api, traces = labelled
    user = get_user_model().objects.create_user("ana", password="pw-for-tests-1")
    user.projects.add(project.id)
    page = Client()
    page.force_login(user)

    sources = []
    for trace in (traces[2], traces[5], traces[6], traces[7]):
        detail = api.get(f"/api/v1/traces/{trace.trace_hex}/").json()
        [span] = [s for s in detail["spans"] if s["span_id"] == trace.spans[1].span_id.hex()]
        sources.append((span["expected_label"], span["expected_label_source"]))
    one = traces[2]
    span_api = api.get(f"/api/v1/traces/{one.trace_hex}/spans/{one.spans[1].span_id.hex()}/")
    listed = api.get("/api/v1/spans/", {"trace_id": one.trace_hex, "range": "24h"})
    html = page.get(f"/traces/{traces[2].trace_hex}/").content.decode()
    attribute_html = page.get(f"/traces/{traces[6].trace_hex}/").content.decode()
    unlabelled_html = page.get(f"/traces/{traces[5].trace_hex}/").content.decode()

    assert sources == [
        ("refund", "feedback"),
        (None, None),
        ("billing", "attribute"),
        ("refund", "feedback"),
    ]
    for body in (span_api.json(), *listed.json()["results"]):
        assert (body["expected_label"], body["expected_label_source"]) == ("refund", "feedback")
    assert len(listed.json()["results"]) == 1
    assert '<td class="expected">refund <span class="muted source">(feedback)</span></td>' in html
    assert (
        '<td class="expected">billing <span class="muted source">(attribute)</span></td>'
        in attribute_html
    )
    assert '<td class="expected">\u2013</td>' in unlabelled_html  # an en dash
