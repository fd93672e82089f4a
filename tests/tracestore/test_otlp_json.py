"""OTLP/JSON decoding: golden payloads agree with the protobuf path; the spec's rules."""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from tests.builders import key_values
from tracestore.contracts import FLAG_TRUNCATED
from tracestore.decode import decode_request
from tracestore.otlp_json import OtlpJsonError, parse_export_request

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "otlp"
NOW_NS = 1_900_000_000 * 10**9
TRACE_HEX = "5B8EFFF798038103D269B633813FC60C"
SPAN_HEX = "EEE19B7EC3C1B174"


def _body(document: Any) -> bytes:
    return json.dumps(document).encode()


def _one_span(**span: Any) -> dict[str, Any]:
    base = {"traceId": TRACE_HEX, "spanId": SPAN_HEX, "name": "s"}
    return {"resourceSpans": [{"scopeSpans": [{"spans": [{**base, **span}]}]}]}


def _span(request: ExportTraceServiceRequest) -> Span:
    return request.resource_spans[0].scope_spans[0].spans[0]


def test_the_sdk_payload_decodes_to_the_same_records_as_json_and_as_protobuf() -> None:
    protobuf = ExportTraceServiceRequest.FromString(
        gzip.decompress((FIXTURES / "sdk_traces.pb.gz").read_bytes())
    )
    from_json = parse_export_request((FIXTURES / "sdk_traces.json").read_bytes())

    assert from_json == protobuf
    records = decode_request(protobuf, now_ns=NOW_NS).records
    assert decode_request(from_json, now_ns=NOW_NS).records == records
    assert sorted(r.name for r in records) == ["POST /chat", "fallback-llm", "intent-classifier"]
    classifier = next(r for r in records if r.name == "intent-classifier")
    assert (classifier.micro_model, classifier.label, classifier.route) == (
        "intent-mini",
        "billing",
        "billing",
    )


def test_the_spec_example_decodes_field_for_field() -> None:
    request = parse_export_request((FIXTURES / "spec_trace.json").read_bytes())

    expected = ExportTraceServiceRequest()
    resource_spans = expected.resource_spans.add()
    resource_spans.resource.attributes.extend(
        key_values({"service.name": "my.service", "user.tier": "pro"})
    )
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name = "my.library"
    scope_spans.scope.version = "1.0.0"
    scope_spans.scope.attributes.extend(key_values({"my.scope.attribute": "some scope attribute"}))
    span = scope_spans.spans.add(
        trace_id=bytes.fromhex(TRACE_HEX),
        span_id=bytes.fromhex(SPAN_HEX),
        parent_span_id=bytes.fromhex("EEE19B7EC3C1B173"),
        name="I'm a server span",
        kind=Span.SPAN_KIND_SERVER,
        start_time_unix_nano=1544712660000000000,
        end_time_unix_nano=1544712661000000000,
        attributes=key_values(
            {
                "my.span.attr": "some value",
                "micro_model.name": "intent-mini",
                "micro_model.label": "refund",
                "micro_model.confidence": 0.71,
                "llm.token_count.prompt": 12,
                "llm.token_count.completion": 1,
                "route.fallback": True,
                "tags": ["a", 2],
                "nested": {"inner": float("nan")},
                "raw": b"\x00\x01\x02",
            }
        ),
    )
    span.events.add(
        time_unix_nano=1544712660500000000,
        name="decided",
        attributes=key_values({"label": "refund"}),
    )
    span.links.add(
        trace_id=bytes.fromhex("0af7651916cd43dd8448eb211c80319c"),
        span_id=bytes.fromhex("b7ad6b7169203331"),
        attributes=key_values({"link.reason": "retry-of"}),
    )
    span.status.code = Status.STATUS_CODE_ERROR
    span.status.message = "upstream timeout"
    # NaN != NaN, so compare the wire form.
    assert request.SerializeToString() == expected.SerializeToString()

    record = decode_request(request, now_ns=NOW_NS).records[0]
    assert record.trace_id.hex() == TRACE_HEX.lower()
    assert record.attributes["nested"] == {"inner": "NaN"}
    assert record.attributes["tags"] == ["a", 2]
    assert (record.prompt_tokens, record.completion_tokens, record.is_fallback) == (12, 1, True)
    assert record.cohort == {"user.tier": "pro"}


def test_json_format_alone_would_read_hex_ids_as_base64_garbage() -> None:
    request = json_format.ParseDict(_one_span(), ExportTraceServiceRequest())
    assert len(_span(request).trace_id) == 24
    assert _span(parse_export_request(_body(_one_span()))).trace_id == bytes.fromhex(TRACE_HEX)


def test_ids_are_hex_in_either_case() -> None:
    upper = parse_export_request(_body(_one_span()))
    lower = parse_export_request(
        _body(_one_span(traceId=TRACE_HEX.lower(), spanId=SPAN_HEX.lower()))
    )
    assert upper == lower


@pytest.mark.parametrize(
    ("field", "value", "attribute", "expected"),
    [
        pytest.param(
            "startTimeUnixNano",
            "1544712660000000000",
            "start_time_unix_nano",
            1544712660000000000,
            id="int64-string",
        ),
        pytest.param(
            "startTimeUnixNano",
            1544712660000000000,
            "start_time_unix_nano",
            1544712660000000000,
            id="int64-number",
        ),
        pytest.param("kind", 3, "kind", Span.SPAN_KIND_CLIENT, id="enum-integer"),
        pytest.param("kind", "SPAN_KIND_CLIENT", "kind", Span.SPAN_KIND_CLIENT, id="enum-name"),
        pytest.param("kind", "3", "kind", Span.SPAN_KIND_CLIENT, id="enum-integer-string"),
    ],
)
def test_numbers_and_enums_take_every_spelling_the_spec_allows(
    field: str, value: Any, attribute: str, expected: int
) -> None:
    span = _span(parse_export_request(_body(_one_span(**{field: value}))))
    assert getattr(span, attribute) == expected


