"""OTLP/JSON body -> ExportTraceServiceRequest.

OTLP/JSON is the proto3 JSON mapping with exceptions (OTLP specification, "JSON Protobuf
Encoding"), which is why this is not ``google.protobuf.json_format``:

- trace and span ids are hex strings (either case), not base64 (``json_format`` would read
  a 32-character hex trace id as base64 and produce 24 bytes of garbage);
- enums are integers (their names are accepted too);
- field names are lowerCamelCase (the proto's snake_case names are accepted too);
- 64-bit integers may come as JSON numbers or as decimal strings;
- unknown fields are ignored.

Decisions:

- An id that is not valid hex (odd length, other characters) becomes an empty id, so
  ``decode_request`` rejects that one span like any id of the wrong length: an OTLP
  partial success, the rest of the request is kept.
- Anything else that breaks the structure (not JSON, not UTF-8, a list where an object
  belongs, a string where a number belongs, a non-string id) raises ``OtlpJsonError`` for
  the whole request (HTTP 400): there is no span to keep or reject in a broken document.
- ``AnyValue`` nesting deeper than ``MAX_VALUE_DEPTH`` is replaced by a marker string;
  ``decode_request`` caps the depth lower still and flags the span as truncated.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

MAX_VALUE_DEPTH = 32
TOO_DEEP = "[nesting too deep]"


class OtlpJsonError(ValueError):
    """The body is not an OTLP/JSON ExportTraceServiceRequest."""


def parse_export_request(body: bytes) -> ExportTraceServiceRequest:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise OtlpJsonError(f"body is not valid UTF-8 (byte {exc.start})") from None
    try:
        document = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as exc:
        raise OtlpJsonError(f"body is not valid JSON: {exc}") from None
    except RecursionError:
        raise OtlpJsonError("body is nested too deeply to parse") from None
    if not isinstance(document, dict):
        raise OtlpJsonError("body must be a JSON object")
    request = ExportTraceServiceRequest()
    for r, resource_spans in enumerate(_list(document, "resourceSpans", "resource_spans")):
        where = f"resourceSpans[{r}]"
        try:
            _resource_spans(_object(resource_spans), request.resource_spans.add(), where)
        except OtlpJsonError:
            raise
        except (TypeError, ValueError, OverflowError) as exc:
            # Out-of-range numbers and strings protobuf refuses (lone surrogates).
            raise OtlpJsonError(f"{where}: {exc}") from None
    return request


# -- structure -----------------------------------------------------------------------------


def _resource_spans(src: dict[str, Any], dst: Any, where: str) -> None:
    resource = _field(src, "resource", "resource")
    if resource is not None:
        resource = _object(resource, f"{where}.resource")
        dst.resource.SetInParent()
        _attributes(resource, dst.resource.attributes)
        dst.resource.dropped_attributes_count = _uint(
            _field(resource, "droppedAttributesCount", "dropped_attributes_count")
        )
    dst.schema_url = _str(_field(src, "schemaUrl", "schema_url"), f"{where}.schemaUrl")
    for s, scope_spans in enumerate(_list(src, "scopeSpans", "scope_spans", where)):
        _scope_spans(_object(scope_spans), dst.scope_spans.add(), f"{where}.scopeSpans[{s}]")


def _scope_spans(src: dict[str, Any], dst: Any, where: str) -> None:
    scope = _field(src, "scope", "scope")
    if scope is not None:
        scope = _object(scope, f"{where}.scope")
        dst.scope.SetInParent()
        dst.scope.name = _str(scope.get("name"), f"{where}.scope.name")
        dst.scope.version = _str(scope.get("version"), f"{where}.scope.version")
        _attributes(scope, dst.scope.attributes)
        dst.scope.dropped_attributes_count = _uint(
            _field(scope, "droppedAttributesCount", "dropped_attributes_count")
        )
    dst.schema_url = _str(_field(src, "schemaUrl", "schema_url"), f"{where}.schemaUrl")
    spans = dst.spans
    for i, span in enumerate(_list(src, "spans", "spans", where)):
        try:
            _span(_object(span, "span"), spans.add())
        except OtlpJsonError as exc:
            # Locations are only formatted on failure: this loop is the hot path.
            raise OtlpJsonError(f"{where}.spans[{i}]: {exc}") from None


def _span(src: dict[str, Any], dst: Span) -> None:
    dst.trace_id = _id(_field(src, "traceId", "trace_id"), "traceId")
    dst.span_id = _id(_field(src, "spanId", "span_id"), "spanId")
    dst.parent_span_id = _id(_field(src, "parentSpanId", "parent_span_id"), "parentSpanId")
    dst.trace_state = _str(_field(src, "traceState", "trace_state"), "traceState")
    dst.flags = _uint(src.get("flags"), "flags")
    dst.name = _str(src.get("name"), "name")
    dst.kind = _enum(src.get("kind"), Span.SpanKind, "kind")  # type: ignore[assignment]
    dst.start_time_unix_nano = _uint(
        _field(src, "startTimeUnixNano", "start_time_unix_nano"), "startTimeUnixNano"
    )
    dst.end_time_unix_nano = _uint(
        _field(src, "endTimeUnixNano", "end_time_unix_nano"), "endTimeUnixNano"
    )
    _attributes(src, dst.attributes)
    dst.dropped_attributes_count = _uint(
        _field(src, "droppedAttributesCount", "dropped_attributes_count")
    )
    for event in _list(src, "events", "events", "span"):
        event = _object(event, "events[]")
        out = dst.events.add()
        out.time_unix_nano = _uint(_field(event, "timeUnixNano", "time_unix_nano"), "events[]")
        out.name = _str(event.get("name"), "events[].name")
        _attributes(event, out.attributes)
        out.dropped_attributes_count = _uint(
            _field(event, "droppedAttributesCount", "dropped_attributes_count")
        )
    dst.dropped_events_count = _uint(_field(src, "droppedEventsCount", "dropped_events_count"))
    for link in _list(src, "links", "links", "span"):
        link = _object(link, "links[]")
        out = dst.links.add()
        out.trace_id = _id(_field(link, "traceId", "trace_id"), "links[].traceId")
        out.span_id = _id(_field(link, "spanId", "span_id"), "links[].spanId")
        out.trace_state = _str(_field(link, "traceState", "trace_state"), "links[].traceState")
        _attributes(link, out.attributes)
        out.dropped_attributes_count = _uint(
            _field(link, "droppedAttributesCount", "dropped_attributes_count")
        )
        out.flags = _uint(link.get("flags"), "links[].flags")
    dst.dropped_links_count = _uint(_field(src, "droppedLinksCount", "dropped_links_count"))
    status = src.get("status")
    if status is not None:
        status = _object(status, "status")
        dst.status.SetInParent()
        dst.status.message = _str(status.get("message"), "status.message")
        dst.status.code = _enum(  # type: ignore[assignment]
            status.get("code"), Status.StatusCode, "status.code"
        )


def _attributes(src: dict[str, Any], dst: Any) -> None:
    items = src.get("attributes")
    if items is not None:
        _key_values(items, dst, 0)


def _key_values(items: Any, dst: Any, depth: int) -> None:
    if not isinstance(items, list):
        raise OtlpJsonError("attributes must be a list")
    for item in items:
        if not isinstance(item, dict):
            raise OtlpJsonError("attributes must be a list of objects")
        kv = dst.add()
        kv.key = _str(item.get("key"), "attribute key")
        value = item.get("value")
        if value is not None:
            _any_value(value, kv.value, depth)


def _any_value(src: Any, dst: AnyValue, depth: int) -> None:
    if not isinstance(src, dict):
        raise OtlpJsonError("an attribute value must be an object")
    if depth >= MAX_VALUE_DEPTH:
        dst.string_value = TOO_DEEP
        return
    for name, value in src.items():
        if value is None:
            continue
        if name in ("stringValue", "string_value"):
            dst.string_value = _str(value, "stringValue")
        elif name in ("intValue", "int_value"):
            number = _int(value, "intValue")
            if -_INT64 <= number < _INT64:
                dst.int_value = number
            else:
                # An integer no int64 holds is a value, not a broken document: kept as its
                # digits, like any attribute value the columns cannot take.
                dst.string_value = str(number)
        elif name in ("doubleValue", "double_value"):
            dst.double_value = _double(value)
        elif name in ("boolValue", "bool_value"):
            if not isinstance(value, bool):
                raise OtlpJsonError("boolValue must be true or false")
            dst.bool_value = value
        elif name in ("arrayValue", "array_value"):
            array = dst.array_value
            array.SetInParent()
            for item in _list(_object(value, "arrayValue"), "values", "values", "arrayValue"):
                _any_value(item, array.values.add(), depth + 1)
        elif name in ("kvlistValue", "kvlist_value"):
            kvlist = dst.kvlist_value
            kvlist.SetInParent()
            values = _object(value, "kvlistValue").get("values")
            if values is not None:
                _key_values(values, kvlist.values, depth + 1)
        elif name in ("bytesValue", "bytes_value"):
            dst.bytes_value = _base64(value)


# -- scalars -------------------------------------------------------------------------------


def _field(src: dict[str, Any], camel: str, snake: str) -> Any:
    value = src.get(camel)
    return src.get(snake) if value is None else value


def _object(value: Any, where: str = "request") -> dict[str, Any]:
    if not isinstance(value, dict):
        raise OtlpJsonError(f"{where} must be an object")
    return value


def _list(src: dict[str, Any], camel: str, snake: str, where: str = "request") -> list[Any]:
    value = _field(src, camel, snake)
    if value is None:
        return []
    if not isinstance(value, list):
        raise OtlpJsonError(f"{where}.{camel} must be a list")
    return value


def _str(value: Any, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise OtlpJsonError(f"{where} must be a string")
    return value


def _id(value: Any, where: str) -> bytes:
    if value is None or value == "":
        return b""
    if not isinstance(value, str):
        raise OtlpJsonError(f"{where} must be a hex string")
    try:
        return bytes.fromhex(value)
    except ValueError:
        # Not hex: leave the id empty so decode_request rejects just this span.
        return b""


_INT64 = 2**63


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool):
        raise OtlpJsonError(f"{where} must be an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    elif isinstance(value, float) and value.is_integer():
        return int(value)
    raise OtlpJsonError(f"{where} must be an integer")


def _uint(value: Any, where: str = "request") -> int:
    if value is None:
        return 0
    number = _int(value, where)
    if number < 0:
        raise OtlpJsonError(f"{where} must not be negative")
    return number


def _double(value: Any) -> float:
    # proto3 JSON spells the non-finite values "NaN", "Infinity" and "-Infinity" (strings).
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise OtlpJsonError("doubleValue must be a number")


def _enum(value: Any, enum_type: Any, where: str) -> int:
    if value is None:
        return 0
    if isinstance(value, str):
        try:
            return enum_type.Value(value)
        except ValueError:
            pass
    number = _int(value, where)
    if not -(2**31) <= number < 2**31:
        raise OtlpJsonError(f"{where} is out of range")
    return number


def _base64(value: Any) -> bytes:
    if not isinstance(value, str):
        raise OtlpJsonError("bytesValue must be a base64 string")
    # proto3 JSON accepts standard and URL-safe alphabets, with or without padding.
    text = value.strip().replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except binascii.Error:
        raise OtlpJsonError("bytesValue must be a base64 string") from None
