"""/api/v1/alert-rules/ and /api/v1/alert-events/ scoped to the caller's projects."""

from __future__ import annotations

import pytest
import yaml
from django.core.management import call_command
from rest_framework.test import APIClient

from dashboard.alerts.models import AlertRule
from dashboard.alerts.services import evaluate_alert_rule
from tests.dashboard.metric_data import NOW
from tracestore.services import create_project, issue_api_key

from .conftest import decisions, rule

pytestmark = pytest.mark.django_db

RULES = "/api/v1/alert-rules/"


def _client(project_id: int) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issue_api_key(project_id)}")
    return client


BODY = {
    "name": "enterprise billing recall",
    "metric": "label-recall",
    "micro_model": "intent-mini",
    "label": "billing",
    "cohort_key": "user.tier",
    "cohort_value": "enterprise",
    "comparator": "below",
    "threshold": 90,
    "window_seconds": 86400,
    "min_n": 20,
    "statistical": True,
    "webhook_urls": [],
    "email_addresses": ["oncall@example.com"],
}


def test_create_read_update_and_delete_a_rule(project) -> None:
    client = _client(project.id)

    created = client.post(RULES, BODY, format="json")
    assert created.status_code == 201, created.content
    rule_id = created.json()["id"]
    assert created.json()["project_id"] == project.id
    assert client.get(RULES).json()["results"][0]["name"] == "enterprise billing recall"

    patched = client.patch(f"{RULES}{rule_id}/", {"threshold": 85}, format="json")
    assert patched.status_code == 200
    assert AlertRule.objects.get().threshold == 0.85

    assert client.delete(f"{RULES}{rule_id}/").status_code == 204
    assert AlertRule.objects.count() == 0


def test_another_projects_rule_is_not_found(project) -> None:
    other = create_project("elsewhere")
    theirs = rule(other.id)
    client = _client(project.id)

    assert client.get(f"{RULES}{theirs.id}/").status_code == 404
    assert client.patch(f"{RULES}{theirs.id}/", {"threshold": 1}, format="json").status_code == 404
    assert client.delete(f"{RULES}{theirs.id}/").status_code == 404
    assert client.get(RULES).json()["results"] == []
    refused = client.post(RULES, {**BODY, "project_id": other.id}, format="json")
    assert refused.status_code == 400
    assert "project_id: not one of your projects" in refused.json()["error"]["message"]


def test_an_invalid_rule_answers_400_with_the_reason(project) -> None:
    response = _client(project.id).post(RULES, {**BODY, "label": ""}, format="json")

    assert response.status_code == 400
    assert (
        "label: label recall / precision / F1 need the label" in response.json()["error"]["message"]
    )


def test_events_are_listed_for_the_callers_projects_only(project) -> None:
    other = create_project("elsewhere")
    decisions(project.id, 40, fallbacks=10)
    decisions(other.id, 40, fallbacks=10, first=100)
    mine, theirs = rule(project.id), rule(other.id)
    evaluate_alert_rule(mine.id, NOW)
    evaluate_alert_rule(theirs.id, NOW)

    events = _client(project.id).get("/api/v1/alert-events/").json()["results"]

    assert [(e["rule"], e["kind"], e["value"], e["n"]) for e in events] == [
        (mine.id, "fired", 25.0, 40)
    ]
    assert (events[0]["threshold"], events[0]["unit"]) == (10.0, "percent")
    rules = _client(project.id).get(RULES).json()["results"]
    assert rules[0]["states"][0]["state"] == "firing"


def test_a_threshold_round_trips_in_percent(project) -> None:
    client = _client(project.id)

    created = client.post(RULES, {**BODY, "threshold": 12.5, "hysteresis": 2}, format="json")

    assert created.status_code == 201, created.content
    body = created.json()
    assert (body["threshold"], body["hysteresis"], body["unit"]) == (12.5, 2.0, "percent")
    assert AlertRule.objects.values_list("threshold", "hysteresis").get() == (0.125, 0.02)
    read = client.get(f"{RULES}{body['id']}/").json()
    assert (read["threshold"], read["hysteresis"]) == (12.5, 2.0)


def test_latency_thresholds_stay_in_milliseconds(project) -> None:
    body = {**BODY, "metric": "latency-p90", "label": "", "statistical": False, "threshold": 250}

    created = _client(project.id).post(RULES, body, format="json")

    assert (created.json()["threshold"], created.json()["unit"]) == (250.0, "ms")
    assert AlertRule.objects.get().threshold == 250.0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"threshold": 120}, "threshold: a percentage from 0 to 100"),
        ({"threshold": -5}, "threshold: a percentage from 0 to 100"),
        ({"hysteresis": 150}, "hysteresis: a percentage from 0 to 100"),
    ],
)
def test_a_percentage_out_of_range_answers_400(project, body, message) -> None:
    response = _client(project.id).post(RULES, {**BODY, **body}, format="json")

    assert response.status_code == 400
    assert message in response.json()["error"]["message"]
    assert AlertRule.objects.count() == 0


def test_changing_the_unit_without_a_new_threshold_is_refused(project) -> None:
    saved = rule(project.id, metric="latency-p90", threshold=250.0)

    response = _client(project.id).patch(
        f"{RULES}{saved.id}/", {"metric": "fallback-rate"}, format="json"
    )

    assert response.status_code == 400
    assert "give the threshold again" in response.json()["error"]["message"]
    assert AlertRule.objects.get().threshold == 250.0


def test_the_api_schema_documents_the_threshold_unit(tmp_path) -> None:
    out = tmp_path / "schema.yml"
    call_command("spectacular", "--file", str(out))

    rule_schema = yaml.safe_load(out.read_text())["components"]["schemas"]["AlertRule"]
    properties = rule_schema["properties"]
    assert "a percentage is typed as percent (10 = 10 %)" in properties["threshold"]["description"]
    assert "'percent' for rates" in properties["unit"]["description"]
    assert properties["unit"]["readOnly"] is True
    assert "`*` for any evaluator" in properties["evaluator"]["description"]


def test_a_cost_threshold_is_typed_and_shown_per_1000_traces(project) -> None:
    client = _client(project.id)
    body = {
        **BODY,
        "metric": "cost-per-trace-mean",
        "label": "",
        "statistical": False,
        "comparator": "above",
        "threshold": 4.2,
        "hysteresis": 0.5,
    }

    created = client.post(RULES, body, format="json")

    assert created.status_code == 201, created.content
    shown = created.json()
    assert (shown["threshold"], shown["hysteresis"], shown["unit"]) == (
        4.2,
        0.5,
        "USD per 1,000 traces",
    )
    # Stored per trace, as the cost metric's mean_usd that the evaluation compares with.
    assert AlertRule.objects.values_list("threshold", "hysteresis").get() == (0.0042, 0.0005)
    assert client.get(f"{RULES}{shown['id']}/").json()["threshold"] == 4.2