def test_snake_case_field_names_are_accepted() -> None:
    document = {
        "resource_spans": [
            {
                "scope_spans": [
                    {
                        "spans": [
                            {
                                "trace_id": TRACE_HEX,
                                "span_id": SPAN_HEX,
                                "start_time_unix_nano": "5",
                                "attributes": [{"key": "k", "value": {"int_value": "7"}}],
                            }
                        ]
                    }
                ]
            }
        ]
    }
    span = _span(parse_export_request(_body(document)))
    assert (span.trace_id.hex(), span.start_time_unix_nano) == (TRACE_HEX.lower(), 5)
    assert span.attributes[0].value.int_value == 7


def test_unknown_fields_are_ignored() -> None:
    document = _one_span(futureField={"x": 1}, attributes=[{"key": "k", "value": {"new": 1}}])
    document["somethingNew"] = [1, 2]
    span = _span(parse_export_request(_body(document)))
    assert span.name == "s"
    assert span.attributes[0].key == "k"


def test_a_span_with_an_id_that_is_not_hex_is_rejected_and_the_others_kept() -> None:
    document = _one_span()
    spans = document["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans.append({"traceId": "not-hex-at-all", "spanId": SPAN_HEX, "name": "bad-trace"})
    spans.append({"traceId": TRACE_HEX, "spanId": "ABC", "name": "odd-span-id"})
    result = decode_request(parse_export_request(_body(document)), now_ns=NOW_NS)
    assert [r.name for r in result.records] == ["s"]
    assert result.rejected == 2


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(b"{not json", "not valid JSON", id="not-json"),
        pytest.param(b'{"resourceSpans": []}\xff', "not valid UTF-8", id="invalid-utf8"),
        pytest.param(b"[]", "must be a JSON object", id="array-body"),
        pytest.param(b'{"resourceSpans": {}}', "must be a list", id="resource-spans-object"),
        pytest.param(_body(_one_span(traceId=12)), "traceId must be a hex string", id="number-id"),
        pytest.param(_body(_one_span(name=5)), "name must be a string", id="number-name"),
        pytest.param(
            _body(_one_span(attributes=[{"key": "k", "value": {"intValue": "x"}}])),
            "intValue must be an integer",
            id="int-not-a-number",
        ),
        pytest.param(
            _body(_one_span(attributes=[{"key": "k", "value": {"boolValue": "true"}}])),
            "boolValue must be true or false",
            id="bool-as-string",
        ),
        pytest.param(_body(_one_span(kind="SPAN_KIND_NOPE")), "kind", id="unknown-enum-name"),
        pytest.param(_body(_one_span(flags=2**40)), "resourceSpans[0]", id="uint32-out-of-range"),
    ],
)
def test_a_broken_document_is_refused_with_a_message(body: bytes, message: str) -> None:
    with pytest.raises(OtlpJsonError) as caught:
        parse_export_request(body)
    assert message in str(caught.value)


def test_an_empty_body_or_object_is_an_empty_request() -> None:
    assert parse_export_request(b"") == ExportTraceServiceRequest()
    assert parse_export_request(b"{}") == ExportTraceServiceRequest()


def test_deeply_nested_values_are_capped_not_refused() -> None:
    value: dict[str, Any] = {"stringValue": "leaf"}
    for level in range(200):
        value = {"kvlistValue": {"values": [{"key": f"k{level}", "value": value}]}}
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(5000)  # as build_app() does for the receiver process
    try:
        request = parse_export_request(_body(_one_span(attributes=[{"key": "d", "value": value}])))
    finally:
        sys.setrecursionlimit(limit)
    record = decode_request(request, now_ns=NOW_NS).records[0]
    depth, node = 0, record.attributes["d"]
    while isinstance(node, dict):
        node = next(iter(node.values()))
        depth += 1
    assert node == "[nesting too deep]"
    assert depth == 16
    assert record.flags & FLAG_TRUNCATED


def test_a_truncated_span_name_or_status_message_flags_the_span() -> None:
    from tracestore.decode import Limits

    limits = Limits(max_value_bytes=64)
    long_name = _one_span(name="n" * 100)
    long_status = _one_span(status={"code": 2, "message": "m" * 100})
    short = _one_span(name="n" * 10, status={"code": 2, "message": "m" * 10})

    named = decode_request(parse_export_request(_body(long_name)), limits, NOW_NS)
    statused = decode_request(parse_export_request(_body(long_status)), limits, NOW_NS)
    plain = decode_request(parse_export_request(_body(short)), limits, NOW_NS)

    assert named.records[0].name == "n" * 64 + "…[truncated]"
    assert named.records[0].flags & FLAG_TRUNCATED
    assert named.truncated_values == 1
    assert statused.records[0].status_message == "m" * 64 + "…[truncated]"
    assert statused.records[0].flags & FLAG_TRUNCATED
    assert plain.records[0].flags & FLAG_TRUNCATED == 0
    assert plain.truncated_values == 0
