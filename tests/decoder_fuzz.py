"""The decoder's fuzzing material, shared by bench/fuzz_decoder.py (coverage-guided, under
sanitisers) and tests/tracestore/test_native_decode.py (a fixed sample): the seed bodies,
the structure-aware mutations, and ``outcome``, what one body decodes to (compiled or
reference) under given limits. Imports of the decoder stay inside the functions: the
fuzzing process puts its sanitised build in place before anything imports decode.py."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

NOW_NS = 1_750_000_000 * 10**9
# The default limits, and small ones under which ordinary values are cut and lists dropped.
LIMITS = ((64 * 1024, 512), (24, 6))


# -- seeds ----------------------------------------------------------------------------------


def seed_bodies() -> list[bytes]:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

    from tests.otlp_payloads import build_requests

    bodies = [
        p.read_bytes() for p in sorted((ROOT / "tests/fixtures/instrumentations").glob("*.pb"))
    ]
    bodies.append(gzip.decompress((ROOT / "tests/fixtures/otlp/sdk_traces.pb.gz").read_bytes()))
    bodies += [body for body, _ in build_requests(40, 8, seed=1)]

    def value(v: Any) -> AnyValue:
        if isinstance(v, bool):
            return AnyValue(bool_value=v)
        if isinstance(v, int):
            return AnyValue(int_value=v)
        if isinstance(v, float):
            return AnyValue(double_value=v)
        if isinstance(v, bytes):
            return AnyValue(bytes_value=v)
        if isinstance(v, list):
            out = AnyValue()
            out.array_value.values.extend(value(x) for x in v)
            return out
        if isinstance(v, dict):
            out = AnyValue()
            out.kvlist_value.values.extend(KeyValue(key=k, value=value(x)) for k, x in v.items())
            return out
        return AnyValue(string_value=v)

    def request(*spans: Span, resource: dict[str, Any] | None = None) -> bytes:
        req = ExportTraceServiceRequest()
        resource_spans = req.resource_spans.add()
        for k, v in (resource or {"service.name": "svc"}).items():
            resource_spans.resource.attributes.add(key=k, value=value(v))
        scope_spans = resource_spans.scope_spans.add()
        scope_spans.scope.name = "scope"
        scope_spans.scope.version = "1.0"
        scope_spans.spans.extend(spans)
        return req.SerializeToString()

    def span(attrs: dict[str, Any] | None = None, **fields: Any) -> Span:
        s = Span(
            trace_id=fields.pop("trace_id", b"\x01" * 16),
            span_id=fields.pop("span_id", b"\x02" * 8),
            name=fields.pop("name", "classify"),
            start_time_unix_nano=fields.pop("start", NOW_NS - 10**9),
            end_time_unix_nano=fields.pop("end", NOW_NS - 10**9 + 5 * 10**6),
            **fields,
        )
        for k, v in (attrs or {}).items():
            s.attributes.add(key=k, value=value(v))
        return s

    deep = AnyValue(string_value="leaf")
    for _ in range(30):
        outer = AnyValue()
        outer.array_value.values.append(deep)
        deep = outer
    deep_span = span()
    deep_span.attributes.append(KeyValue(key="deep", value=deep))
    event_span = span(parent_span_id=b"\x03" * 8, kind=3, status=Status(code=2, message="boom"))
    event = event_span.events.add(name="exception", time_unix_nano=NOW_NS - 1)
    event.attributes.add(key="exception.message", value=value("bad"))
    link = event_span.links.add(trace_id=b"\xab" * 16, span_id=b"\xcd" * 8, trace_state="k=v")
    link.attributes.add(key="why", value=value("retry"))
    bodies += [
        # The malformed-body table of the decoder's tests.
        b"",
        b"\x0a\x00",
        b"\x0a\x05\x12\x03\x12\x01\x0a",
        b"\x0a\xff\xff\xff\xff\x0f",
        b"\xff" * 12,
        b"\x0b\x0c",
        b"\x0f",
        b"\x00\x01",
        # Hostile values and ids.
        request(
            span(
                {
                    "text": 'quote " backslash \\ \n \t \x07 é 漢字 🙂',
                    "int": -(2**63),
                    "float": 0.1,
                    "nan": float("nan"),
                    "inf": float("-inf"),
                    "yes": True,
                    "list": [1, "two", 3.5, [True, {"deep": "x"}]],
                    "map": {"a": {"b": {"c": [1, 2]}}},
                    "empty": [],
                    "": "empty key",
                    "nul": "a\x00b",
                    "long": "é" * 40,
                    "bytes": b"\x00\xff",
                }
            )
        ),
        request(span({f"k{i}": i for i in range(10)})),
        request(deep_span),
        request(event_span),
        request(
            span(trace_id=b"\x00" * 16),
            span(trace_id=b"\x01" * 15),
            span(span_id=b""),
            span(parent_span_id=b"\x01" * 7),
            span(parent_span_id=b"\x00" * 8, attrs={"long": "x" * 100}),
            span(span_id=b"\x09" * 8),
        ),
        request(span(start=0, end=0), span(start=NOW_NS, end=NOW_NS - 5)),
        request(span(start=NOW_NS, end=2**64 - 1), span(start=2**64 - 1, end=2**64 - 1)),
        request(span(kind=-1, status=Status(code=2**31 - 1)), span(kind=40000)),
        request(span(name="n" * 40, status=Status(message="m\x00" * 20))),
    ]
    # A span with its status first and unknown varint, fixed32 and bytes fields.
    reordered = b"\x7a\x02\x18\x01" + b"\x98\x06\x01\x95\x06abcd\x8a\x06\x02hi"
    reordered += span({"a": 1}).SerializeToString()
    scope = b"\x12" + bytes([len(reordered)]) + reordered
    bodies.append(b"\x0a" + bytes([len(scope) + 2]) + b"\x12" + bytes([len(scope)]) + scope)
    return bodies


# -- one input ------------------------------------------------------------------------------


def outcome(body: bytes, native: bool, limits: Any) -> Any:
    from tracestore.decode import decode_protobuf
    from tracestore.otlp_protobuf import OtlpProtobufError
    from tracestore.span_copy import jsonb as _jsonb
    from tracestore.span_fields import ATTRIBUTES

    try:
        result = decode_protobuf(body, limits, NOW_NS, native=native)
    except OtlpProtobufError as exc:
        return ("error", str(exc))
    except Exception as exc:  # a finding: no body may make the decoder raise anything else
        return ("raised", type(exc).__name__, str(exc))
    given = [*result.attributes_json, *[None] * (len(result.rows) - len(result.attributes_json))]
    encoded = [
        g if g is not None else _jsonb(row[ATTRIBUTES])
        for g, row in zip(given, result.rows, strict=True)
    ]
    return (
        result.rows,
        encoded,
        result.rejected,
        result.reasons,
        result.truncated_values,
        result.dropped_attributes,
    )


# -- structure-aware mutations --------------------------------------------------------------
# Most byte-level mutations of a protobuf body make it invalid, and the compiled decoder
# hands invalid bodies to the reference at once: memory safety is tested on them, agreement
# hardly. Half of the mutations therefore parse the body and change one thing the decoder
# must get right (a value of any type, ids, timestamps, enums, texts, nesting, repeats), so
# the result is still a request and the compiled path is compared.

_TEXT_PIECES = ("a", "key", "é", "漢字", "🙂", "\x00", '"', "\\", "\n", "\x1f", "\x7f", "\u2028")
_DOUBLES = (0.0, -0.0, 0.1, 1e308, -1e308, 5e-324, float("nan"), float("inf"), float("-inf"))
_INTS = (0, 1, -1, 2**31, -(2**31), 2**53 + 1, 2**63 - 1, -(2**63))
_TIMES = (0, 1, NOW_NS, NOW_NS - 1, NOW_NS + 10**15, 2**63, 2**64 - 1)
_ENUMS = (0, 1, 2, 3, -1, 2**15 - 1, 2**15, 40000, 2**31 - 1, -(2**31))


def _text(rng: Any) -> str:
    if rng.random() < 0.1:
        return rng.choice(_TEXT_PIECES) * rng.choice((7, 8, 9, 16, 17, 25, 100))
    return "".join(rng.choice(_TEXT_PIECES) for _ in range(rng.randrange(6)))


def _any_value(value: Any, rng: Any, depth: int = 0) -> None:
    kind = rng.randrange(9 if depth < 20 else 6)
    if kind == 0:
        value.string_value = _text(rng)
    elif kind == 1:
        value.int_value = rng.choice(_INTS)
    elif kind == 2:
        value.double_value = rng.choice(_DOUBLES)
    elif kind == 3:
        value.bool_value = rng.random() < 0.5
    elif kind == 4:
        value.bytes_value = bytes(rng.randrange(256) for _ in range(rng.randrange(4)))
    elif kind == 5:
        value.Clear()  # no value set
    elif kind in (6, 7):
        array = value.array_value
        for _ in range(rng.randrange(3)):
            _any_value(array.values.add(), rng, depth + 1)
    else:
        kvlist = value.kvlist_value
        for _ in range(rng.randrange(3)):
            item = kvlist.values.add(key=_text(rng))
            _any_value(item.value, rng, depth + 1)


def _attributes(attributes: Any, rng: Any) -> None:
    choice = rng.randrange(5)
    if choice == 0 and len(attributes):
        attributes.add(key=rng.choice(attributes).key)  # a key sent twice
        _any_value(attributes[-1].value, rng)
    elif choice == 1:
        for i in range(rng.choice((5, 6, 7, 511, 512, 513))):
            attributes.add(key=f"k{i}").value.int_value = i
    elif choice == 2:
        key = rng.choice(
            (
                "service.name",
                "micro_model.name",
                "llm.token_count.prompt",
                "retry.attempt",
                "micro_model.confidence",
                "route.fallback",
            )
        )
        _any_value(attributes.add(key=key).value, rng)
    else:
        _any_value(attributes.add(key=_text(rng)).value, rng)


def structured_mutation(data: bytes, rng: Any) -> bytes | None:
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    try:
        request = ExportTraceServiceRequest.FromString(data)
    except (DecodeError, RecursionError):
        return None
    scopes = [ss for rs in request.resource_spans for ss in rs.scope_spans]
    spans = [span for ss in scopes for span in ss.spans]
    if not spans:
        return None
    span = rng.choice(spans)
    op = rng.randrange(10)
    if op == 0:
        _attributes(span.attributes, rng)
    elif op == 1:
        length = rng.choice((0, 1, 7, 8, 9, 15, 16, 17))
        fill = rng.choice((b"\x00", b"\x01", b"\xff"))
        which = rng.choice(("trace_id", "span_id", "parent_span_id"))
        setattr(span, which, fill * length)
    elif op == 2:
        span.start_time_unix_nano = rng.choice(_TIMES)
        span.end_time_unix_nano = rng.choice(_TIMES)
    elif op == 3:
        span.kind = rng.choice(_ENUMS)  # type: ignore[assignment]
        span.status.code = rng.choice(_ENUMS)  # type: ignore[assignment]
    elif op == 4:
        span.name = _text(rng)
        span.status.message = _text(rng)
    elif op == 5:
        event = span.events.add(name=_text(rng), time_unix_nano=rng.choice(_TIMES))
        _attributes(event.attributes, rng)
    elif op == 6:
        link = span.links.add(trace_id=bytes(rng.randrange(256) for _ in range(16)))
        link.span_id = b"\x07" * rng.choice((0, 8))
        link.trace_state = _text(rng)
        _attributes(link.attributes, rng)
    elif op == 7:
        scope = rng.choice(scopes)
        scope.scope.name = _text(rng)
        scope.scope.version = _text(rng)
        _attributes(scope.scope.attributes, rng)
    elif op == 8:
        _attributes(rng.choice(request.resource_spans).resource.attributes, rng)
    else:
        rng.choice(scopes).spans.append(span)  # the same span twice
    return request.SerializeToString()
