from __future__ import annotations

import dataclasses
import random
import threading

import pytest
from django.db import DataError, connection, connections
from django.test.utils import CaptureQueriesContext

from tests.builders import micro_model_trace
from tracestore import span_fields
from tracestore.models import Span, Trace
from tracestore.services import create_project, rebuild_trace_rollups, store_spans

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
    # New spans, whatever the batch size: the transaction's timeouts set, one COPY into
    # the table; then the rollup deltas (the temporary table made sure of and emptied, one
    # COPY) and one upsert.
    assert statements == ["SELECT", "COPY", "CREATE", "COPY", "INSERT"]


def test_a_batch_overlapping_stored_spans_takes_the_stage_path_with_fixed_queries(
    project_id: int,
) -> None:
    old = micro_model_trace()
    store_spans(project_id, old.records())
    records = old.records()
    for _ in range(20):
        records += micro_model_trace().records()
    with CaptureQueriesContext(connection) as queries:
        result = store_spans(project_id, records)
    assert (result.inserted, result.duplicates) == (60, 3)
    statements = [
        q["sql"].split()[0] for q in queries.captured_queries if "SAVEPOINT" not in q["sql"]
    ]
    # The fast path's COPY fails on the stored span; the stage path (its own transaction,
    # its own timeouts) keeps the unseen spans and merges them.
    assert statements == [
        *("SELECT", "COPY"),
        *("SELECT", "CREATE", "COPY", "INSERT", "CREATE", "COPY", "INSERT"),
    ]
    assert Trace.objects.get(trace_id=old.trace_id).span_count == 3


def test_a_span_sent_twice_in_one_batch_is_stored_and_counted_once(project_id: int) -> None:
    trace = micro_model_trace()
    records = trace.records()
    result = store_spans(project_id, records + records[:1])
    assert (result.inserted, result.duplicates) == (3, 1)
    assert Trace.objects.get().span_count == 3


_ROLLUP_FIELDS = (
    "start_time",
    "end_time",
    "duration_ns",
    "root_span_id",
    "root_start_time",
    "root_name",
    "service_name",
    "span_count",
    "error_count",
    "models_used",
    "micro_models",
    "routes",
    "is_fallback",
    "prompt_tokens",
    "completion_tokens",
    "root_cohort",
    "cohort_sources",
    "cohort",
)


def _rollups() -> dict[bytes, tuple]:
    return {
        bytes(row[0]): tuple(bytes(v) if isinstance(v, memoryview) else v for v in row[1:])
        for row in Trace.objects.order_by("trace_id").values_list("trace_id", *_ROLLUP_FIELDS)
    }


