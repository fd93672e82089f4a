"""The one field table (tracestore/span_fields.py) against every positional shape of a span.

Each place that knows a span's fields by position is either derived from the table or
checked against it: here the compiled decoder's tuple and the Python decoder's rows are
decoded from one span whose every field has a value of its own and read back by the
table's names, ``SpanRecord`` and ``models.Span`` are compared field by field, and the
migrated table's column types are the table's SQL types.
"""

from __future__ import annotations

import dataclasses

import pytest
from django.db import connection
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span as OtlpSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from tests.builders import key_values
from tracestore import decode, normalise, span_copy, span_fields
from tracestore.contracts import FLAG_UNCONVERTIBLE_VALUE, SpanRecord
from tracestore.decode import decode_protobuf
from tracestore.models import Span
from tracestore.span_fields import SpanFieldMismatch, check_fields

NOW_NS = 1_750_000_000 * 10**9
START_NS = NOW_NS - 10**9


def _body() -> bytes:
    """One span whose every decoded field has a value no other field has."""
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.extend(
        key_values({"service.name": "checkout", "user.tier": "pro"})
    )
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name = "the-scope"
    scope_spans.scope.version = "9.8"
    span = OtlpSpan(
        trace_id=b"\x01" * 16,
        span_id=b"\x02" * 8,
        parent_span_id=b"\x03" * 8,
        name="classify",
        kind=OtlpSpan.SPAN_KIND_CLIENT,
        start_time_unix_nano=START_NS,
        end_time_unix_nano=START_NS + 5_000,
        status=Status(code=Status.STATUS_CODE_ERROR, message="boom"),
    )
    span.attributes.extend(
        key_values(
            {
                "micro_model.name": "intent-mini",
                "llm.provider": "Local",
                "openinference.span.kind": "LLM",
                "llm.token_count.prompt": 11,
                "llm.token_count.completion": "many",  # unconvertible: flagged
                "input.value": "hello",
                "output.value": "billing",
                "route.name": "billing",
                "micro_model.label": "billing",
                "micro_model.confidence": 0.75,
                "micro_model.expected_label": "refunds",
                "route.fallback": True,
                "retry.attempt": 2,
                "cache.hit": True,
                "route.mirrored": True,
                "route.mirror_of": "intent-large",
            }
        )
    )
    span.events.add(name="exception", time_unix_nano=START_NS + 1)
    span.links.add(trace_id=b"\x04" * 16, span_id=b"\x05" * 8)
    scope_spans.spans.append(span)
    return request.SerializeToString()


EXPECTED = {
    "trace_id": b"\x01" * 16,
    "span_id": b"\x02" * 8,
    "parent_span_id": b"\x03" * 8,
    "name": "classify",
    "kind": 3,
    "start_time_ns": START_NS,
    "end_time_ns": START_NS + 5_000,
    "status_code": 2,
    "status_message": "boom",
    "service_name": "checkout",
    "scope_name": "the-scope",
    "scope_version": "9.8",
    "resource_attributes": {"service.name": "checkout", "user.tier": "pro"},
    "events": [{"name": "exception", "time_unix_nano": START_NS + 1, "attributes": {}}],
    "links": [{"trace_id": "04" * 16, "span_id": "05" * 8, "attributes": {}}],
    "flags": FLAG_UNCONVERTIBLE_VALUE,
    "span_kind": "LLM",
    "model": "intent-mini",
    "provider": "local",
    "micro_model": "intent-mini",
    "prompt_tokens": 11,
    "completion_tokens": None,
    "input_text": "hello",
    "output_text": "billing",
    "route": "billing",
    "label": "billing",
    "confidence": 0.75,
    "expected_label": "refunds",
    "is_fallback": True,
    "is_retry": True,
    "cache_hit": True,
    "is_mirrored": True,
    "mirror_of": "intent-large",
    "cohort": {"user.tier": "pro"},
}


