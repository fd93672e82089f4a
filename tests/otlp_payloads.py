"""Synthetic support-bot exports: per trace a root span with the cohort attributes, a
micro-model classifier, a retriever and, for one trace in five, a fallback LLM call
(~700 bytes a span). The load bench/ingest.py and bench/ingest_stages.py send, and the
payload tests/tracestore/test_native_decode.py decodes both ways."""

from __future__ import annotations

import random
import time

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

TIERS = ["free", "pro", "enterprise"]
LANGS = ["en", "de", "fr", "es", "ja"]
ROUTES = ["billing", "refunds", "tech_support", "account", "sales"]
TEMPLATE = (
    "Classify the customer message into one of: billing, refunds, tech_support, account, "
    "sales. Answer with the label only.\n\nMessage: {question}"
)
ANSWER = (
    "I can see two charges of $49.00 on your account this month. The second one is a "
    "duplicate authorisation and will be refunded automatically within three business days."
)
DOCS = [
    "Refunds for duplicate charges are issued within three business days of the claim.",
    "Enterprise accounts can change their billing contact from the admin console.",
    "Password resets require access to the email address registered on the account.",
]


def _kv(key: str, value: object) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


def build_request(spans_wanted: int, rng: random.Random) -> tuple[bytes, int]:
    """One ExportTraceServiceRequest of about ``spans_wanted`` spans (~700 bytes each)."""
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.extend(
        [_kv("service.name", "support-bot"), _kv("deployment.environment", "prod")]
    )
    scope = resource_spans.scope_spans.add()
    scope.scope.name = "openinference.instrumentation"
    spans = scope.spans
    now = time.time_ns()
    count = 0
    while count < spans_wanted:
        trace_id = rng.randbytes(16)
        start = now - rng.randint(0, 3_600) * 10**9
        root_id = rng.randbytes(8)
        route = rng.choice(ROUTES)
        question = f"Customer question {rng.randint(0, 10**6)} about {route}: why was I charged?"
        root = spans.add(
            trace_id=trace_id,
            span_id=root_id,
            name="POST /chat",
            kind=2,
            start_time_unix_nano=start,
            end_time_unix_nano=start + 900_000_000,
        )
        root.attributes.extend(
            [
                _kv("user.tier", rng.choice(TIERS)),
                _kv("language", rng.choice(LANGS)),
                _kv("prompt.version", f"v{rng.randint(1, 4)}"),
                _kv("task.type", "support"),
                _kv("input.value", question),
                _kv("output.value", ANSWER),
                _kv("http.method", "POST"),
                _kv("http.route", "/chat"),
                _kv("session.id", f"sess-{rng.randint(0, 10**9):09d}"),
                _kv("user.id", f"user-{rng.randint(0, 10**7):07d}"),
            ]
        )
        classifier = spans.add(
            trace_id=trace_id,
            span_id=rng.randbytes(8),
            parent_span_id=root_id,
            name="intent-classifier",
            kind=3,
            start_time_unix_nano=start + 5_000_000,
            end_time_unix_nano=start + 35_000_000,
        )
        classifier.attributes.extend(
            [
                _kv("openinference.span.kind", "LLM"),
                _kv("micro_model.name", "intent-mini"),
                _kv("llm.model_name", "intent-mini-v2"),
                _kv("llm.provider", "local"),
                _kv("micro_model.label", route),
                _kv("micro_model.confidence", round(rng.uniform(0.4, 0.99), 3)),
                _kv("route.name", route),
                _kv("llm.token_count.prompt", rng.randint(20, 80)),
                _kv("llm.token_count.completion", 2),
                _kv("input.value", question),
                _kv("output.value", route),
                _kv("llm.invocation_parameters", '{"temperature": 0, "max_tokens": 4}'),
                _kv("llm.prompt_template.template", TEMPLATE),
                _kv("llm.prompt_template.version", "intent-v7"),
            ]
        )
        retriever = spans.add(
            trace_id=trace_id,
            span_id=rng.randbytes(8),
            parent_span_id=root_id,
            name="retrieve",
            kind=1,
            start_time_unix_nano=start + 40_000_000,
            end_time_unix_nano=start + 90_000_000,
        )
        retriever.attributes.extend(
            [
                _kv("openinference.span.kind", "RETRIEVER"),
                _kv("retrieval.documents.0.document.content", rng.choice(DOCS)),
                _kv("retrieval.documents.0.document.score", 0.82),
                _kv("retrieval.documents.0.document.id", f"kb-{rng.randint(0, 9999)}"),
                _kv("retrieval.documents.1.document.content", rng.choice(DOCS)),
                _kv("retrieval.documents.1.document.score", 0.61),
                _kv("input.value", question),
            ]
        )
        count += 3
        if rng.random() < 0.2 and count < spans_wanted:
            fallback = spans.add(
                trace_id=trace_id,
                span_id=rng.randbytes(8),
                parent_span_id=root_id,
                name="fallback-llm",
                kind=3,
                start_time_unix_nano=start + 100_000_000,
                end_time_unix_nano=start + 800_000_000,
            )
            fallback.attributes.extend(
                [
                    _kv("gen_ai.system", "openai"),
                    _kv("gen_ai.request.model", "gpt-large"),
                    _kv("gen_ai.usage.input_tokens", rng.randint(400, 1200)),
                    _kv("gen_ai.usage.output_tokens", rng.randint(50, 300)),
                    _kv("route.fallback", True),
                    _kv("gen_ai.completion", ANSWER),
                ]
            )
            count += 1
    return request.SerializeToString(), count


def build_requests(total_spans: int, batch: int, seed: int) -> list[tuple[bytes, int]]:
    rng = random.Random(seed)
    requests: list[tuple[bytes, int]] = []
    made = 0
    while made < total_spans:
        payload, count = build_request(min(batch, total_spans - made), rng)
        requests.append((payload, count))
        made += count
    return requests
