"""Test data builders: span trees as OTLP protobuf requests, or decoded SpanRecords."""

from __future__ import annotations

import base64
import os
import time
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from tracestore.contracts import SpanRecord
from tracestore.decode import decode_request


def any_value(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, list | tuple):
        out = AnyValue()
        out.array_value.values.extend(any_value(v) for v in value)
        return out
    if isinstance(value, dict):
        out = AnyValue()
        out.kvlist_value.values.extend(key_values(value))
        return out
    return AnyValue(string_value=str(value))


def key_values(attrs: dict[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=k, value=any_value(v)) for k, v in attrs.items()]


@dataclass
class TraceBuilder:
    """Builds one trace. ``span()`` returns the new span's id to parent others on it."""

    service: str = "support-bot"
    resource: dict[str, Any] = field(default_factory=dict)
    trace_id: bytes = field(default_factory=lambda: os.urandom(16))
    start_ns: int = field(default_factory=lambda: time.time_ns() - 10**9)
    spans: list[Span] = field(default_factory=list)

    def span(
        self,
        name: str,
        *,
        parent: bytes | None = None,
        offset_ms: float = 0,
        duration_ms: float = 10,
        attrs: dict[str, Any] | None = None,
        error: bool = False,
        span_id: bytes | None = None,
        kind: int = Span.SPAN_KIND_INTERNAL,
    ) -> bytes:
        sid = span_id or os.urandom(8)
        start = self.start_ns + int(offset_ms * 1e6)
        span = Span(
            trace_id=self.trace_id,
            span_id=sid,
            parent_span_id=parent or b"",
            name=name,
            kind=kind,
            start_time_unix_nano=start,
            end_time_unix_nano=start + int(duration_ms * 1e6),
            attributes=key_values(attrs or {}),
        )
        if error:
            span.status.code = Status.STATUS_CODE_ERROR
            span.status.message = "boom"
        self.spans.append(span)
        return sid

    @property
    def trace_hex(self) -> str:
        return self.trace_id.hex()

    def request(self, spans: list[Span] | None = None) -> ExportTraceServiceRequest:
        request = ExportTraceServiceRequest()
        resource_spans = request.resource_spans.add()
        resource_spans.resource.attributes.extend(
            key_values({"service.name": self.service, **self.resource})
        )
        scope_spans = resource_spans.scope_spans.add()
        scope_spans.scope.name = "tests"
        scope_spans.spans.extend(self.spans if spans is None else spans)
        return request

    def records(self, spans: list[Span] | None = None) -> list[SpanRecord]:
        return decode_request(self.request(spans)).records


def micro_model_trace(
    *,
    tier: str = "enterprise",
    language: str = "en",
    route: str = "billing",
    label: str = "billing",
    confidence: float = 0.93,
    fallback: bool = False,
    expected: str | None = None,
) -> TraceBuilder:
    """A realistic micro-model trace: root, intent classifier, retriever, optional fallback."""
    decision: dict[str, Any] = {"micro_model.expected_label": expected} if expected else {}
    trace = TraceBuilder()
    root = trace.span(
        "POST /chat",
        duration_ms=900,
        attrs={
            "user.tier": tier,
            "language": language,
            "prompt.version": "v3",
            "task.type": "support",
            "input.value": "Why was I charged twice this month?",
        },
    )
    trace.span(
        "intent-classifier",
        parent=root,
        offset_ms=5,
        duration_ms=30,
        attrs={
            "openinference.span.kind": "LLM",
            "micro_model.name": "intent-mini",
            "llm.model_name": "intent-mini-v2",
            "llm.provider": "local",
            "micro_model.label": label,
            "micro_model.confidence": confidence,
            "route.name": route,
            "llm.token_count.prompt": 42,
            "llm.token_count.completion": 3,
            "input.value": "Why was I charged twice this month?",
            "output.value": label,
            **decision,
        },
    )
    trace.span(
        "retrieve",
        parent=root,
        offset_ms=40,
        duration_ms=50,
        attrs={
            "openinference.span.kind": "RETRIEVER",
            "retrieval.documents.0.document.content": "Duplicate charges are refunded in 3 days.",
        },
    )
    if fallback:
        trace.span(
            "fallback-llm",
            parent=root,
            offset_ms=100,
            duration_ms=700,
            attrs={
                "gen_ai.system": "openai",
                "gen_ai.request.model": "gpt-large",
                "gen_ai.usage.input_tokens": 800,
                "gen_ai.usage.output_tokens": 120,
                "route.fallback": True,
            },
        )
    return trace


# Attribute values with no number for their canonical column, as exporters have sent them:
# (key, value sent, value as stored in ``attributes``).
POISON_VALUES = [
    ("llm.token_count.prompt", float("inf"), "Infinity"),
    ("gen_ai.usage.output_tokens", float("-inf"), "-Infinity"),
    ("llm.token_count.prompt", "1e400", "1e400"),
    ("retry.attempt", "9" * 400, "9" * 400),
    ("micro_model.confidence", float("nan"), "NaN"),
]


def poisoned_trace(key: str, value: Any, valid: int = 4) -> TraceBuilder:
    """``valid`` ordinary spans and one named "poisoned" that carries ``key: value``."""
    trace = TraceBuilder()
    for index in range(valid):
        trace.span(f"valid-{index}", attrs={"llm.token_count.prompt": 7, "retry.attempt": 1})
    trace.span("poisoned", attrs={key: value, "route.name": "billing"})
    return trace


def otlp_json(request: ExportTraceServiceRequest) -> dict[str, Any]:
    """The request as an OTLP/JSON document: protobuf's JSON mapping, but ids in hex."""
    from google.protobuf import json_format

    document = json_format.MessageToDict(request)
    for resource_spans in document.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
    return document
