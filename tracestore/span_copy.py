"""Spans as binary COPY rows for ``tracestore_span``: the encoding, and the statements.

Binary COPY: the server reads numbers and timestamps as they are instead of parsing text.
The columns and the type each is sent as come from the field table (span_fields.py). The
types must match the columns exactly (psycopg's binary integer dumpers wrap silently on
overflow, so ``span_copy_rows`` keeps every integer within its column's range). A jsonb
value in binary is a version byte then the JSON text, which ``span_copy_rows`` prepares as
bytes, so those columns are written with the (raw bytes) bytea dumper: the server, which
knows the column is jsonb, parses the text exactly as in a text COPY. Likewise a
timestamptz in binary is a 64-bit count of microseconds since 2000-01-01 UTC:
``span_copy_rows`` computes it from the span's nanoseconds with integers and sends it
with the int8 dumper, instead of building a datetime that psycopg would turn back into
that count.

Used inside the transactions of ``services.store_span_rows``; owns none.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.db import DataError
from psycopg.types.string import BytesBinaryDumper

from .contracts import FLAG_OLD_START
from .decode import SpanRow
from .span_fields import (
    ATTRIBUTES,
    COHORT,
    COMPLETION_TOKENS,
    COPY_COLUMNS,
    COPY_TYPES,
    FIRST_CANONICAL,
    KIND,
    PROMPT_TOKENS,
    ROW_FIELDS,
    SPAN_FIELDS,
    SPAN_ID,
    STATUS_CODE,
    SpanFieldMismatch,
    check_fields,
)

PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01T00:00:00Z in Unix microseconds

_COLUMN_LIST = ", ".join(COPY_COLUMNS)
COPY_SPANS = f"COPY tracestore_span ({_COLUMN_LIST}) FROM STDIN (FORMAT BINARY)"
COPY_STAGE = f"COPY tracestore_span_stage ({_COLUMN_LIST}) FROM STDIN (FORMAT BINARY)"
_INT2 = 2**15
_INT4 = 2**31

STAGE_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS tracestore_span_stage "
    "(LIKE tracestore_span INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
)
INSERT_NEW_FROM_STAGE = (
    f"INSERT INTO tracestore_span ({_COLUMN_LIST}) "  # noqa: S608 (constant column names)
    f"SELECT {_COLUMN_LIST} FROM tracestore_span_stage "
    "ON CONFLICT DO NOTHING RETURNING trace_id, span_id"
)

# span_copy_rows builds each COPY row from runs of the span's row taken as they are and
# the fields it encodes itself. Those runs and fields, by name, must be the table's COPY
# columns in order: a field added to the table where no run takes it is refused here.
_ENCODED_FIELDS = (
    "project_id",
    *ROW_FIELDS[:KIND],
    "kind",
    "start_time_ns",
    "end_time_ns",
    "duration_ns",
    *ROW_FIELDS[STATUS_CODE:ATTRIBUTES],
    "attributes",
    "resource_attributes",
    "events",
    "links",
    "flags",
    *ROW_FIELDS[FIRST_CANONICAL:COHORT],
    "cohort",
)
check_fields("span_copy_rows", _ENCODED_FIELDS, tuple(f.name for f in SPAN_FIELDS))
# A value taken as it is must need no encoding, and an integer must be range-checked
# (psycopg's binary dumpers would wrap it around): the integers of the runs are.
_RANGE_CHECKED = {"status_code", "prompt_tokens", "completion_tokens"}
for _field in SPAN_FIELDS:
    if _field.name in ROW_FIELDS[:KIND] + ROW_FIELDS[STATUS_CODE:ATTRIBUTES] + (
        ROW_FIELDS[FIRST_CANONICAL:COHORT]
    ) and not (
        _field.copy_type in ("text", "bytea", "float8", "bool")
        or (_field.copy_type in ("int2", "int4") and _field.name in _RANGE_CHECKED)
    ):
        raise SpanFieldMismatch(
            f"span_copy_rows takes {_field.name!r} ({_field.copy_type}) as it is: "
            "encode or range-check it there"
        )

EMPTY_LIST = b"\x01[]"
EMPTY_OBJECT = b"\x01{}"


# One encoder for every value: json.dumps with options builds a new encoder per call.
_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def jsonb(value: object) -> bytes:
    """A jsonb value as binary COPY sends it: format version 1, then the JSON text."""
    return b"\x01" + _json(value).encode()


# Traces of one service carry the same few cohorts: their encodings are kept (bounded:
# cleared when full, as the key sets are small in practice).
ENCODED_MAX = 4096
_cohorts: dict[tuple[tuple[str, str], ...], bytes] = {}


def cohort_jsonb(cohort: dict[str, str]) -> bytes:
    """``jsonb`` of a cohort (text values), remembered."""
    if not cohort:
        return EMPTY_OBJECT
    key = tuple(cohort.items())
    try:
        encoded = _cohorts.get(key)
    except TypeError:  # a value that is not text (a record built by hand)
        return jsonb(cohort)
    if encoded is None:
        if len(_cohorts) >= ENCODED_MAX:
            _cohorts.clear()
        encoded = _cohorts[key] = jsonb(cohort)
    return encoded


def copy_rows(
    cursor: Any, statement: str, rows: list[tuple], types: Sequence[str] = COPY_TYPES
) -> None:
    # For "bytea" psycopg looks up by type the DB-API ``Binary`` dumper, written in Python
    # (a call per value, eight per span here); the plain bytes dumper is compiled.
    cursor.adapters.register_dumper(None, BytesBinaryDumper)
    with cursor.copy(statement) as copy:
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)


_DAY_NS = 86_400 * 10**9


def oldest_kept_start_ns(now_ns: int) -> int:
    """Spans starting before this are flagged FLAG_OLD_START: older than
    MICROLENS_SPAN_MAX_AGE_DAYS, or than what the next retention run keeps (its cutoff is
    midnight UTC ``retention`` days before its own day, at the latest tomorrow), so that
    no acknowledged span is deleted by retention before it has been kept that long."""
    next_run_cutoff = (now_ns // _DAY_NS + 1 - settings.MICROLENS_RETENTION_DAYS) * _DAY_NS
    return max(next_run_cutoff, now_ns - settings.MICROLENS_SPAN_MAX_AGE_DAYS * _DAY_NS)


def span_copy_rows(
    project_id: int,
    spans: Sequence[SpanRow],
    attributes_json: Sequence[bytes | None] = (),
    oldest_start_ns: int = 0,
) -> list[tuple]:
    """COPY rows (``COPY_COLUMNS``). JSON is serialised here: once per resource, not per
    span, not at all for the usual empty events, links and cohort, nor for attributes the
    decoder already wrote (``attributes_json``, by position; None where it did not).
    Decoding keeps hostile integers within their columns; a span built elsewhere that does
    not fit is refused here, as the database would refuse it, instead of being wrapped
    around by the binary format. A span starting before ``oldest_start_ns`` is flagged
    FLAG_OLD_START."""
    resources: dict[int, bytes] = {}
    rows = []
    encoded = iter(attributes_json)
    # The positions as locals: this loop runs once per span. The runs unpacked at once
    # are contiguous in a row (checked above, with _ENCODED_FIELDS).
    kind_at, code_at, attributes_at, first_canonical, cohort_at = (
        KIND,
        STATUS_CODE,
        ATTRIBUTES,
        FIRST_CANONICAL,
        COHORT,
    )
    prompt_at, completion_at = PROMPT_TOKENS, COMPLETION_TOKENS
    for span in spans:
        kind, start_ns, end_ns, status_code = span[kind_at : code_at + 1]
        attributes, resource_attributes, events, links, flags = span[attributes_at:first_canonical]
        resource = resources.get(id(resource_attributes))
        if resource is None:
            resource = resources[id(resource_attributes)] = jsonb(resource_attributes)
        prompt_tokens = span[prompt_at]
        completion_tokens = span[completion_at]
        if not (
            -_INT2 <= kind < _INT2
            and -_INT2 <= status_code < _INT2
            and -_INT4 <= flags < _INT4
            and (prompt_tokens is None or -_INT4 <= prompt_tokens < _INT4)
            and (completion_tokens is None or -_INT4 <= completion_tokens < _INT4)
        ):
            raise DataError(
                f"span {span[SPAN_ID].hex()}: kind, status code, flags or token count out of range"
            )
        if start_ns < oldest_start_ns:
            flags |= FLAG_OLD_START
        rows.append(
            (
                project_id,
                *span[:kind_at],
                kind,
                # Integer arithmetic: through a float, a timestamp can land a microsecond
                # off, and PostgreSQL keeps microseconds exactly.
                start_ns // 1000 - PG_EPOCH_US,
                end_ns // 1000 - PG_EPOCH_US,
                end_ns - start_ns,
                *span[code_at:attributes_at],
                next(encoded, None) or jsonb(attributes),
                resource,
                jsonb(events) if events else EMPTY_LIST,
                jsonb(links) if links else EMPTY_LIST,
                flags,
                *span[first_canonical:cohort_at],
                cohort_jsonb(span[cohort_at]),
            )
        )
    return rows
