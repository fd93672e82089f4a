"""OTLP ExportTraceServiceRequest -> span rows (SpanRecord's fields as a plain tuple).

Protobuf bodies go through ``decode_protobuf``: the compiled decoder (tracestore/_otlp.c,
built by setup.py) reads the wire format straight into rows, about four times faster than
building protobuf objects and walking them here, and hands anything unusual back to
``decode_request``, which is the reference: both give the same rows.

Spans that cannot be stored (ids of the wrong length or all zero) are rejected one by
one and counted, so the rest of the batch is kept (OTLP partial success). Hostile values
are made storable here, before they reach PostgreSQL: NUL characters replaced, NaN and
infinities kept as strings, long values truncated, attribute count and nesting capped.
"""

from __future__ import annotations

import base64
import math
import time
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from .contracts import (
    FLAG_END_BEFORE_START,
    FLAG_TRUNCATED,
    FLAG_UNCONVERTIBLE_VALUE,
    FLAG_ZERO_TIMESTAMP,
    SpanRecord,
)
from .normalise import DEFAULT_COHORT_DIMENSION_KEYS, checked_canonical_values
from .otlp_protobuf import parse_protobuf
from .span_fields import ATTRIBUTES, DECODER_FIELDS, FLAGS, RESOURCE_ATTRIBUTES, check_fields

try:
    from . import _otlp  # type: ignore[attr-defined]
except ImportError:  # not built (no C compiler): decode_request does all the work
    _otlp = None

# A span as the receivers hand it to storage: the fields of span_fields.ROW_FIELDS (which
# SpanRecord's follow), in order, as a plain tuple (``SpanRecord(*row)`` is the record).
# Building a frozen dataclass of 35 fields costs more than decoding the span's
# attributes, so the hot path does without; it reads rows by span_fields' positions.
SpanRow = tuple[Any, ...]

MAX_DEPTH = 16
_NUL = "\x00"
_REPLACEMENT = "\ufffd"
# Far-future timestamps (a clock in nanoseconds read as microseconds, say) are clamped so
# they stay inside the time range the tables and their partitions accept.
_MAX_FUTURE_NS = 24 * 3600 * 10**9
_INT2 = 2**15


@dataclass
class Limits:
    max_value_bytes: int = 64 * 1024
    max_attributes: int = 512
    cohort_dimensions: tuple[str, ...] = DEFAULT_COHORT_DIMENSION_KEYS


@dataclass
class DecodeResult:
    rows: list[SpanRow] = field(default_factory=list)
    # Per row, its attributes as the jsonb the COPY sends (span_copy.jsonb), when the
    # decoder wrote them already; None (or a list shorter than rows) means "encode them".
    attributes_json: list[bytes | None] = field(default_factory=list)
    rejected: int = 0
    truncated_values: int = 0
    dropped_attributes: int = 0
    reasons: list[str] = field(default_factory=list)

    def reject(self, reason: str) -> None:
        self.rejected += 1
        if len(self.reasons) < 5 and reason not in self.reasons:
            self.reasons.append(reason)

    @property
    def records(self) -> list[SpanRecord]:
        return [SpanRecord(*row) for row in self.rows]

    @property
    def message(self) -> str:
        if not self.rejected:
            return ""
        return f"{self.rejected} span(s) rejected: " + "; ".join(self.reasons)


