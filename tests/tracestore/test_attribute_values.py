"""No attribute value fails a span: every OTLP AnyValue, under every key the normaliser
reads, through the compiled decoder, the Python reference, the OTLP/JSON parser and the
storage rows (property-based, with hypothesis)."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.builders import otlp_json
from tracestore.contracts import FLAG_UNCONVERTIBLE_VALUE
from tracestore.decode import decode_protobuf
from tracestore.normalise import _KNOWN_KEYS, DEFAULT_COHORT_DIMENSION_KEYS
from tracestore.otlp_json import parse_export_request
from tracestore.rollups import rollup_deltas
from tracestore.span_copy import span_copy_rows

NOW_NS = 1_750_000_000 * 10**9
_INT8 = 2**63
_INT4 = 2**31

# Text that looks like a number is what reaches the numeric conversions.
_NUMBER_TEXT = st.sampled_from(
    ["1e400", "-1e400", "Infinity", "-Infinity", "NaN", "inf", "9" * 40, "3e9", "12", " 7 ", ""]
)
_SCALARS = st.one_of(
    st.builds(lambda v: AnyValue(string_value=v), st.text(max_size=40) | _NUMBER_TEXT),
    st.builds(lambda v: AnyValue(bool_value=v), st.booleans()),
    st.builds(
        lambda v: AnyValue(int_value=v),
        st.integers(-_INT8, _INT8 - 1) | st.sampled_from([-_INT8, _INT8 - 1, _INT4, -_INT4 - 1]),
    ),
    st.builds(lambda v: AnyValue(double_value=v), st.floats(allow_nan=True, allow_infinity=True)),
    st.builds(lambda v: AnyValue(bytes_value=v), st.binary(max_size=24)),
)


def _array(values: list[AnyValue]) -> AnyValue:
    out = AnyValue()
    out.array_value.values.extend(values)
    return out


def _kvlist(items: list[tuple[str, AnyValue]]) -> AnyValue:
    out = AnyValue()
    out.kvlist_value.values.extend(KeyValue(key=k, value=v) for k, v in items)
    return out


_ANY_VALUES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.builds(_array, st.lists(inner, max_size=4))
        | st.builds(_kvlist, st.lists(st.tuples(st.text(max_size=8), inner), max_size=4))
    ),
    max_leaves=12,
)
_KEYS = st.sampled_from(sorted(_KNOWN_KEYS | set(DEFAULT_COHORT_DIMENSION_KEYS)))


def _body(attributes: list[tuple[str, AnyValue]]) -> bytes:
    request = ExportTraceServiceRequest()
    scope_spans = request.resource_spans.add().scope_spans.add()
    for index in range(2):
        span = Span(
            trace_id=b"\x01" * 16,
            span_id=bytes([index + 1]) * 8,
            name="poisoned" if index == 0 else "ordinary",
            start_time_unix_nano=NOW_NS - 10**9,
            end_time_unix_nano=NOW_NS,
        )
        if index == 0:
            span.attributes.extend(KeyValue(key=k, value=v) for k, v in attributes)
        else:
            span.attributes.add(key="llm.token_count.prompt").value.int_value = 12
        scope_spans.spans.append(span)
    return request.SerializeToString()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_KEYS, _ANY_VALUES), max_size=8))
def test_any_value_under_any_canonical_key_gives_the_same_storable_rows(
    attributes: list[tuple[str, AnyValue]],
) -> None:
    body = _body(attributes)
    compiled = decode_protobuf(body, now_ns=NOW_NS, native=True)
    reference = decode_protobuf(body, now_ns=NOW_NS, native=False)
    assert compiled.rows == reference.rows
    assert len(reference.rows) == 2 and reference.rejected == 0

    # OTLP/JSON: the same request in its JSON form decodes to the same rows.
    document = json.dumps(otlp_json(ExportTraceServiceRequest.FromString(body)))
    from_json = decode_protobuf(
        parse_export_request(document.encode()).SerializeToString(), now_ns=NOW_NS
    )
    assert from_json.rows == reference.rows

    poisoned, ordinary = reference.rows
    assert ordinary[16] == 0 and ordinary[21] == 12
    # Every integer the row carries fits its column; storage takes the rows as they are.
    for tokens in (poisoned[21], poisoned[22]):
        assert tokens is None or -_INT4 <= tokens < _INT4
    confidence: Any = poisoned[27]
    assert confidence is None or math.isfinite(confidence)
    assert len(span_copy_rows(1, reference.rows, compiled.attributes_json)) == 2
    assert len(rollup_deltas(reference.rows)) == 1


def test_an_unconvertible_token_count_is_flagged_by_both_decoders() -> None:
    body = _body([("llm.token_count.prompt", AnyValue(double_value=float("inf")))])
    for native in (True, False):
        poisoned, ordinary = decode_protobuf(body, now_ns=NOW_NS, native=native).rows
        assert poisoned[16] == FLAG_UNCONVERTIBLE_VALUE and poisoned[21] is None
        assert poisoned[12] == {"llm.token_count.prompt": "Infinity"}
        assert ordinary[16] == 0
