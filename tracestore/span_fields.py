"""The span's fields: the one table every positional shape of a span is derived from.

A span travels as a plain tuple on the hot path (``decode.SpanRow``: building a frozen
dataclass of 35 fields costs more than decoding the span's attributes), so its fields
are known by position in several places: the compiled decoder's tuple (``_otlp.c``), the
Python reference decoder (``decode._row``), the normaliser's canonical values, the
binary COPY's columns and types (``span_copy``), the rollup's per-batch deltas
(``rollups``), ``contracts.SpanRecord`` and the ``tracestore_span`` table
(``models.Span``). They are all read from ``SPAN_FIELDS`` below, or checked against it:
at import (``SpanRecord``, the compiled decoder's ``ROW_FIELDS``, the COPY encoder's
pass-through run) and in tests (``models.Span``'s columns and their SQL types in the
migrated database). tracestore/README.md "Adding a canonical field" says what to touch.

Pure data: no Django, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

# Where a field's value comes from.
BATCH = "batch"  # the batch's project: a COPY column, not part of a span's row
DECODER = "decoder"  # read off the OTLP span by _otlp.c and decode._row, in this order
NORMALISER = "normaliser"  # normalise.checked_canonical_values, in this order
STORE = "store"  # computed by the COPY encoder from other fields (span_copy)


@dataclass(frozen=True, slots=True)
class SpanField:
    """One field of a span: its name in a span's row and in ``SpanRecord``, its
    ``tracestore_span`` column and that column's SQL type, the type the binary COPY sends
    it as, and where its value comes from."""

    name: str
    column: str
    sql_type: str
    copy_type: str
    source: str


# Binary COPY sends each value in the format of its copy type, which must match the
# column: a jsonb value goes as bytes (a version byte, then the JSON text: the bytea
# dumper sends them raw and the server parses them as jsonb) and a timestamptz as int8
# (microseconds since 2000-01-01 UTC, computed with integers by span_copy).
_JSONB = ("jsonb", "bytea")
_TIMESTAMPTZ = ("timestamp with time zone", "int8")
_TEXT = ("text", "text")
_INT2 = ("smallint", "int2")
_INT4 = ("integer", "int4")
_INT8 = ("bigint", "int8")
_BYTEA = ("bytea", "bytea")
_FLOAT8 = ("double precision", "float8")
_BOOL = ("boolean", "bool")

# In the COPY's column order. A span's row is these fields without the BATCH and STORE
# ones: the DECODER fields, then the NORMALISER fields.
SPAN_FIELDS: tuple[SpanField, ...] = tuple(
    SpanField(name, column, sql_type, copy_type, source)
    for name, column, (sql_type, copy_type), source in (
        ("project_id", "project_id", _INT8, BATCH),
        ("trace_id", "trace_id", _BYTEA, DECODER),
        ("span_id", "span_id", _BYTEA, DECODER),
        ("parent_span_id", "parent_span_id", _BYTEA, DECODER),
        ("name", "name", _TEXT, DECODER),
        ("kind", "kind", _INT2, DECODER),
        # Nanoseconds since the Unix epoch in a row; microseconds in the table.
        ("start_time_ns", "start_time", _TIMESTAMPTZ, DECODER),
        ("end_time_ns", "end_time", _TIMESTAMPTZ, DECODER),
        ("duration_ns", "duration_ns", _INT8, STORE),
        ("status_code", "status_code", _INT2, DECODER),
        ("status_message", "status_message", _TEXT, DECODER),
        ("service_name", "service_name", _TEXT, DECODER),
        ("scope_name", "scope_name", _TEXT, DECODER),
        ("scope_version", "scope_version", _TEXT, DECODER),
        ("attributes", "attributes", _JSONB, DECODER),
        ("resource_attributes", "resource_attributes", _JSONB, DECODER),
        ("events", "events", _JSONB, DECODER),
        ("links", "links", _JSONB, DECODER),
        ("flags", "flags", _INT4, DECODER),
        # canonical fields (DESIGN.md "Span conventions we normalise")
        ("span_kind", "span_kind", _TEXT, NORMALISER),
        ("model", "model", _TEXT, NORMALISER),
        ("provider", "provider", _TEXT, NORMALISER),
        ("micro_model", "micro_model", _TEXT, NORMALISER),
        ("prompt_tokens", "prompt_tokens", _INT4, NORMALISER),
        ("completion_tokens", "completion_tokens", _INT4, NORMALISER),
        ("input_text", "input_text", _TEXT, NORMALISER),
        ("output_text", "output_text", _TEXT, NORMALISER),
        ("route", "route", _TEXT, NORMALISER),
        ("label", "label", _TEXT, NORMALISER),
        ("confidence", "confidence", _FLOAT8, NORMALISER),
        ("expected_label", "expected_label", _TEXT, NORMALISER),
        ("is_fallback", "is_fallback", _BOOL, NORMALISER),
        ("is_retry", "is_retry", _BOOL, NORMALISER),
        ("cache_hit", "cache_hit", _BOOL, NORMALISER),
        ("is_mirrored", "is_mirrored", _BOOL, NORMALISER),
        ("mirror_of", "mirror_of", _TEXT, NORMALISER),
        # The last canonical field: new ones go before it (span_copy encodes it).
        ("cohort", "cohort", _JSONB, NORMALISER),
    )
)

# COPY: every field, in order.
COPY_COLUMNS = tuple(f.column for f in SPAN_FIELDS)
COPY_TYPES = tuple(f.copy_type for f in SPAN_FIELDS)
# A span's row (decode.SpanRow) and SpanRecord's fields, in order.
DECODER_FIELDS = tuple(f.name for f in SPAN_FIELDS if f.source == DECODER)
CANONICAL_FIELDS = tuple(f.name for f in SPAN_FIELDS if f.source == NORMALISER)
ROW_FIELDS = DECODER_FIELDS + CANONICAL_FIELDS

# Positions in a span's row, for the code that reads rows by index for speed.
TRACE_ID = ROW_FIELDS.index("trace_id")
SPAN_ID = ROW_FIELDS.index("span_id")
PARENT_SPAN_ID = ROW_FIELDS.index("parent_span_id")
NAME = ROW_FIELDS.index("name")
KIND = ROW_FIELDS.index("kind")
START_TIME_NS = ROW_FIELDS.index("start_time_ns")
END_TIME_NS = ROW_FIELDS.index("end_time_ns")
STATUS_CODE = ROW_FIELDS.index("status_code")
STATUS_MESSAGE = ROW_FIELDS.index("status_message")
SERVICE_NAME = ROW_FIELDS.index("service_name")
SCOPE_NAME = ROW_FIELDS.index("scope_name")
ATTRIBUTES = ROW_FIELDS.index("attributes")
RESOURCE_ATTRIBUTES = ROW_FIELDS.index("resource_attributes")
EVENTS = ROW_FIELDS.index("events")
LINKS = ROW_FIELDS.index("links")
FLAGS = ROW_FIELDS.index("flags")
MODEL = ROW_FIELDS.index("model")
MICRO_MODEL = ROW_FIELDS.index("micro_model")
PROMPT_TOKENS = ROW_FIELDS.index("prompt_tokens")
COMPLETION_TOKENS = ROW_FIELDS.index("completion_tokens")
ROUTE = ROW_FIELDS.index("route")
IS_FALLBACK = ROW_FIELDS.index("is_fallback")
COHORT = ROW_FIELDS.index("cohort")
# The first canonical field: the compiled decoder's rows end just before it.
FIRST_CANONICAL = len(DECODER_FIELDS)


class SpanFieldMismatch(RuntimeError):
    """A positional shape of a span disagrees with SPAN_FIELDS."""


def check_fields(what: str, names: tuple[str, ...], expected: tuple[str, ...]) -> None:
    """Raise SpanFieldMismatch, naming the first difference, unless ``names`` (a shape
    declared elsewhere: SpanRecord's fields, the compiled decoder's row) is ``expected``."""
    if names == expected:
        return
    for i, (got, want) in enumerate(zip(names, expected, strict=False)):
        if got != want:
            raise SpanFieldMismatch(
                f"{what}: field {i} is {got!r}, tracestore/span_fields.py says {want!r}"
            )
    raise SpanFieldMismatch(
        f"{what}: {len(names)} fields, tracestore/span_fields.py says {len(expected)}"
        f" ({', '.join(expected[len(names) :] or names[len(expected) :])} differ)"
    )