class _Sanitiser:
    def __init__(self, limits: Limits, result: DecodeResult) -> None:
        self.limits = limits
        self.result = result
        self.truncated = False
        # Text of at most this many characters cannot exceed the byte limit in UTF-8.
        self._char_limit = limits.max_value_bytes // 4

    def text(self, value: str) -> str:
        if _NUL in value:
            value = value.replace(_NUL, _REPLACEMENT)
        limit = self.limits.max_value_bytes
        if len(value) > self._char_limit and len(value.encode()) > limit:
            value = value.encode()[:limit].decode(errors="ignore") + "…[truncated]"
            self.result.truncated_values += 1
            self.truncated = True
        return value

    def any_value(self, value: AnyValue, depth: int = 0) -> Any:
        which = value.WhichOneof("value")
        if which == "string_value":
            return self.text(value.string_value)
        if which == "int_value":
            return value.int_value
        if which == "bool_value":
            return value.bool_value
        if which == "double_value":
            number = value.double_value
            if math.isfinite(number):
                return number
            # JSON (and so jsonb) has no NaN/Infinity: keep them as their names.
            return "NaN" if math.isnan(number) else ("Infinity" if number > 0 else "-Infinity")
        if depth >= MAX_DEPTH:
            self.truncated = True
            self.result.truncated_values += 1
            return "[nesting too deep]"
        if which == "array_value":
            return [self.any_value(v, depth + 1) for v in value.array_value.values]
        if which == "kvlist_value":
            return self.key_values(value.kvlist_value.values, depth + 1)
        if which == "bytes_value":
            return base64.b64encode(value.bytes_value[: self.limits.max_value_bytes]).decode()
        return None

    def key_values(self, items: Any, depth: int = 0) -> dict[str, Any]:
        # The hot loop of ingest: scalar values are handled inline; only text that may be
        # hostile (long, or holding NUL) and nested values take the slow path.
        limit = self.limits.max_attributes
        if len(items) > limit:
            self.result.dropped_attributes += len(items) - limit
            self.truncated = True
            items = items[:limit]
        char_limit = self._char_limit
        out: dict[str, Any] = {}
        for kv in items:
            value = kv.value
            which = value.WhichOneof("value")
            if which == "string_value":
                text = value.string_value
                if len(text) > char_limit or _NUL in text:
                    text = self.text(text)
                result: Any = text
            elif which == "int_value":
                result = value.int_value
            elif which == "bool_value":
                result = value.bool_value
            else:
                result = self.any_value(value, depth)
            key = kv.key
            if _NUL in key:
                key = key.replace(_NUL, _REPLACEMENT)
            out[key] = result
        return out


_ZERO_TRACE_ID = bytes(16)
_ZERO_SPAN_ID = bytes(8)
_BAD_TRACE_ID = "trace_id must be 16 bytes and not all zero"
_BAD_SPAN_ID = "span_id must be 8 bytes and not all zero"
_BAD_PARENT = "parent_span_id must be empty or 8 bytes and not all zero"

if _otlp is not None:
    # The compiled decoder's rows hold the decoder's fields of the table, in its order.
    check_fields(
        "tracestore._otlp's rows (rebuild it: python setup.py build_ext --inplace)",
        tuple(getattr(_otlp, "ROW_FIELDS", ())),
        DECODER_FIELDS,
    )
    _otlp.configure(
        max_depth=MAX_DEPTH,
        max_future_ns=_MAX_FUTURE_NS,
        flag_end_before_start=FLAG_END_BEFORE_START,
        flag_truncated=FLAG_TRUNCATED,
        flag_zero_timestamp=FLAG_ZERO_TIMESTAMP,
        reason_trace_id=_BAD_TRACE_ID,
        reason_span_id=_BAD_SPAN_ID,
        reason_parent=_BAD_PARENT,
    )

NATIVE = _otlp is not None


def decode_protobuf(
    body: bytes, limits: Limits | None = None, now_ns: int | None = None, native: bool = NATIVE
) -> DecodeResult:
    """A protobuf ExportTraceServiceRequest body -> rows, as ``decode_request`` would make
    them from the parsed message. Raises OtlpProtobufError for a body that is not one."""
    limits = limits or Limits()
    now_ns = now_ns if now_ns is not None else time.time_ns()
    if native and _otlp is not None:
        result = DecodeResult()
        sanitiser = _Sanitiser(limits, result)
        decoded = _otlp.decode(
            body, now_ns, limits.max_value_bytes, limits.max_attributes, sanitiser.text
        )
        if decoded is not None:
            heads, result.attributes_json, rejected = decoded
            for reason in rejected:
                result.reject(reason)
            keys = limits.cohort_dimensions
            rows = result.rows
            for head in heads:
                values, unconvertible = checked_canonical_values(
                    head[ATTRIBUTES], head[RESOURCE_ATTRIBUTES], keys
                )
                if unconvertible:
                    head = (
                        *head[:FLAGS],
                        head[FLAGS] | FLAG_UNCONVERTIBLE_VALUE,
                        *head[FLAGS + 1 :],
                    )
                rows.append(head + values)
            return result
    return decode_request(parse_protobuf(body), limits, now_ns)


