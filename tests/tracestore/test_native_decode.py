"""The compiled decoder (tracestore/_otlp.c) against the reference, decode_request.

decode_protobuf(native=True) must give what parsing the body with the protobuf runtime and
decoding it in Python gives: the same rows, the same rejected spans and reasons, the same
counts, the same error for a body that is not a request; and the attributes' jsonb byte for
byte as span_copy.jsonb writes it. What it hands back to the general path is part of the
contract too: the tests check that ordinary exports are decoded natively.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.descriptor import FieldDescriptor
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from tests import decoder_fuzz as fuzz
from tests.builders import any_value, key_values, micro_model_trace
from tests.otlp_payloads import build_requests
from tracestore import decode
from tracestore.contracts import FLAG_END_BEFORE_START, FLAG_TRUNCATED, FLAG_ZERO_TIMESTAMP
from tracestore.decode import Limits, decode_protobuf
from tracestore.otlp_protobuf import OtlpProtobufError
from tracestore.span_copy import jsonb as _jsonb
from tracestore.span_fields import (
    ATTRIBUTES,
    END_TIME_NS,
    EVENTS,
    FLAGS,
    KIND,
    LINKS,
    MICRO_MODEL,
    NAME,
    RESOURCE_ATTRIBUTES,
    SCOPE_NAME,
    SERVICE_NAME,
    START_TIME_NS,
    STATUS_CODE,
    STATUS_MESSAGE,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "instrumentations"
NOW_NS = 1_750_000_000 * 10**9


def _outcome(body: bytes, native: bool, limits: Limits | None = None) -> Any:
    try:
        result = decode_protobuf(body, limits, NOW_NS, native=native)
    except OtlpProtobufError as exc:
        return ("error", str(exc))
    encoded = [
        given if given is not None else _jsonb(row[ATTRIBUTES])
        for given, row in zip(
            [*result.attributes_json, *[None] * (len(result.rows) - len(result.attributes_json))],
            result.rows,
            strict=True,
        )
    ]
    return (
        result.rows,
        encoded,
        result.rejected,
        result.reasons,
        result.truncated_values,
        result.dropped_attributes,
    )


def _same(body: bytes, limits: Limits | None = None) -> Any:
    """Decode both ways; they must agree. Returns the native outcome."""
    reference = _outcome(body, native=False, limits=limits)
    compiled = _outcome(body, native=True, limits=limits)
    assert compiled == reference
    if reference[0] != "error":
        # The jsonb the native decoder wrote is the reference's, byte for byte.
        assert reference[1] == [_jsonb(row[ATTRIBUTES]) for row in reference[0]]
    return compiled


def _handled_natively(body: bytes, limits: Limits | None = None) -> bool:
    limits = limits or Limits()
    out = decode._otlp.decode(
        body,
        NOW_NS,
        limits.max_value_bytes,
        limits.max_attributes,
        decode._Sanitiser(limits, decode.DecodeResult()).text,
    )
    return out is not None


def _request(*spans: Span, resource: dict[str, Any] | None = None, scope: str = "s") -> bytes:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.extend(key_values(resource or {"service.name": "svc"}))
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name = scope
    scope_spans.spans.extend(spans)
    return request.SerializeToString()


def _span(**fields: Any) -> Span:
    attrs = fields.pop("attrs", {})
    span = Span(
        trace_id=fields.pop("trace_id", b"\x01" * 16),
        span_id=fields.pop("span_id", b"\x02" * 8),
        name=fields.pop("name", "classify"),
        start_time_unix_nano=fields.pop("start", NOW_NS - 10**9),
        end_time_unix_nano=fields.pop("end", NOW_NS - 10**9 + 5 * 10**6),
        **fields,
    )
    span.attributes.extend(key_values(attrs))
    return span


def test_the_compiled_decoder_is_built_by_the_test_command() -> None:
    # bin/test (and bin/microlens) build it with setup.py; without it every test below
    # would compare the Python decoder with itself.
    assert decode.NATIVE, "tracestore._otlp is not built: run python setup.py build_ext --inplace"


_WIRE_TYPES = {
    FieldDescriptor.TYPE_MESSAGE: 2,
    FieldDescriptor.TYPE_STRING: 2,
    FieldDescriptor.TYPE_BYTES: 2,
    FieldDescriptor.TYPE_FIXED64: 1,
    FieldDescriptor.TYPE_DOUBLE: 1,
    FieldDescriptor.TYPE_FIXED32: 5,
}


def test_the_compiled_decoder_covers_every_field_of_the_schema() -> None:
    """A field added to opentelemetry-proto must be looked at in _otlp.c (read, checked or
    handed to the general path), so the installed schema must be the one it lists."""
    schema: dict[str, dict[int, int]] = {}

    def walk(message: Any) -> None:
        if message.full_name in schema:
            return
        schema[message.full_name] = {f.number: _WIRE_TYPES.get(f.type, 0) for f in message.fields}
        for f in message.fields:
            if f.message_type is not None:
                walk(f.message_type)

    walk(ExportTraceServiceRequest.DESCRIPTOR)
    assert schema == decode._otlp.FIELDS


def test_recorded_instrumentation_payloads_decode_the_same_natively() -> None:
    names = sorted(FIXTURES.glob("*.pb"))
    assert len(names) == 8
    for path in names:
        body = path.read_bytes()
        assert _handled_natively(body), path.name
        rows = _same(body)[0]
        assert len(rows) >= 2, path.name


def test_the_benchmark_payload_decodes_the_same_natively() -> None:
    for body, spans in build_requests(3000, 512, seed=11):
        assert _handled_natively(body)
        assert len(_same(body)[0]) == spans


def test_a_micro_model_trace_decodes_the_same_natively() -> None:
    body = micro_model_trace(fallback=True).request().SerializeToString()
    assert _handled_natively(body)
    rows = _same(body)[0]
    classifier = next(row for row in rows if row[NAME] == "intent-classifier")
    # The canonical fields follow the ones the compiled decoder makes.
    assert classifier[MICRO_MODEL] == "intent-mini"
    assert classifier[ATTRIBUTES]["micro_model.confidence"] == 0.93


def test_events_links_status_and_values_of_every_type() -> None:
    span = _span(
        parent_span_id=b"\x03" * 8,
        kind=Span.SPAN_KIND_CLIENT,
        status=Status(code=Status.STATUS_CODE_ERROR, message="boom"),
        attrs={
            "text": 'quote " backslash \\ newline \n tab \t bell \x07 é 漢字 🙂',
            "int": -(2**63),
            "big": 2**63 - 1,
            "float": 0.1,
            "whole": 3.0,
            "tiny": 5e-324,
            "huge": 1e300,
            "yes": True,
            "no": False,
            "list": [1, "two", 3.5, [True, {"deep": "x"}]],
            "map": {"a": {"b": {"c": [1, 2]}}},
            "empty_list": [],
            "empty_map": {},
            "": "empty key",
        },
    )
    span.attributes.append(KeyValue(key="unset"))  # an AnyValue with no value: None
    event = span.events.add(name="exception", time_unix_nano=NOW_NS - 1)
    event.attributes.extend(key_values({"exception.message": "bad", "n": 1}))
    span.events.add(name="")
    link = span.links.add(trace_id=b"\xab" * 16, span_id=b"\xcd" * 8, trace_state="k=v")
    link.attributes.extend(key_values({"why": "retry"}))
    body = _request(span)
    assert _handled_natively(body)
    (row,) = _same(body)[0]
    assert row[ATTRIBUTES]["unset"] is None
    assert row[ATTRIBUTES]["list"] == [1, "two", 3.5, [True, {"deep": "x"}]]
    assert row[EVENTS] == [
        {
            "name": "exception",
            "time_unix_nano": NOW_NS - 1,
            "attributes": {"exception.message": "bad", "n": 1},
        },
        {"name": "", "time_unix_nano": 0, "attributes": {}},
    ]
    assert row[LINKS] == [
        {"trace_id": "ab" * 16, "span_id": "cd" * 8, "attributes": {"why": "retry"}}
    ]
    assert (row[KIND], row[STATUS_CODE], row[STATUS_MESSAGE]) == (Span.SPAN_KIND_CLIENT, 2, "boom")


def test_characters_json_escapes_at_every_position_of_a_string() -> None:
    # The compiled encoder scans eight bytes at a time: each special character at each
    # offset, among ASCII and multi-byte text.
    attrs = {}
    for special in ('"', "\\", "\n", "\x00", "\x1f", "\x7f", "é", "🙂"):
        for offset in range(18):
            attrs[f"{special!r}@{offset}"] = "a" * offset + special + "b" * (17 - offset)
    body = _request(_span(attrs=attrs))
    assert _handled_natively(body)
    (row,) = _same(body)[0]
    assert row[ATTRIBUTES]["'\"'@3"] == 'aaa"' + "b" * 14


@pytest.mark.parametrize(
    ("value", "stored"),
    [(float("nan"), "NaN"), (float("inf"), "Infinity"), (float("-inf"), "-Infinity")],
)
def test_non_finite_doubles_are_kept_as_their_names(value: float, stored: str) -> None:
    body = _request(_span(attrs={"x": value, "nested": [value]}))
    assert _handled_natively(body)
    (row,) = _same(body)[0]
    assert row[ATTRIBUTES] == {"x": stored, "nested": [stored]}


def test_nul_and_long_values_are_sanitised_and_counted_the_same() -> None:
    limits = Limits(max_value_bytes=64)
    span = _span(
        name="n" * 100,
        status=Status(message="m\x00" * 40),
        attrs={"nul": "a\x00b", "long": "é" * 40, "at_limit": "x" * 64, "list": ["y" * 65]},
    )
    body = _request(span, scope="s" * 70)
    assert _handled_natively(body, limits)
    (row,), _, _, _, truncated, _ = _same(body, limits)
    assert row[ATTRIBUTES]["nul"] == "a\ufffdb"
    assert row[ATTRIBUTES]["at_limit"] == "x" * 64
    assert row[ATTRIBUTES]["long"].endswith("…[truncated]")
    assert row[FLAGS] & FLAG_TRUNCATED
    assert truncated == 5  # long, list item, name, status message, scope name


def test_a_nul_only_value_does_not_flag_the_span() -> None:
    (row,) = _same(_request(_span(attrs={"nul": "\x00"})))[0]
    assert row[FLAGS] == 0


@pytest.mark.parametrize(
    ("start", "end", "stored", "flags"),
    [
        (0, 0, (0, 0), FLAG_ZERO_TIMESTAMP),
        (0, NOW_NS, (NOW_NS, NOW_NS), FLAG_ZERO_TIMESTAMP),
        (NOW_NS + 10**15, NOW_NS + 10**15 + 5, (0, 0), FLAG_ZERO_TIMESTAMP),
        (NOW_NS + 10**15, NOW_NS - 7, (NOW_NS - 7, NOW_NS - 7), FLAG_ZERO_TIMESTAMP),
        (NOW_NS, NOW_NS - 5, (NOW_NS, NOW_NS), FLAG_END_BEFORE_START),
        (NOW_NS, 0, (NOW_NS, NOW_NS), 0),
        (NOW_NS, 2**64 - 1, (NOW_NS, NOW_NS), FLAG_ZERO_TIMESTAMP),
        (2**64 - 1, 2**64 - 1, (0, 0), FLAG_ZERO_TIMESTAMP),
        (1, 2, (1, 2), 0),  # 1970: kept as sent (storage flags it as old)
    ],
)
def test_timestamps_are_clamped_and_flagged_the_same(
    start: int, end: int, stored: tuple[int, int], flags: int
) -> None:
    (row,) = _same(_request(_span(start=start, end=end)))[0]
    assert (row[START_TIME_NS], row[END_TIME_NS], row[FLAGS]) == (*stored, flags)


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize(
    ("start", "end"), [(0, 0), (0, NOW_NS - 7), (2**64 - 1, 0), (NOW_NS + 10**15, NOW_NS)]
)
def test_a_replaced_start_is_the_same_whenever_the_span_is_received(
    start: int, end: int, native: bool
) -> None:
    # The start is part of the stored span's key: a re-sent span must get the same one.
    body = _request(_span(start=start, end=end))
    first = decode_protobuf(body, now_ns=NOW_NS, native=native).rows
    days_later = decode_protobuf(body, now_ns=NOW_NS + 3 * 86_400 * 10**9, native=native).rows
    assert first == days_later
    assert first[0][FLAGS] == FLAG_ZERO_TIMESTAMP


@pytest.mark.parametrize(("kind", "code"), [(-1, 0), (0, 2**31 - 1), (40000, -5), (7, 3)])
def test_enum_values_outside_the_columns_become_zero_and_flag(kind: int, code: int) -> None:
    span = _span(kind=kind, status=Status(code=code))
    (row,) = _same(_request(span))[0]
    assert 0 <= row[KIND] < 2**15 and 0 <= row[STATUS_CODE] < 2**15


def test_invalid_ids_are_rejected_one_by_one_with_the_reasons() -> None:
    spans = [
        _span(trace_id=b"\x00" * 16),
        _span(trace_id=b"\x01" * 15),
        _span(span_id=b""),
        _span(span_id=b"\x00" * 8),
        _span(parent_span_id=b"\x01" * 7),
        _span(parent_span_id=b"\x00" * 8, attrs={"long": "x" * 100_000}),
        _span(span_id=b"\x09" * 8),
    ]
    rows, _, rejected, reasons, truncated, _ = _same(_request(*spans))
    assert len(rows) == 1 and rejected == 6 and truncated == 0
    assert len(reasons) == 3


@pytest.mark.parametrize(
    "attrs",
    [
        {f"k{i}": i for i in range(600)},  # over max_attributes
        {"bytes": b"\x00\xff"},
    ],
)
def test_unusual_attributes_take_the_general_path_with_the_same_result(
    attrs: dict[str, Any],
) -> None:
    body = _request(_span(attrs=attrs))
    assert not _handled_natively(body)
    _same(body)


def test_values_nested_to_the_depth_limit_take_the_general_path() -> None:
    value = AnyValue(string_value="leaf")
    for _ in range(30):
        outer = AnyValue()
        outer.array_value.values.append(value)
        value = outer
    span = _span()
    span.attributes.append(KeyValue(key="deep", value=value))
    body = _request(span)
    assert not _handled_natively(body)
    (row,) = _same(body)[0]
    assert row[FLAGS] & FLAG_TRUNCATED


def test_a_duplicate_attribute_key_keeps_the_last_value_and_its_json() -> None:
    span = _span(attrs={"k": 1})
    span.attributes.append(KeyValue(key="k", value=any_value("two")))
    body = _request(span)
    assert _handled_natively(body)
    (row,), (encoded,), *_ = _same(body)
    assert row[ATTRIBUTES] == {"k": "two"} and encoded == b'\x01{"k":"two"}'


def test_a_span_with_no_attributes_resource_or_scope() -> None:
    request = ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add().spans.append(
        Span(trace_id=b"\x05" * 16, span_id=b"\x06" * 8, start_time_unix_nano=NOW_NS)
    )
    (row,) = _same(request.SerializeToString())[0]
    assert (row[SERVICE_NAME], row[SCOPE_NAME], row[ATTRIBUTES], row[RESOURCE_ATTRIBUTES]) == (
        "",
        "",
        {},
        {},
    )


def test_fields_in_any_order_and_unknown_fields_are_read_as_the_runtime_reads_them() -> None:
    span = _span(attrs={"a": 1}).SerializeToString()
    status = Status(code=1).SerializeToString()
    # Status first, then an unknown varint (field 99), fixed32 (98) and bytes (97) field.
    unknown = b"\x98\x06\x01" + b"\x95\x06abcd" + b"\x8a\x06\x02hi"
    reordered = b"\x7a" + bytes([len(status)]) + status + unknown + span
    scope = ScopeSpans()
    scope.spans.add().ParseFromString(reordered)
    body = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[scope])]
    ).SerializeToString()
    # The resource after its scope spans.
    resource_spans = ResourceSpans()
    resource_spans.resource.attributes.extend(key_values({"service.name": "late"}))
    late = (
        b"\x12" + _varint(len(scope.SerializeToString())) + scope.SerializeToString()
    ) + resource_spans.SerializeToString()
    late_body = b"\x0a" + _varint(len(late)) + late
    for payload in (body, late_body):
        assert _handled_natively(payload)
        (row,) = _same(payload)[0]
        assert row[STATUS_CODE] == 1
    assert _same(late_body)[0][0][9] == "late"


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\x0a\x00",
        b"\x0a\x05\x12\x03\x12\x01\x0a",  # a span of one byte's truncated field
        b"\x0a\xff\xff\xff\xff\x0f",  # length past the end
        b"\xff" * 12,  # a varint too long
        b"\x0b\x0c",  # a group
        b"\x0f",  # wire type 7
        b"\x00\x01",  # field number 0
    ],
)
def test_malformed_and_edge_bodies_give_the_runtimes_answer(body: bytes) -> None:
    _same(body)


def test_invalid_utf8_anywhere_is_the_runtimes_error() -> None:
    good = _request(_span(attrs={"k": "ZZZZ"}, name="YYYY"), scope="XXXX")
    for marker in (b"ZZZZ", b"YYYY", b"XXXX", b"svc"):
        body = good.replace(marker, b"\xff" * len(marker), 1)
        outcome = _same(body)
        assert outcome[0] == "error", marker


def test_scope_attributes_are_checked_but_not_counted() -> None:
    request = ExportTraceServiceRequest.FromString(_request(_span()))
    scope: InstrumentationScope = request.resource_spans[0].scope_spans[0].scope
    scope.attributes.extend(key_values({"long": "x" * 100_000, "nul": "\x00"}))
    body = request.SerializeToString()
    assert _handled_natively(body)
    assert _same(body)[4] == 0


def test_random_corruptions_of_a_real_payload_agree_with_the_runtime() -> None:
    """Cut and flip bytes of a recorded payload: whatever the runtime makes of the result
    (an error, or spans), the compiled decoder must give the same, and never crash."""
    rng = random.Random(20261129)
    bodies = [p.read_bytes() for p in sorted(FIXTURES.glob("*.pb"))]
    bodies.append(micro_model_trace().request().SerializeToString())
    errors = decoded = 0
    for _ in range(3000):
        body = bytearray(rng.choice(bodies))
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(body))
            if rng.random() < 0.2:
                del body[at:]
                if not body:
                    break
            else:
                body[at] = rng.randrange(256)
        outcome = _same(bytes(body))
        if outcome[0] == "error":
            errors += 1
        else:
            decoded += 1
    # Both kinds of outcome were exercised, many times.
    assert errors > 300 and decoded > 300


def test_structure_aware_mutations_of_real_payloads_agree_with_the_runtime() -> None:
    """A fixed sample of the fuzzing benchmark's mutations (tests/decoder_fuzz.py): each
    changes one thing in a parsed request (a value of any type, ids, timestamps, enums,
    texts, nesting, repeats), so most stay requests the compiled decoder handles itself.
    Under both sets of limits the outcome must be the reference's, an exception included."""
    rng = random.Random(20261206)
    seeds = fuzz.seed_bodies()
    native = 0
    for _ in range(300):
        body = rng.choice(seeds)
        for _ in range(rng.randint(1, 4)):
            body = fuzz.structured_mutation(body, rng) or body
        for max_value_bytes, max_attributes in fuzz.LIMITS:
            limits = Limits(max_value_bytes=max_value_bytes, max_attributes=max_attributes)
            reference = fuzz.outcome(body, native=False, limits=limits)
            assert fuzz.outcome(body, native=True, limits=limits) == reference
            native += _handled_natively(body, limits)
    # The compiled path was the one compared, most of the time under the default limits.
    assert native > 150


def test_ordinary_exports_never_reach_the_reference_decoder() -> None:
    """The compiled path is really the one taken for the benchmark's payload (its speed is
    measured by bench/ingest_stages.py, not here)."""
    calls = 0
    original = decode.decode_request

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return original(*args, **kwargs)

    decode.decode_request = counting  # type: ignore[assignment]
    try:
        for body, _ in build_requests(2000, 512, seed=3):
            decode_protobuf(body, now_ns=time.time_ns())
    finally:
        decode.decode_request = original  # type: ignore[assignment]
    assert calls == 0


def test_a_receiver_without_the_compiled_decoder_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from tracestore import ingest

    monkeypatch.setattr(ingest, "NATIVE", False)
    with caplog.at_level("WARNING", logger="tracestore.ingest"):
        ingest.Ingest(lambda *args: None, lambda key: None)  # type: ignore[arg-type]
    assert "ingest.decoder compiled=false" in caplog.text
    caplog.clear()
    monkeypatch.setattr(ingest, "NATIVE", True)
    with caplog.at_level("WARNING", logger="tracestore.ingest"):
        ingest.Ingest(lambda *args: None, lambda key: None)  # type: ignore[arg-type]
    assert caplog.text == ""
