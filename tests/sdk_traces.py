"""One small micro-model trace exported through a real OpenTelemetry SDK exporter, and
the field-for-field check of what microlens stored from it (shared by the receivers'
tests, whatever the protocol)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from opentelemetry import trace as otel_trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from tracestore.models import Span, Trace

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def export_classifier_trace(exporter: SpanExporter) -> tuple[Any, Any]:
    """Export a root span and an intent-classifier child; returns both SDK spans."""
    provider = TracerProvider(
        resource=Resource.create({"service.name": "checkout", "deployment.environment": "test"})
    )
    provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer = provider.get_tracer("checkout.router", "1.2.3")
    with tracer.start_as_current_span("POST /chat", attributes={"user.tier": "pro"}) as root:
        with tracer.start_as_current_span(
            "intent-classifier",
            kind=otel_trace.SpanKind.CLIENT,
            attributes={
                "micro_model.name": "intent-mini",
                "micro_model.label": "refund",
                "micro_model.confidence": 0.71,
                "route.name": "refunds",
                "llm.token_count.prompt": 12,
                "llm.token_count.completion": 1,
                "tags": ["a", "b"],
            },
        ) as child:
            child.add_event("decided", {"label": "refund"})
    assert provider.force_flush(10_000)
    provider.shutdown()
    return root, child


def assert_classifier_trace_stored(root: Any, child: Any) -> None:
    trace_id = root.get_span_context().trace_id.to_bytes(16, "big")
    child_id = child.get_span_context().span_id.to_bytes(8, "big")
    stored = Span.objects.get(trace_id=trace_id, span_id=child_id)
    assert stored.name == "intent-classifier"
    assert stored.kind == 3  # SPAN_KIND_CLIENT in OTLP numbering
    assert stored.parent_span_id == root.get_span_context().span_id.to_bytes(8, "big")
    assert stored.service_name == "checkout"
    assert (stored.scope_name, stored.scope_version) == ("checkout.router", "1.2.3")
    assert stored.resource_attributes["deployment.environment"] == "test"
    assert stored.attributes["tags"] == ["a", "b"]
    assert (stored.micro_model, stored.label, stored.route) == ("intent-mini", "refund", "refunds")
    assert stored.confidence == 0.71
    assert (stored.prompt_tokens, stored.completion_tokens) == (12, 1)
    assert stored.events[0]["name"] == "decided"
    assert stored.events[0]["attributes"] == {"label": "refund"}
    # stored to the microsecond PostgreSQL keeps, truncated
    assert stored.start_time == EPOCH + timedelta(microseconds=child.start_time // 1000)
    assert stored.duration_ns == child.end_time - child.start_time
    rollup = Trace.objects.get(trace_id=trace_id)
    assert (rollup.span_count, rollup.root_name) == (2, "POST /chat")
    assert rollup.cohort == {"user.tier": "pro"}
