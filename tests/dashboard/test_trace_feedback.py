"""Feedback from the trace page: one form per decision posts (session, CSRF) to the same
service as POST /api/v1/feedback/, and the page shows it at once with its source."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from rest_framework.test import APIClient

from evaluators.models import Feedback
from tests.builders import micro_model_trace
from tracestore.services import create_project, issue_api_key, store_spans

pytestmark = pytest.mark.django_db


@pytest.fixture
def csrf_client(member) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(member)
    return client


def _stored(project_id: int):
    trace = micro_model_trace(label="billing")
    store_spans(project_id, trace.records())
    return trace, trace.spans[1].span_id.hex()


def _token(html: str) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert match is not None
    return match[1]


def test_feedback_given_on_the_page_shows_in_the_expected_column(csrf_client, project) -> None:
    trace, span_id = _stored(project.id)
    page = f"/traces/{trace.trace_hex}/"
    html = csrf_client.get(page).content.decode()
    assert f'<input type="hidden" name="span_id" value="{span_id}">' in html

    response = csrf_client.post(
        f"{page}feedback/",
        {
            "csrfmiddlewaretoken": _token(html),
            "span_id": span_id,
            "expected_label": "refund",
            "verdict": "fail",
            "note": "asked for money back",
        },
    )

    assert (response.status_code, response["Location"]) == (302, f"{page}#decisions")
    after = csrf_client.get(page).content.decode()
    assert '<td class="expected">refund <span class="muted source">(feedback)</span></td>' in after
    assert '<li class="message-success" role="status">Feedback saved.</li>' in after
    assert "label_check: fail" in after
    assert (
        '<p class="feedback-given">Given: expected <strong>refund</strong>,'
        ' <span class="status status-error">fail</span> “asked for money back”'
        ' <span class="muted">by ana, <time'
    ) in after
    assert '<input type="radio" name="verdict" value="fail" checked> fail' in after
    assert '<input type="text" name="note" maxlength="5000" value="asked for money back">' in after
    stored = Feedback.objects.get()
    assert (stored.expected_label, stored.thumbs_up, stored.comment, stored.author) == (
        "refund",
        False,
        "asked for money back",
        "ana",
    )
    assert bytes(stored.span_id).hex() == span_id


def test_a_post_without_the_csrf_token_is_refused(csrf_client, project) -> None:
    trace, span_id = _stored(project.id)

    response = csrf_client.post(
        f"/traces/{trace.trace_hex}/feedback/", {"span_id": span_id, "expected_label": "x"}
    )

    assert response.status_code == 403
    assert Feedback.objects.count() == 0


def test_another_projects_trace_is_not_found(member_client, project) -> None:
    other = create_project("elsewhere")
    trace, span_id = _stored(other.id)

    response = member_client.post(
        f"/traces/{trace.trace_hex}/feedback/", {"span_id": span_id, "expected_label": "x"}
    )

    assert response.status_code == 404
    assert Feedback.objects.count() == 0


def test_an_empty_form_says_what_is_missing_and_saves_nothing(member_client, project) -> None:
    trace, span_id = _stored(project.id)

    response = member_client.post(
        f"/traces/{trace.trace_hex}/feedback/",
        {"span_id": span_id, "expected_label": " ", "verdict": "", "note": ""},
        follow=True,
    )

    assert (
        "Feedback not saved: give an expected_label, a thumbs_up (true/false) or a comment"
        in response.content.decode()
    )
    assert Feedback.objects.count() == 0


def test_a_pass_verdict_alone_is_recorded(member_client, project) -> None:
    trace, span_id = _stored(project.id)

    member_client.post(
        f"/traces/{trace.trace_hex}/feedback/", {"span_id": span_id, "verdict": "pass"}
    )

    assert Feedback.objects.values_list("expected_label", "thumbs_up").get() == (None, True)


def test_feedback_on_the_whole_trace_from_the_api_shows_on_the_page(member_client, project) -> None:
    trace, _ = _stored(project.id)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {issue_api_key(project.id)}")
    posted = api.post(
        "/api/v1/feedback/",
        {"trace_id": trace.trace_hex, "thumbs_up": True, "comment": "good call"},
        format="json",
    )
    assert posted.status_code == 201

    html = member_client.get(f"/traces/{trace.trace_hex}/").content.decode()

    assert (
        '<p class="feedback-given">On the whole trace: <span class="status status-ok">pass</span>'
        ' “good call” <span class="muted">by api key of shop, <time'
    ) in html