@pytest.mark.parametrize("native", [True, False], ids=["compiled", "reference"])
def test_each_decoders_row_holds_the_tables_fields_in_the_tables_order(native: bool) -> None:
    assert decode.NATIVE, "tracestore._otlp is not built: run python setup.py build_ext --inplace"
    (row,) = decode_protobuf(_body(), now_ns=NOW_NS, native=native).rows
    named = dict(zip(span_fields.ROW_FIELDS, row, strict=True))
    assert named.pop("attributes")["micro_model.name"] == "intent-mini"
    assert named == EXPECTED


def test_the_compiled_decoder_names_its_rows_fields_as_the_table_does() -> None:
    assert decode._otlp.ROW_FIELDS == span_fields.DECODER_FIELDS
    assert span_fields.DECODER_FIELDS[-1] == "flags"
    assert span_fields.FIRST_CANONICAL == 17


def test_span_record_has_the_rows_fields_in_order() -> None:
    assert tuple(f.name for f in dataclasses.fields(SpanRecord)) == span_fields.ROW_FIELDS
    (row,) = decode_protobuf(_body(), now_ns=NOW_NS).rows
    record = SpanRecord(*row)
    assert (record.route, record.mirror_of, record.flags) == (
        "billing",
        "intent-large",
        FLAG_UNCONVERTIBLE_VALUE,
    )


def test_the_normalisers_fields_are_the_tables_canonical_fields() -> None:
    assert normalise.CANONICAL_FIELDS == span_fields.CANONICAL_FIELDS
    fields = normalise.canonical_fields({"route.name": "refunds", "cache.hit": True}, {})
    assert list(fields) == list(span_fields.CANONICAL_FIELDS)
    assert (fields["route"], fields["cache_hit"], fields["is_retry"]) == ("refunds", True, False)


def test_the_span_model_has_a_column_for_each_field_and_nothing_else_but_received_at() -> None:
    columns = [f.column for f in Span._meta.concrete_fields]
    assert sorted(columns) == sorted([*span_fields.COPY_COLUMNS, "received_at"])


@pytest.mark.django_db
def test_the_migrated_span_table_has_the_tables_sql_types() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT attname, format_type(atttypid, NULL) FROM pg_attribute"
            " WHERE attrelid = 'tracestore_span'::regclass AND attnum > 0"
            " AND NOT attisdropped"
        )
        column_types = dict(cursor.fetchall())
    assert column_types.pop("received_at") == "timestamp with time zone"
    assert column_types == {f.column: f.sql_type for f in span_fields.SPAN_FIELDS}


def test_the_copy_rows_follow_the_tables_copy_columns() -> None:
    (row,) = decode_protobuf(_body(), now_ns=NOW_NS).rows
    (copied,) = span_copy.span_copy_rows(7, [row])
    named = dict(zip(span_fields.COPY_COLUMNS, copied, strict=True))
    assert named["project_id"] == 7
    assert named["start_time"] == START_NS // 1000 - span_copy.PG_EPOCH_US
    assert named["duration_ns"] == 5_000
    assert named["flags"] == FLAG_UNCONVERTIBLE_VALUE
    assert named["mirror_of"] == "intent-large"
    assert named["cohort"] == b'\x01{"user.tier":"pro"}'
    assert named["links"] == b'\x01[{"trace_id":"' + b"04" * 16 + b'","span_id":"' + b"05" * 8 + (
        b'","attributes":{}}]'
    )


def test_a_shape_that_disagrees_with_the_table_is_refused_with_the_first_difference() -> None:
    with pytest.raises(SpanFieldMismatch, match=r"SpanRecord: field 1 is 'route', .* says 'b'"):
        check_fields("SpanRecord", ("a", "route", "c"), ("a", "b", "c"))
    with pytest.raises(SpanFieldMismatch, match=r"2 fields, .* says 3 \(c differ\)"):
        check_fields("rows", ("a", "b"), ("a", "b", "c"))
    check_fields("rows", ("a", "b"), ("a", "b"))