def decode_request(
    request: ExportTraceServiceRequest, limits: Limits | None = None, now_ns: int | None = None
) -> DecodeResult:
    limits = limits or Limits()
    result = DecodeResult()
    now_ns = now_ns if now_ns is not None else time.time_ns()
    rows = result.rows
    sanitiser = _Sanitiser(limits, result)
    for resource_spans in request.resource_spans:
        resource = sanitiser.key_values(resource_spans.resource.attributes)
        service_name = resource.get("service.name")
        service = service_name if isinstance(service_name, str) else ""
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope
            scope_name = sanitiser.text(scope.name)
            scope_version = sanitiser.text(scope.version)
            for span in scope_spans.spans:
                # Each field read from a protobuf message is a new object: read ids once.
                trace_id = span.trace_id
                if len(trace_id) != 16 or trace_id == _ZERO_TRACE_ID:
                    result.reject(_BAD_TRACE_ID)
                    continue
                span_id = span.span_id
                if len(span_id) != 8 or span_id == _ZERO_SPAN_ID:
                    result.reject(_BAD_SPAN_ID)
                    continue
                parent = span.parent_span_id or None
                if parent is not None and (len(parent) != 8 or parent == _ZERO_SPAN_ID):
                    result.reject(_BAD_PARENT)
                    continue
                sanitiser.truncated = False
                rows.append(
                    _row(
                        span,
                        (trace_id, span_id, parent),
                        resource,
                        (service, scope_name, scope_version),
                        sanitiser,
                        now_ns,
                    )
                )
    return result


def _row(
    span: Any,
    ids: tuple[bytes, bytes, bytes | None],
    resource: dict[str, Any],
    source: tuple[str, str, str],
    sanitiser: _Sanitiser,
    now_ns: int,
) -> SpanRow:
    attrs = sanitiser.key_values(span.attributes)
    flags = 0
    start = span.start_time_unix_nano
    end = span.end_time_unix_nano
    if start == 0 or start > now_ns + _MAX_FUTURE_NS:
        # Not the receive time: a re-sent span must get the same start, which is part of
        # its key (tracestore/README.md "Timestamps").
        flags |= FLAG_ZERO_TIMESTAMP
        start = end if 0 < end <= now_ns + _MAX_FUTURE_NS else 0
    if end == 0:
        end = start
    if end < start:
        flags |= FLAG_END_BEFORE_START
        end = start
    if end > now_ns + _MAX_FUTURE_NS:
        flags |= FLAG_ZERO_TIMESTAMP
        end = start
    span_events = span.events
    events = (
        [
            {
                "name": sanitiser.text(event.name),
                "time_unix_nano": event.time_unix_nano,
                "attributes": sanitiser.key_values(event.attributes),
            }
            for event in span_events
        ]
        if span_events
        else []
    )
    span_links = span.links
    links = (
        [
            {
                "trace_id": link.trace_id.hex(),
                "span_id": link.span_id.hex(),
                "attributes": sanitiser.key_values(link.attributes),
            }
            for link in span_links
        ]
        if span_links
        else []
    )
    # Text fields are sanitised before the flag is decided: a truncated name counts too.
    name = sanitiser.text(span.name)
    kind = span.kind
    status = span.status
    status_message = sanitiser.text(status.message)
    status_code = status.code
    if not (0 <= kind < _INT2 and 0 <= status_code < _INT2):
        # Enums are open in protobuf: a value the smallint columns cannot hold becomes 0.
        kind = kind if 0 <= kind < _INT2 else 0
        status_code = status_code if 0 <= status_code < _INT2 else 0
        sanitiser.truncated = True
    if sanitiser.truncated:
        flags |= FLAG_TRUNCATED
    values, unconvertible = checked_canonical_values(
        attrs, resource, sanitiser.limits.cohort_dimensions
    )
    if unconvertible:
        flags |= FLAG_UNCONVERTIBLE_VALUE
    return (
        *ids,
        name,
        kind,
        start,
        end,
        status_code,
        status_message,
        *source,
        attrs,
        resource,
        events,
        links,
        flags,
        *values,
    )
