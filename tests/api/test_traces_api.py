from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from tests.builders import TraceBuilder, micro_model_trace
from tracestore.contracts import FLAG_OLD_START
from tracestore.services import revoke_api_key, store_spans

from .conftest import Tenant

pytestmark = pytest.mark.django_db

BASE_NS = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z


def iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize("header", ["bearer", "x-api-key"])
def test_a_project_key_lists_its_traces(tenant: Tenant, header: str) -> None:
    trace = micro_model_trace()
    store_spans(tenant.project_id, trace.records())

    response = tenant.client(header).get("/api/v1/traces/")

    assert response.status_code == 200
    body = response.json()
    assert body["next"] is None
    assert [t["trace_id"] for t in body["results"]] == [trace.trace_hex]
    summary = body["results"][0]
    assert summary["root_name"] == "POST /chat"
    assert summary["span_count"] == 3
    assert summary["status"] == "ok"
    assert summary["models"] == ["intent-mini"]
    assert summary["service_name"] == "support-bot"


@pytest.mark.parametrize(
    ("credentials", "message"),
    [
        ({}, "Authentication credentials were not provided."),
        ({"HTTP_AUTHORIZATION": "Bearer ml_wrong"}, "Invalid or revoked API key."),
        ({"HTTP_AUTHORIZATION": "Bearer "}, "Invalid or revoked API key."),
        ({"HTTP_X_API_KEY": "ml_wrong"}, "Invalid or revoked API key."),
    ],
)
def test_a_missing_or_wrong_key_is_unauthorised(tenant: Tenant, credentials, message) -> None:
    for url in ["/api/v1/traces/", f"/api/v1/traces/{'ab' * 16}/"]:
        response = APIClient().get(url, **credentials)

        assert response.status_code == 401
        assert response["WWW-Authenticate"] == 'Bearer realm="microlens"'
        code = "not_authenticated" if not credentials else "authentication_failed"
        assert response.json() == {"error": {"code": code, "message": message}}


