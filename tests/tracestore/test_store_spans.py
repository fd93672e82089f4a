from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.builders import micro_model_trace
from tracestore.models import Span, Trace
from tracestore.services import create_project, store_spans

pytestmark = pytest.mark.django_db


@pytest.fixture
def project_id() -> int:
    return create_project("default").id


def test_it_stores_every_span_with_canonical_fields(project_id: int) -> None:
    trace = micro_model_trace(fallback=True)
    result = store_spans(project_id, trace.records())

    assert (result.accepted, result.inserted, result.duplicates, result.traces) == (4, 4, 0, 1)
    classifier = Span.objects.get(name="intent-classifier")
    assert classifier.micro_model == "intent-mini"
    assert classifier.model == "intent-mini"
    assert classifier.provider == "local"
    assert classifier.span_kind == "LLM"
    assert (classifier.label, classifier.route) == ("billing", "billing")
    assert classifier.confidence == 0.93
    assert (classifier.prompt_tokens, classifier.completion_tokens) == (42, 3)
    assert classifier.attributes["micro_model.confidence"] == 0.93
    fallback = Span.objects.get(name="fallback-llm")
    assert (fallback.model, fallback.provider) == ("gpt-large", "openai")
    assert fallback.is_fallback is True
    assert (fallback.prompt_tokens, fallback.completion_tokens) == (800, 120)


def test_a_resent_batch_is_stored_once(project_id: int) -> None:
    trace = micro_model_trace()
    store_spans(project_id, trace.records())
    again = store_spans(project_id, trace.records())

    assert (again.inserted, again.duplicates) == (0, 3)
    assert Span.objects.count() == 3
    assert Trace.objects.get().span_count == 3


def test_the_rollup_is_the_same_whatever_order_spans_arrive_in(project_id: int) -> None:
    trace = micro_model_trace(tier="free", language="de", fallback=True)
    root, classifier, retriever, fallback = trace.spans
    # children first, the root last, in three batches
    store_spans(project_id, trace.records([fallback]))
    store_spans(project_id, trace.records([retriever, classifier]))
    partial = Trace.objects.get()
    assert partial.root_name is None
    assert partial.span_count == 3
    store_spans(project_id, trace.records([root]))

    rollup = Trace.objects.get()
    assert rollup.root_name == "POST /chat"
    assert rollup.root_span_id == root.span_id
    assert rollup.span_count == 4
    assert rollup.duration_ns == 900_000_000
    assert rollup.service_name == "support-bot"
    assert sorted(rollup.models_used) == ["gpt-large", "intent-mini"]
    assert rollup.micro_models == ["intent-mini"]
    assert rollup.routes == ["billing"]
    assert rollup.is_fallback is True
    assert (rollup.prompt_tokens, rollup.completion_tokens) == (842, 123)
    assert rollup.cohort == {
        "user.tier": "free",
        "language": "de",
        "prompt.version": "v3",
        "task.type": "support",
    }


def test_error_spans_are_counted_in_the_rollup(project_id: int) -> None:
    trace = micro_model_trace()
    trace.span("tool-call", parent=trace.spans[0].span_id, error=True)
    store_spans(project_id, trace.records())
    assert Trace.objects.get().error_count == 1


def test_the_batch_path_runs_a_fixed_number_of_queries(project_id: int) -> None:
    records = []
    for _ in range(50):
        records += micro_model_trace(fallback=True).records()
    with CaptureQueriesContext(connection) as queries:
        result = store_spans(project_id, records)
    assert result.inserted == 200
    statements = [
        q["sql"].split()[0] for q in queries.captured_queries if "SAVEPOINT" not in q["sql"]
    ]
    # stage table, create+lock rollups, COPY, insert, recompute: whatever the batch size
    assert statements == ["CREATE", "WITH", "COPY", "INSERT", "WITH"]