@pytest.mark.parametrize("seed", range(6))
def test_merged_rollups_equal_a_rebuild_from_stored_spans_in_any_arrival_order(
    project_id: int, seed: int
) -> None:
    rng = random.Random(seed)
    spans_by_trace = []
    for i in range(8):
        trace = micro_model_trace(
            tier=rng.choice(["free", "pro"]), fallback=rng.random() < 0.5, route=f"r{i % 3}"
        )
        # cohort values that disagree between child spans, and a second parentless span
        trace.span("worker", parent=trace.spans[0].span_id, offset_ms=3, attrs={"language": "fr"})
        trace.span(
            "late-child", parent=trace.spans[0].span_id, offset_ms=1, attrs={"language": "it"}
        )
        if rng.random() < 0.5:
            trace.span("orphan-root", offset_ms=-5, attrs={"user.tier": "orphan"})
        spans_by_trace += [(trace, span) for span in trace.spans]
    rng.shuffle(spans_by_trace)
    position = 0
    while position < len(spans_by_trace):
        size = rng.randint(1, 9)
        chunk = spans_by_trace[position : position + size]
        position += size
        records = [r for trace, span in chunk for r in trace.records([span])]
        if rng.random() < 0.3:
            records += records[:1]  # a duplicate inside the batch
        store_spans(project_id, records)
        if rng.random() < 0.3:
            store_spans(project_id, records)  # an exporter retry

    merged = _rollups()
    rebuild_trace_rollups(project_id, list(merged))
    assert _rollups() == merged
    assert sum(row[7] for row in merged.values()) == len(spans_by_trace)


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_of_the_same_traces_lose_no_update() -> None:
    """Four writers (as four receivers would) store interleaved pieces of the same traces
    at once; the rollups must equal a rebuild from the stored spans."""
    project_id = create_project("concurrent").id
    traces = [micro_model_trace(fallback=i % 2 == 0, tier=f"t{i}") for i in range(30)]
    pieces = [trace.records([span]) for trace in traces for span in trace.spans]
    random.Random(7).shuffle(pieces)
    lanes = [pieces[i::4] for i in range(4)]
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def write(lane: list) -> None:
        try:
            start.wait(timeout=10)
            for position in range(0, len(lane), 3):
                store_spans(
                    project_id, [r for piece in lane[position : position + 3] for r in piece]
                )
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=write, args=(lane,)) for lane in lanes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    merged = _rollups()
    assert len(merged) == 30
    assert sum(row[7] for row in merged.values()) == sum(len(t.spans) for t in traces)
    rebuild_trace_rollups(project_id, list(merged))
    assert _rollups() == merged


def test_a_record_whose_integers_do_not_fit_their_columns_is_refused_not_wrapped(
    project_id: int,
) -> None:
    records = micro_model_trace().records()
    records[1] = dataclasses.replace(records[1], prompt_tokens=2**31)
    with pytest.raises(DataError, match="out of range"):
        store_spans(project_id, records)
    assert Span.objects.count() == 0


def test_the_binary_copy_types_are_the_span_table_column_types() -> None:
    # Binary COPY sends each value in the format of the type named here; a mismatch
    # would be refused, or, between integer widths, stored wrapped around.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT attname, format_type(atttypid, NULL) FROM pg_attribute"
            " WHERE attrelid = 'tracestore_span'::regclass AND attnum > 0"
            " AND NOT attisdropped"
        )
        column_types = dict(cursor.fetchall())
    expected = [
        # jsonb and timestamptz go out as their binary formats' bytes and int8
        {"jsonb": "bytea", "timestamp with time zone": "bigint"}.get(
            column_types[name], column_types[name]
        )
        for name in span_fields.COPY_COLUMNS
    ]
    canonical = {
        "bigint": "int8",
        "smallint": "int2",
        "integer": "int4",
        "double precision": "float8",
        "boolean": "bool",
    }
    assert [canonical.get(t, t) for t in expected] == list(span_fields.COPY_TYPES)
    assert len(span_fields.COPY_TYPES) == len(span_fields.COPY_COLUMNS)


def test_timestamps_are_stored_to_the_microsecond_either_side_of_2000(project_id: int) -> None:
    # Binary COPY counts timestamps in microseconds from 2000-01-01 UTC.
    records = micro_model_trace().records()
    starts = {
        records[0].span_id: 946_684_799_999_999_999,  # 1999-12-31T23:59:59.999999999Z
        records[1].span_id: 1_000,  # 1970-01-01T00:00:00.000001Z
        records[2].span_id: 1_795_000_000_123_456_789,
    }
    records = [
        dataclasses.replace(r, start_time_ns=starts[r.span_id], end_time_ns=starts[r.span_id])
        for r in records
    ]
    store_spans(project_id, records)
    stored = {bytes(s.span_id): s.start_time for s in Span.objects.all()}
    assert {k: v.isoformat() for k, v in stored.items()} == {
        records[0].span_id: "1999-12-31T23:59:59.999999+00:00",
        records[1].span_id: "1970-01-01T00:00:00.000001+00:00",
        records[2].span_id: "2026-11-18T11:06:40.123456+00:00",
    }
