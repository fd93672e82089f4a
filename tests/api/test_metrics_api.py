from __future__ import annotations

from datetime import timedelta

import pytest

from dashboard.metrics.refresh import fold_changes
from tests.dashboard.metric_data import NOW, add_prices, store, traffic

pytestmark = pytest.mark.django_db

METRICS = [
    "route-share",
    "fallback-rate",
    "retry-rate",
    "cache-hit-rate",
    "error-rate",
    "latency",
    "cost-per-trace",
    "eval-fail-rate",
    "label-quality",
]
RANGE = {
    "start": (NOW - timedelta(hours=60)).isoformat(),
    "end": (NOW + timedelta(hours=1)).isoformat(),
}


@pytest.fixture
def loaded(tenant):
    add_prices()
    built = traffic(30)
    store(tenant.project_id, built, batch=0)
    store(tenant.project_id, built, batch=1)
    fold_changes()
    return tenant


@pytest.mark.parametrize("name", METRICS)
def test_every_metric_answers_with_n_on_every_value(loaded, name) -> None:
    response = loaded.client().get(f"/api/v1/metrics/{name}/", RANGE)

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["metric"] == name
    if name == "eval-fail-rate":
        assert body["results"] == [] and body["notes"] == ["no evaluations yet"]
    else:
        assert body["results"]
        assert all(isinstance(row["n"], int) for row in body["results"])


def test_filters_and_grouping_come_from_the_query_string(loaded) -> None:
    response = loaded.client().get(
        "/api/v1/metrics/fallback-rate/",
        {
            **RANGE,
            "cohort.user.tier": "enterprise",
            "group_by": "route",
            "micro_model": "intent-mini",
        },
    )

    body = response.json()
    assert response.status_code == 200
    assert body["group_by"] == "route"
    assert sum(row["n"] for row in body["results"]) == 14
    assert {row["group"] for row in body["results"]} == {"billing", "tech", "sales"}


def test_a_time_series_per_day(loaded) -> None:
    response = loaded.client().get("/api/v1/metrics/retry-rate/", {**RANGE, "interval": "day"})

    times = [row["time"] for row in response.json()["results"]]
    assert times == sorted(times) and len(times) == 2


def test_another_projects_data_is_not_seen(loaded, other_tenant) -> None:
    mine = other_tenant.client().get("/api/v1/metrics/fallback-rate/", RANGE)
    theirs = other_tenant.client().get(
        "/api/v1/metrics/fallback-rate/", {**RANGE, "project": loaded.project_id}
    )

    assert mine.status_code == 200 and mine.json()["results"] == []
    assert theirs.status_code == 404
    assert theirs.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"start": "yesterday"}, "start: not an ISO 8601"),
        ({"interval": "week"}, "interval must be one of"),
        (
            {"cohort.language": "de", "cohort.user.tier": "enterprise"},
            "filter by one cohort dimension at a time (asked for language and user.tier)",
        ),
        ({"cohort.language": ["de", "ja"]}, "cohort.language: give one value, not several"),
        ({"group_by": "colour"}, "unknown group_by"),
    ],
)
def test_a_bad_query_is_a_400_that_says_why(loaded, params, message) -> None:
    response = loaded.client().get("/api/v1/metrics/latency/", params)

    assert response.status_code == 400
    assert message in response.json()["error"]["message"]


def test_an_unknown_metric_is_a_404(tenant) -> None:
    assert tenant.client().get("/api/v1/metrics/happiness/").status_code == 404


def test_metrics_need_credentials(db) -> None:
    from rest_framework.test import APIClient

    assert APIClient().get("/api/v1/metrics/latency/").status_code == 401


def test_the_schema_lists_every_metric(db) -> None:
    from django.contrib.auth import get_user_model
    from django.test import Client

    client = Client()
    client.force_login(get_user_model().objects.create_user("docs", password="pw-for-tests-1"))
    schema = client.get("/api/schema/?format=json").json()

    operation = schema["paths"]["/api/v1/metrics/{name}/"]["get"]
    name = next(p for p in operation["parameters"] if p["name"] == "name")
    assert name["schema"]["enum"] == sorted(METRICS)


def test_micro_models_are_listed_and_scoped_to_the_callers_projects(loaded, other_tenant) -> None:
    listing = loaded.client().get("/api/v1/micro-models/", RANGE)
    detail = loaded.client().get("/api/v1/micro-models/intent-mini/", RANGE)
    theirs = other_tenant.client().get("/api/v1/micro-models/intent-mini/", RANGE)

    assert [m["name"] for m in listing.json()["results"]] == ["intent-mini"]
    assert detail.status_code == 200
    assert detail.json()["n"] == 30 and detail.json()["routes"] == ["billing", "sales", "tech"]
    assert theirs.status_code == 404
