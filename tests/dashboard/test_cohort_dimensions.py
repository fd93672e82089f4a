"""A cohort dimension configured while the receivers run: spans exported after it (real
OpenTelemetry SDK exporters, gRPC and OTLP/HTTP) carry its value in their cohort, taken from
the span, else its resource, the trace taking its root's; the spans API, the metrics'
group-by and the cohorts page show it. Spans stored before are not back-filled."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from rest_framework.test import APIClient

from audit.models import AuditEntry
from dashboard import metrics
from dashboard.metrics.refresh import fold_changes
from tests.tracestore.test_receiver_http import _serve
from tracestore.http_receiver import build_app
from tracestore.models import CohortDimension, Span, Trace
from tracestore.receiver import build_server
from tracestore.services import create_project, issue_api_key

pytestmark = pytest.mark.django_db(transaction=True)

REGION = "customer.region"


@pytest.fixture(params=["grpc", "http"])
def exporter_for(request: pytest.FixtureRequest, settings: Any) -> Iterator[Callable]:
    """A receiver of the parametrised protocol, read-through of the configured dimensions
    on every request (the default re-reads every 10 s; no test waits for that)."""
    settings.MICROLENS_COHORT_DIMENSIONS_REFRESH_SECONDS = 0
    if request.param == "grpc":
        server = build_server("127.0.0.1", 0, workers=2)
        server.start()
        address = f"127.0.0.1:{server.port}"
        yield lambda key: GrpcSpanExporter(
            endpoint=address, insecure=True, headers={"authorization": f"Bearer {key}"}
        )
        server.stop(0)
    else:
        for url in _serve(build_app()):
            yield lambda key, url=url: HttpSpanExporter(
                endpoint=f"{url}/v1/traces", headers={"authorization": f"Bearer {key}"}
            )


def _export(
    exporter: SpanExporter,
    root_attributes: dict[str, str],
    resource_attributes: dict[str, str] | None = None,
    fallback: bool = False,
) -> tuple[bytes, bytes, bytes]:
    """A root span and a micro-model child; returns the trace id, root and child span ids."""
    provider = TracerProvider(
        resource=Resource.create({"service.name": "checkout", **(resource_attributes or {})})
    )
    provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer = provider.get_tracer("checkout.router")
    with tracer.start_as_current_span("POST /chat", attributes=root_attributes) as root:
        with tracer.start_as_current_span(
            "intent-classifier",
            attributes={
                "micro_model.name": "intent-mini",
                "micro_model.label": "refund",
                "route.name": "refunds",
                "route.fallback": fallback,
            },
        ) as child:
            pass
    assert provider.force_flush(10_000)
    provider.shutdown()
    context = root.get_span_context()
    return (
        context.trace_id.to_bytes(16, "big"),
        context.span_id.to_bytes(8, "big"),
        child.get_span_context().span_id.to_bytes(8, "big"),
    )


def _cohort(trace_id: bytes, span_id: bytes) -> dict[str, str]:
    return Span.objects.get(trace_id=trace_id, span_id=span_id).cohort


def test_a_key_configured_while_receiving_is_in_cohorts_metrics_and_the_api(
    exporter_for: Callable[[str], SpanExporter],
) -> None:
    project = create_project("shop")
    key = issue_api_key(project.id)

    before, before_root, _ = _export(exporter_for(key), {"user.tier": "pro", REGION: "ap"})
    CohortDimension.objects.create(key=REGION, display_name="Customer region")
    # The span's own attribute wins over its resource's.
    eu, eu_root, eu_child = _export(
        exporter_for(key), {"user.tier": "pro", REGION: "eu"}, {REGION: "us"}
    )
    us, us_root, us_child = _export(
        exporter_for(key), {"user.tier": "free"}, {REGION: "us"}, fallback=True
    )

    # Not back-filled: the span stored before the key was configured keeps its cohort.
    assert _cohort(before, before_root) == {"user.tier": "pro"}
    assert _cohort(eu, eu_root) == {"user.tier": "pro", REGION: "eu"}
    assert _cohort(us, us_root) == {"user.tier": "free", REGION: "us"}
    # The child carries no attribute of its own: its resource's value, if any.
    assert _cohort(eu, eu_child) == {REGION: "us"}
    assert _cohort(us, us_child) == {REGION: "us"}
    # The trace takes its root's value.
    assert Trace.objects.get(trace_id=eu).cohort == {"user.tier": "pro", REGION: "eu"}
    assert Trace.objects.get(trace_id=us).cohort == {"user.tier": "free", REGION: "us"}

    fold_changes()
    now = timezone.now()
    start, end = metrics.floor_hour(now - timedelta(hours=1)), metrics.ceil_hour(now)
    filters = metrics.Filters((project.id,), start, end)
    rows = metrics.compute("fallback-rate", filters, group_by=REGION).rows
    assert {row["group"]: (row["n"], row["rate"]) for row in rows} == {
        "eu": (1, 0.0),
        "us": (1, 1.0),
    }

    # The spans API gives each decision span its trace's cohort (the root's values).
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    listed = api.get("/api/v1/spans/", {"start": start.isoformat(), "end": end.isoformat()}).json()[
        "results"
    ]
    assert {bytes.fromhex(s["trace_id"]): s["cohort"] for s in listed} == {
        before: {"user.tier": "pro"},
        eu: {"user.tier": "pro", REGION: "eu"},
        us: {"user.tier": "free", REGION: "us"},
    }

    user = get_user_model().objects.create_user("ana", password="pw-for-tests-1")
    user.projects.add(project.id)
    client = Client()
    client.force_login(user)
    page = client.get("/cohorts/", {"dimension": REGION})
    assert page.status_code == 200
    assert page.context["dimension"] == REGION
    assert {row["group"]: row["n"] for row in page.context["fallback_rows"]} == {"eu": 1, "us": 1}
    assert '<option value="customer.region" selected>Customer region</option>' in (
        page.content.decode()
    )


def test_the_admin_says_when_a_new_key_applies_and_that_history_is_not_back_filled() -> None:
    user = get_user_model().objects.create_superuser("root", password="pw-for-tests-1")
    client = Client()
    client.force_login(user)

    form = client.get("/admin/tracestore/cohortdimension/add/").content.decode()
    response = client.post(
        "/admin/tracestore/cohortdimension/add/",
        {"key": REGION, "display_name": "Customer region"},
        follow=True,
    )

    assert "spans stored before are not back-filled" in form
    html = response.content.decode()
    assert "The receivers read the change within 10 s (no restart)" in html
    assert "spans stored before are not back-filled" in html
    assert "refresh_metrics --resum" in html
    assert list(CohortDimension.objects.filter(key=REGION).values_list("display_name")) == [
        ("Customer region",)
    ]
    entry = AuditEntry.objects.get(model="tracestore.CohortDimension", actor="user root")
    assert (entry.action, entry.after["key"]) == ("create", REGION)
