"""The demo's traffic has the shape DESIGN.md's conventions describe."""

from __future__ import annotations

import random
from collections import defaultdict
from fnmatch import fnmatchcase

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from dashboard.demo_vocabulary import (
    LANGUAGES,
    MICRO_MODELS,
    PROMPT_VERSIONS,
    QUESTIONS,
    TASK_TYPES,
    TIERS,
)
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


def test_the_live_demo_speaks_the_seeded_data_sets_vocabulary() -> None:
    spans = [span for spans in _traces(300, seed=4).values() for span in spans]
    decisions = [span for span in spans if "micro_model.name" in span.attributes]
    roots = [span for span in spans if span.parent is None]

    assert {span.attributes["micro_model.name"] for span in decisions} == {"intent-mini"}
    assert {span.attributes["llm.model_name"] for span in decisions} == {"intent-mini-v2"}
    labels = {span.attributes["micro_model.label"] for span in decisions}
    assert labels == set(MICRO_MODELS["intent-mini"].labels)
    assert {span.attributes["route.name"] for span in decisions} == labels
    models = {span.attributes.get("llm.model_name") for span in spans} - {None}
    assert models == {"intent-mini-v2", "gpt-mini", "gpt-large"}
    for key, values in (
        ("user.tier", TIERS),
        ("language", LANGUAGES),
        ("prompt.version", PROMPT_VERSIONS),
        ("task.type", TASK_TYPES),
    ):
        assert {root.attributes[key] for root in roots} == {value for value, _ in values}, key
    for span in decisions:
        truth = span.attributes.get("micro_model.expected_label")
        asked = QUESTIONS[truth] if truth else [q for qs in QUESTIONS.values() for q in qs]
        assert span.attributes["input.value"] in asked


def test_the_demo_prices_cover_every_model_the_live_demo_sends() -> None:
    from dashboard.demo_data import DEMO_PRICES

    spans = [span for spans in _traces(300, seed=5).values() for span in spans]
    models = {span.attributes.get("llm.model_name") for span in spans} - {None}

    assert models == {"intent-mini-v2", "gpt-mini", "gpt-large"}
    for model in models:
        assert any(fnmatchcase(str(model), pattern) for pattern in DEMO_PRICES), model


def test_the_fallback_answers_in_the_classifiers_labels_better_on_japanese_traffic() -> None:
    traces = _traces(4000, seed=5)
    # ja -> [fallback right, classifier right, escalated decisions with an expected label]
    right: dict[bool, list[int]] = {True: [0, 0, 0], False: [0, 0, 0]}
    for spans in traces.values():
        by_name = {span.name: span for span in spans}
        rescue, decision = by_name.get("fallback-llm"), by_name.get(CLASSIFIER)
        if rescue is None or decision is None:
            continue
        answer = rescue.attributes["micro_model.label"]
        assert answer in MICRO_MODELS[CLASSIFIER].labels
        truth = decision.attributes.get("micro_model.expected_label")
        if truth is None:
            continue
        ja = by_name["chat.request"].attributes["language"] == "ja"
        right[ja][0] += answer == truth
        right[ja][1] += decision.attributes["micro_model.label"] == truth
        right[ja][2] += 1

    # Escalated Japanese decisions: the fallback corrects nearly every wrong label, far
    # more accuracy than it adds elsewhere.
    gap = {ja: (fallback - classifier) / n for ja, (fallback, classifier, n) in right.items()}
    assert right[True][2] >= 20
    assert gap[True] > 0.2 > gap[False] >= 0