def test_a_revoked_key_is_refused(tenant: Tenant) -> None:
    revoke_api_key(tenant.key)
    response = tenant.client().get("/api/v1/traces/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"


def test_a_session_user_sees_their_projects_traces(tenant: Tenant, other_tenant) -> None:
    mine, theirs = micro_model_trace(), micro_model_trace()
    store_spans(tenant.project_id, mine.records())
    store_spans(other_tenant.project_id, theirs.records())
    user = get_user_model().objects.create_user("ana", password="pw-for-tests-1")
    user.projects.add(tenant.project_id)
    client = APIClient()
    client.force_login(user)

    listing = client.get("/api/v1/traces/").json()

    assert [t["trace_id"] for t in listing["results"]] == [mine.trace_hex]
    assert client.get(f"/api/v1/traces/{mine.trace_hex}/").status_code == 200
    assert client.get(f"/api/v1/traces/{theirs.trace_hex}/").status_code == 404


def test_each_key_sees_only_its_own_projects_traces(tenant: Tenant, other_tenant) -> None:
    mine, theirs = micro_model_trace(), micro_model_trace()
    store_spans(tenant.project_id, mine.records())
    store_spans(other_tenant.project_id, theirs.records())

    for owner, trace, foreign in [(tenant, mine, theirs), (other_tenant, theirs, mine)]:
        client = owner.client()
        listed = [t["trace_id"] for t in client.get("/api/v1/traces/").json()["results"]]
        assert listed == [trace.trace_hex]
        assert client.get(f"/api/v1/traces/{trace.trace_hex}/").status_code == 200
        response = client.get(f"/api/v1/traces/{foreign.trace_hex}/")
        assert response.status_code == 404
        assert response.json() == {
            "error": {"code": "not_found", "message": "No trace with this id in your projects."}
        }


@pytest.mark.parametrize("trace_id", ["xyz", "g" * 32, "ab" * 15, "ab" * 17, "ab" * 16])
def test_an_invalid_or_unknown_trace_id_is_not_found(tenant: Tenant, trace_id: str) -> None:
    response = tenant.client().get(f"/api/v1/traces/{trace_id}/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_the_detail_returns_field_for_field_what_was_stored(tenant: Tenant) -> None:
    trace = TraceBuilder(start_ns=BASE_NS, resource={"deployment.environment": "prod"})
    root = trace.span(
        "POST /chat",
        span_id=bytes.fromhex("00000000000000aa"),
        duration_ms=900,
        attrs={"user.tier": "free", "http.status_code": 200},
    )
    trace.span(
        "intent-classifier",
        parent=root,
        span_id=bytes.fromhex("00000000000000bb"),
        offset_ms=5,
        duration_ms=30,
        error=True,
        attrs={
            "micro_model.name": "intent-mini",
            "llm.provider": "local",
            "openinference.span.kind": "LLM",
            "micro_model.label": "billing",
            "micro_model.confidence": 0.5,
            "route.name": "billing",
            "route.fallback": True,
            "llm.token_count.prompt": 42,
            "llm.token_count.completion": 3,
            "input.value": "Why was I charged twice?",
            "output.value": "billing",
            "tags": ["a", "b"],
        },
    )
    trace.spans[1].events.add(name="retrying", time_unix_nano=BASE_NS + 6_000_000)
    store_spans(tenant.project_id, trace.records())

    response = tenant.client().get(f"/api/v1/traces/{trace.trace_hex.upper()}/")

    assert response.status_code == 200
    body = response.json()
    assert body["trace"] == {
        "project_id": tenant.project_id,
        "trace_id": trace.trace_hex,
        "start_time": iso(BASE_NS),
        "end_time": iso(BASE_NS + 900_000_000),
        "duration_ms": 900.0,
        "root_span_id": "00000000000000aa",
        "root_name": "POST /chat",
        "service_name": "support-bot",
        "span_count": 2,
        "error_count": 1,
        "status": "error",
        "models": ["intent-mini"],
        "micro_models": ["intent-mini"],
        "routes": ["billing"],
        "is_fallback": True,
        "prompt_tokens": 42,
        "completion_tokens": 3,
        "cohort": {"user.tier": "free"},
    }
    root_span, classifier = body["spans"]
    assert root_span["span_id"] == "00000000000000aa"
    assert root_span["parent_span_id"] is None
    assert root_span["attributes"] == {"user.tier": "free", "http.status_code": 200}
    assert root_span["resource_attributes"] == {
        "service.name": "support-bot",
        "deployment.environment": "prod",
    }
    assert classifier == {
        "project_id": tenant.project_id,
        "trace_id": trace.trace_hex,
        "span_id": "00000000000000bb",
        "parent_span_id": "00000000000000aa",
        "name": "intent-classifier",
        "kind": 1,
        "start_time": iso(BASE_NS + 5_000_000),
        "end_time": iso(BASE_NS + 35_000_000),
        "duration_ms": 30.0,
        "status_code": 2,
        "status_message": "boom",
        "service_name": "support-bot",
        "scope_name": "tests",
        "scope_version": "",
        "attributes": {
            "micro_model.name": "intent-mini",
            "llm.provider": "local",
            "openinference.span.kind": "LLM",
            "micro_model.label": "billing",
            "micro_model.confidence": 0.5,
            "route.name": "billing",
            "route.fallback": True,
            "llm.token_count.prompt": 42,
            "llm.token_count.completion": 3,
            "input.value": "Why was I charged twice?",
            "output.value": "billing",
            "tags": ["a", "b"],
        },
        "resource_attributes": {
            "service.name": "support-bot",
            "deployment.environment": "prod",
        },
        "events": [{"name": "retrying", "time_unix_nano": BASE_NS + 6_000_000, "attributes": {}}],
        "links": [],
        # Stored long after 2026-01-01: older than retention keeps, so kept from receipt.
        "flags": FLAG_OLD_START,
        "span_kind": "LLM",
        "model": "intent-mini",
        "provider": "local",
        "micro_model": "intent-mini",
        "prompt_tokens": 42,
        "completion_tokens": 3,
        "input_text": "Why was I charged twice?",
        "output_text": "billing",
        "route": "billing",
        "label": "billing",
        "confidence": 0.5,
        "expected_label": None,
        "expected_label_source": None,
        "is_fallback": True,
        "is_retry": False,
        "cache_hit": False,
        "is_mirrored": False,
        "mirror_of": None,
        # The trace's cohort (from its root span), as the trace and evaluations carry it.
        "cohort": {"user.tier": "free"},
        "evaluations": [],
    }
    assert root_span["cohort"] == {"user.tier": "free"}


def test_cursor_pages_return_every_trace_exactly_once(tenant: Tenant) -> None:
    records, expected = [], []
    for i in range(23):
        # pairs share a start instant: the trace id breaks the tie
        trace = TraceBuilder(start_ns=BASE_NS + (i // 2) * 10**6)
        trace.span("job")
        records += trace.records()
        expected.append((trace.start_ns, trace.trace_hex))
    store_spans(tenant.project_id, records)
    client = tenant.client()

    seen, pages = [], 0
    url: str | None = "/api/v1/traces/?limit=5"
    while url:
        body = client.get(url).json()
        seen += [t["trace_id"] for t in body["results"]]
        pages += 1
        url = body["next"]
        if url:
            assert url.startswith("http://testserver/api/v1/traces/?")
            assert "limit=5" in url

    assert pages == 5
    assert seen == [hex_id for _, hex_id in sorted(expected, reverse=True)]


def test_the_service_filter_keeps_one_service(tenant: Tenant) -> None:
    a, b = TraceBuilder(service="a-svc"), TraceBuilder(service="b-svc")
    a.span("x")
    b.span("y")
    store_spans(tenant.project_id, a.records() + b.records())

    body = tenant.client().get("/api/v1/traces/?service=a-svc").json()

    assert [t["trace_id"] for t in body["results"]] == [a.trace_hex]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("cursor=nope", "cursor: invalid cursor: pass back the one from the previous page"),
        ("limit=0", "limit: Ensure this value is greater than or equal to 1."),
        ("limit=abc", "limit: A valid integer is required."),
    ],
)
def test_bad_query_parameters_are_a_400(tenant: Tenant, query: str, message: str) -> None:
    response = tenant.client().get(f"/api/v1/traces/?{query}")
    assert response.status_code == 400
    assert response.json() == {"error": {"code": "invalid", "message": message}}


def test_the_list_runs_a_fixed_number_of_queries(
    tenant: Tenant, django_assert_max_num_queries
) -> None:
    records = []
    for _ in range(30):
        records += micro_model_trace(fallback=True).records()
    store_spans(tenant.project_id, records)
    client = tenant.client()

    # key lookup, traces (the key's last_used_at is touched at most once a minute)
    client.get("/api/v1/traces/")
    with django_assert_max_num_queries(2):
        body = client.get("/api/v1/traces/").json()
    assert len(body["results"]) == 30
