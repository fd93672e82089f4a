"""Spans through the API: the micro-model decision spans across traces, a trace's spans,
one span, one evaluation; every one scoped to the caller's projects."""

from __future__ import annotations

from datetime import timedelta

import pytest

from dashboard.metrics.refresh import fold_changes
from evaluators.contracts import LABEL_CHECK
from evaluators.queries import list_evaluations
from evaluators.services import record_feedback
from tests.dashboard.metric_data import NOW, ROUTES, TIERS, add_prices, store, traffic

from .conftest import Tenant

pytestmark = pytest.mark.django_db

RANGE = {
    "start": (NOW - timedelta(hours=60)).isoformat(),
    "end": (NOW + timedelta(hours=1)).isoformat(),
}


@pytest.fixture
def loaded(tenant: Tenant):
    add_prices()
    built = traffic(30)
    store(tenant.project_id, built, batch=0)
    store(tenant.project_id, built, batch=1)
    fold_changes()
    return tenant, built


def _decision(b):
    """The trace's micro-model span (the builder's second span)."""
    span = b.trace.spans[1]
    return b.trace.trace_hex, span.span_id.hex()


def test_decision_spans_are_listed_newest_first_with_every_page_once(loaded) -> None:
    tenant, built = loaded
    expected = [_decision(b) for b in sorted(built, key=lambda b: b.trace.start_ns, reverse=True)]

    seen, pages = [], 0
    url: str | None = "/api/v1/spans/"
    params: dict | None = {**RANGE, "limit": 7}
    while url:
        body = tenant.client().get(url, params).json()
        seen += [(s["trace_id"], s["span_id"]) for s in body["results"]]
        pages += 1
        url, params = body["next"], None

    assert pages == 5
    assert seen == expected
    first = tenant.client().get("/api/v1/spans/", {**RANGE, "limit": 1}).json()["results"][0]
    assert first["project_id"] == tenant.project_id
    assert first["micro_model"] == "intent-mini"
    assert first["name"] == "intent"
    assert first["attributes"]["micro_model.name"] == "intent-mini"
    assert first["evaluations"] == []


def test_decision_spans_are_filtered_like_the_metrics(loaded) -> None:
    tenant, built = loaded
    client = tenant.client()

    def listed(**params) -> list[tuple[str, str]]:
        body = client.get("/api/v1/spans/", {**RANGE, "limit": 200, **params}).json()
        return sorted((s["trace_id"], s["span_id"]) for s in body["results"])

    by_route = {
        r: sorted(_decision(b) for i, b in enumerate(built) if ROUTES[i % 3] == r) for r in ROUTES
    }
    assert listed(route="billing") == by_route["billing"]
    assert listed(label="tech") == by_route["tech"]
    assert listed(fallback="true") == sorted(
        _decision(b) for i, b in enumerate(built) if i % 4 == 1
    )
    assert listed(error="true") == sorted(_decision(b) for i, b in enumerate(built) if i % 11 == 0)
    # traffic() gives trace i the tier TIERS[i % 3 if i % 5 else 2].
    enterprise = sorted(
        _decision(b) for i, b in enumerate(built) if TIERS[i % 3 if i % 5 else 2] == "enterprise"
    )
    assert len(enterprise) == 14
    assert listed(**{"cohort.user.tier": "enterprise"}) == enterprise
    assert listed(trace_id=built[4].trace.trace_hex.upper()) == [_decision(built[4])]
    assert listed(micro_model="nobody") == []


def test_a_bad_span_query_is_a_400_that_says_why(loaded) -> None:
    tenant, _ = loaded
    client = tenant.client()

    bad_cursor = client.get("/api/v1/spans/", {"cursor": "nope"})
    # The dotted form of before the shared cursor codec is no longer read.
    old_cursor = client.get(
        "/api/v1/spans/", {"cursor": f"1767225600000000.{'ab' * 16}.{'cd' * 8}.1"}
    )
    two_cohorts = client.get(
        "/api/v1/spans/", {"cohort.user.tier": "free", "cohort.language": "de"}
    )
    bad_trace = client.get("/api/v1/spans/", {"trace_id": "xyz"})

    assert bad_cursor.status_code == 400
    assert "invalid cursor" in str(bad_cursor.json())
    assert old_cursor.status_code == 400
    assert "invalid cursor: pass back the one from the previous page" in str(old_cursor.json())
    assert two_cohorts.status_code == 400
    assert "one cohort dimension at a time" in str(two_cohorts.json())
    assert bad_trace.status_code == 400


def test_a_traces_spans_and_one_span_with_its_evaluations(loaded) -> None:
    tenant, built = loaded
    b = built[3]
    trace_hex, span_hex = _decision(b)
    record_feedback(
        [tenant.project_id], trace_id=trace_hex, span_id=span_hex, expected_label="tech"
    )
    client = tenant.client()

    spans = client.get(f"/api/v1/traces/{trace_hex}/spans/").json()["results"]
    one = client.get(f"/api/v1/traces/{trace_hex.upper()}/spans/{span_hex.upper()}/")

    assert [s["span_id"] for s in spans] == [s.span_id.hex() for s in b.trace.spans]
    assert [s["name"] for s in spans] == ["POST /chat", "intent"]
    assert one.status_code == 200
    assert one.json()["span_id"] == span_hex
    assert one.json()["route"] == ROUTES[3 % 3]
    assert [
        (e["evaluator"], e["expected_label"], e["passed"]) for e in one.json()["evaluations"]
    ] == [(LABEL_CHECK, "tech", False)]
    assert spans[1]["evaluations"] == one.json()["evaluations"]
    assert spans[0]["evaluations"] == []


def test_one_evaluation_by_id(loaded) -> None:
    tenant, built = loaded
    trace_hex, span_hex = _decision(built[5])
    record_feedback(
        [tenant.project_id], trace_id=trace_hex, span_id=span_hex, expected_label="billing"
    )
    result = list_evaluations([tenant.project_id], trace_id=trace_hex).results[0]

    response = tenant.client().get(f"/api/v1/evaluations/{result.id}/")

    assert response.status_code == 200
    assert response.json()["id"] == result.id
    assert (response.json()["trace_id"], response.json()["span_id"]) == (trace_hex, span_hex)
    assert response.json()["expected_label"] == "billing"


def test_another_projects_spans_and_evaluations_are_not_found(loaded, other_tenant) -> None:
    tenant, built = loaded
    trace_hex, span_hex = _decision(built[5])
    record_feedback(
        [tenant.project_id], trace_id=trace_hex, span_id=span_hex, expected_label="billing"
    )
    result = list_evaluations([tenant.project_id], trace_id=trace_hex).results[0]
    client = other_tenant.client()

    assert client.get("/api/v1/spans/", RANGE).json() == {"next": None, "results": []}
    assert client.get(f"/api/v1/traces/{trace_hex}/spans/").status_code == 404
    assert client.get(f"/api/v1/traces/{trace_hex}/spans/{span_hex}/").status_code == 404
    assert client.get(f"/api/v1/evaluations/{result.id}/").status_code == 404
    assert tenant.client().get(f"/api/v1/traces/{trace_hex}/spans/{'0' * 15}1/").status_code == 404
    assert tenant.client().get(f"/api/v1/traces/{trace_hex}/spans/nothex/").status_code == 404
