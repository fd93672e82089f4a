"""The demo's traffic has the shape DESIGN.md's conventions describe."""

from __future__ import annotations

import random
from collections import defaultdict

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from microlens.demo import CLASSIFIER, FALLBACK_MODEL, record_traces

NOW_NS = 1_800_000_000 * 10**9


def _traces(count: int, seed: int) -> dict[int, list[ReadableSpan]]:
    captured = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(captured))
    record_traces(provider.get_tracer("test"), count, random.Random(seed), NOW_NS)
    by_trace: dict[int, list[ReadableSpan]] = defaultdict(list)
    for span in captured.get_finished_spans():
        by_trace[span.context.trace_id].append(span)
    return by_trace


def test_every_trace_has_a_root_with_the_cohort_attributes() -> None:
    traces = _traces(50, seed=1)

    assert len(traces) == 50
    for spans in traces.values():
        [root] = [span for span in spans if span.parent is None]
        assert root.name == "chat.request"
        assert {"user.tier", "language", "prompt.version", "task.type"} <= set(root.attributes)
        assert NOW_NS - 3600 * 10**9 <= root.start_time < root.end_time
        assert all(root.start_time <= s.start_time <= s.end_time <= root.end_time for s in spans)


def test_classifier_and_retriever_spans_carry_the_conventions() -> None:
    spans = [span for spans in _traces(50, seed=2).values() for span in spans]

    classifier = next(span for span in spans if span.name == CLASSIFIER)
    assert classifier.attributes["micro_model.name"] == CLASSIFIER
    assert classifier.attributes["route.name"]
    assert 0 < classifier.attributes["micro_model.confidence"] < 1
    assert classifier.attributes["llm.token_count.prompt"] > 0
    assert classifier.attributes["micro_model.label"] == classifier.attributes["output.value"]
    retriever = next(span for span in spans if span.name == "retrieve-docs")
    assert retriever.attributes["openinference.span.kind"] == "RETRIEVER"
    assert retriever.attributes["retrieval.documents.0.document.content"]


def test_about_fifteen_percent_of_traces_fall_back_to_the_large_model() -> None:
    traces = _traces(2000, seed=3)

    fallbacks = [
        span for spans in traces.values() for span in spans if span.attributes.get("route.fallback")
    ]
    assert 0.12 < len(fallbacks) / len(traces) < 0.18
    assert {span.attributes["llm.model_name"] for span in fallbacks} == {FALLBACK_MODEL}
