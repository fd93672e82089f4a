"""tracestore's writes: named service functions that own their transaction."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import operator
import secrets
import struct
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import django.db
import psycopg
from django.conf import settings
from django.db import DataError, IntegrityError, connection, transaction
from django.utils import timezone
from psycopg.errors import ProgramLimitExceeded, UniqueViolation
from psycopg.types.string import BytesBinaryDumper

from .contracts import (
    FLAG_OLD_START,
    PermanentStorageError,
    ProjectRef,
    SpanRecord,
    StorageError,
    StoreResult,
    TransientStorageError,
)
from .decode import SpanRow
from .models import ApiKey, Project
from .partitions import RetentionResult, apply_retention

API_KEY_PREFIX = "ml_"
_LAST_USED_GRANULARITY = timedelta(minutes=1)


# -- storage failures ---------------------------------------------------------------------

# Data the database refuses whatever the moment: a value it cannot store (22xxx), a
# constraint (23xxx), a row or index entry past its size limits (54xxx), a feature it
# lacks (0Axxx). Everything else a database error can mean (connection refused, lost or
# timed out, shutdown, lock or statement timeout, serialization conflict, out of
# resources, even a missing table during a deployment) may pass: retried, not dropped.
_PERMANENT = (
    psycopg.DataError,
    psycopg.IntegrityError,
    psycopg.NotSupportedError,
    ProgramLimitExceeded,
    django.db.DataError,
    django.db.IntegrityError,
    django.db.NotSupportedError,
)


def classify_storage_error(exc: BaseException) -> StorageError | None:
    """``exc`` as a ``TransientStorageError`` or ``PermanentStorageError``, or None when
    it is not a database error (a bug, left to propagate).

    The one place that knows the driver's exceptions: psycopg's own (raised as they are
    by COPY, which Django does not wrap) and Django's wrappers around them (whose
    ``__cause__`` is the psycopg error with its SQLSTATE)."""
    driver = exc.__cause__ if isinstance(exc.__cause__, psycopg.Error) else exc
    if not isinstance(driver, (psycopg.Error, django.db.Error)):
        return None
    sqlstate = driver.sqlstate if isinstance(driver, psycopg.Error) else None
    if isinstance(driver, _PERMANENT):
        return PermanentStorageError(sqlstate)
    return TransientStorageError(sqlstate)


@contextlib.contextmanager
def storage_errors() -> Iterator[None]:
    """Raise any database error inside as ``TransientStorageError`` or
    ``PermanentStorageError`` (from the original, kept as ``__cause__``)."""
    try:
        yield
    except StorageError:
        raise
    except Exception as exc:
        classified = classify_storage_error(exc)
        if classified is None:
            raise
        raise classified from exc


# -- projects and keys -------------------------------------------------------------------


def create_project(name: str) -> ProjectRef:
    project, _ = Project.objects.get_or_create(name=name)
    return ProjectRef(id=project.id, name=project.name)


def _digest(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def issue_api_key(project_id: int, name: str = "default", raw_key: str | None = None) -> str:
    """Create an API key for the project and return it; only its digest is stored.

    With ``raw_key`` given (bootstrap from the environment), that exact key is registered,
    idempotently.
    """
    key = raw_key or API_KEY_PREFIX + secrets.token_urlsafe(32)
    ApiKey.objects.get_or_create(
        digest=_digest(key),
        defaults={"project_id": project_id, "name": name, "prefix": key[:10]},
    )
    return key


def project_has_keys(project_id: int) -> bool:
    return ApiKey.objects.filter(project_id=project_id, revoked_at__isnull=True).exists()


def authenticate_api_key(raw_key: str) -> ProjectRef | None:
    """The project a key belongs to, or None for an unknown or revoked key."""
    if not raw_key:
        return None
    key = (
        ApiKey.objects.select_related("project")
        .filter(digest=_digest(raw_key), revoked_at__isnull=True)
        .only("id", "last_used_at", "project__id", "project__name")
        .first()
    )
    if key is None:
        return None
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at > _LAST_USED_GRANULARITY:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
    return ProjectRef(id=key.project.id, name=key.project.name)


def revoke_api_key(raw_key: str) -> bool:
    # Saved (not a queryset update) so that the revocation reaches the audit log.
    with transaction.atomic():
        key = (
            ApiKey.objects.select_for_update()
            .filter(digest=_digest(raw_key), revoked_at__isnull=True)
            .first()
        )
        if key is None:
            return False
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
    return True


# -- spans -------------------------------------------------------------------------------

_SPAN_COLUMNS = (
    "project_id",
    "trace_id",
    "span_id",
    "parent_span_id",
    "name",
    "kind",
    "start_time",
    "end_time",
    "duration_ns",
    "status_code",
    "status_message",
    "service_name",
    "scope_name",
    "scope_version",
    "attributes",
    "resource_attributes",
    "events",
    "links",
    "flags",
    "span_kind",
    "model",
    "provider",
    "micro_model",
    "prompt_tokens",
    "completion_tokens",
    "input_text",
    "output_text",
    "route",
    "label",
    "confidence",
    "expected_label",
    "is_fallback",
    "is_retry",
    "cache_hit",
    "is_mirrored",
    "mirror_of",
    "cohort",
)
# Binary COPY: the server reads numbers and timestamps as they are instead of parsing
# text. Its types must match the columns exactly (psycopg's binary integer dumpers wrap
# silently on overflow, so _rows keeps every integer within its column's range). A jsonb
# value in binary is a version byte then the JSON text, which _rows prepares as bytes, so
# those columns are written with the (raw bytes) bytea dumper: the server, which knows the
# column is jsonb, parses the text exactly as in a text COPY. Likewise a timestamptz in
# binary is a 64-bit count of microseconds since 2000-01-01 UTC: _rows computes it from
# the span's nanoseconds with integers and sends it with the int8 dumper, instead of
# building a datetime that psycopg would turn back into that count.
_JSONB = "bytea"
_TIMESTAMPTZ = "int8"
_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01T00:00:00Z in Unix microseconds
_SPAN_COPY_TYPES = (
    "int8",  # project_id
    "bytea",
    "bytea",
    "bytea",
    "text",  # name
    "int2",  # kind
    _TIMESTAMPTZ,  # start_time
    _TIMESTAMPTZ,  # end_time
    "int8",  # duration_ns
    "int2",  # status_code
    "text",
    "text",
    "text",
    "text",
    _JSONB,  # attributes
    _JSONB,
    _JSONB,
    _JSONB,  # links
    "int4",  # flags
    "text",
    "text",
    "text",
    "text",  # micro_model
    "int4",  # prompt_tokens
    "int4",
    "text",
    "text",
    "text",
    "text",  # label
    "float8",
    "text",
    "bool",
    "bool",
    "bool",
    "bool",
    "text",  # mirror_of
    _JSONB,  # cohort
)
_COLUMN_LIST = ", ".join(_SPAN_COLUMNS)
_COPY_SPANS = f"COPY tracestore_span ({_COLUMN_LIST}) FROM STDIN (FORMAT BINARY)"
_COPY_STAGE = f"COPY tracestore_span_stage ({_COLUMN_LIST}) FROM STDIN (FORMAT BINARY)"
_INT2 = 2**15
_INT4 = 2**31

_STAGE_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS tracestore_span_stage "
    "(LIKE tracestore_span INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
)
_INSERT_NEW_FROM_STAGE = (
    f"INSERT INTO tracestore_span ({_COLUMN_LIST}) "  # noqa: S608 (constant column names)
    f"SELECT {_COLUMN_LIST} FROM tracestore_span_stage "
    "ON CONFLICT DO NOTHING RETURNING trace_id, span_id"
)

# The rollup of a trace is a merge of per-batch deltas with commutative operations (min,
# max, sums, OR, set union; the root is the parentless span with the smallest (start,
# span_id); cohort values per key from the earliest span, the root's winning), so the
# result is the same whatever order and batching the spans arrive in. ON CONFLICT DO
# UPDATE locks the row and reads its latest committed version: concurrent batches of one
# trace from many receivers serialise on it and no update is lost. Rows are upserted in
# trace_id order so two batches cannot deadlock.
#
# The deltas reach the server by binary COPY into a temporary table of this connection
# (emptied at commit): parsing them from one JSON parameter (jsonb_to_recordset) cost the
# server as much as the upsert itself.
_DELTA_COLUMNS = (
    "trace_id",
    "start_time",
    "end_time",
    "duration_ns",
    "root_span_id",
    "root_start_time",
    "root_name",
    "service_name",
    "span_count",
    "error_count",
    "models",
    "micro_models",
    "routes",
    "is_fallback",
    "prompt_tokens",
    "completion_tokens",
    "root_cohort",
    "cohort_sources",
    "cohort",
)
_DELTA_LIST = ", ".join(_DELTA_COLUMNS)
# The rollup's own columns and types: a delta row is a rollup row without project and time.
_DELTA_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS tracestore_trace_delta ON COMMIT DELETE ROWS AS "  # noqa: S608 (constant column names)
    f"SELECT {_DELTA_LIST} FROM tracestore_trace WITH NO DATA"
)
_TEXT_ARRAY = "bytea"  # array_recv's format, built by _text_array
_DELTA_COPY_TYPES = (
    "bytea",
    _TIMESTAMPTZ,
    _TIMESTAMPTZ,
    "int8",
    "bytea",
    _TIMESTAMPTZ,
    "text",
    "text",
    "int4",
    "int4",
    _TEXT_ARRAY,
    _TEXT_ARRAY,
    _TEXT_ARRAY,
    "bool",
    "int8",
    "int8",
    _JSONB,
    _JSONB,
    _JSONB,
)
_DELTA_PREPARE = _DELTA_DDL + "; DELETE FROM tracestore_trace_delta"  # noqa: S608 (constants)
_COPY_DELTAS = f"COPY tracestore_trace_delta ({_DELTA_LIST}) FROM STDIN (FORMAT BINARY)"
_NEW_ROOT = (
    "(excluded.root_span_id IS NOT NULL AND (t.root_span_id IS NULL OR "
    "(excluded.root_start_time, excluded.root_span_id) < (t.root_start_time, t.root_span_id)))"
)
_UPSERT_ROLLUPS = f"""
INSERT INTO tracestore_trace AS t (project_id, {_DELTA_LIST}, updated_at)
SELECT %(project_id)s, {_DELTA_LIST}, now()
FROM tracestore_trace_delta AS d
ORDER BY d.trace_id
ON CONFLICT (project_id, trace_id) DO UPDATE SET
    start_time = least(t.start_time, excluded.start_time),
    end_time = greatest(t.end_time, excluded.end_time),
    root_span_id = CASE WHEN {_NEW_ROOT} THEN excluded.root_span_id ELSE t.root_span_id END,
    root_start_time = CASE WHEN {_NEW_ROOT} THEN excluded.root_start_time
        ELSE t.root_start_time END,
    root_name = CASE WHEN {_NEW_ROOT} THEN excluded.root_name ELSE t.root_name END,
    root_cohort = CASE WHEN {_NEW_ROOT} THEN excluded.root_cohort ELSE t.root_cohort END,
    duration_ns = CASE
        WHEN {_NEW_ROOT} THEN excluded.duration_ns
        WHEN t.root_span_id IS NOT NULL THEN t.duration_ns
        ELSE (extract(epoch FROM greatest(t.end_time, excluded.end_time)
            - least(t.start_time, excluded.start_time)) * 1000000)::bigint * 1000
    END,
    service_name = CASE
        WHEN {_NEW_ROOT} THEN excluded.service_name
        WHEN t.root_span_id IS NOT NULL THEN t.service_name
        WHEN excluded.root_span_id IS NULL AND excluded.start_time < t.start_time
            THEN excluded.service_name
        ELSE t.service_name
    END,
    span_count = t.span_count + excluded.span_count,
    error_count = t.error_count + excluded.error_count,
    models = ARRAY(SELECT DISTINCT unnest(t.models || excluded.models) ORDER BY 1),
    micro_models = ARRAY(
        SELECT DISTINCT unnest(t.micro_models || excluded.micro_models) ORDER BY 1
    ),
    routes = ARRAY(SELECT DISTINCT unnest(t.routes || excluded.routes) ORDER BY 1),
    is_fallback = t.is_fallback OR excluded.is_fallback,
    prompt_tokens = t.prompt_tokens + excluded.prompt_tokens,
    completion_tokens = t.completion_tokens + excluded.completion_tokens,
    cohort_sources = tracestore_merge_first(t.cohort_sources, excluded.cohort_sources),
    cohort = tracestore_cohort_values(
        tracestore_merge_first(t.cohort_sources, excluded.cohort_sources),
        CASE WHEN {_NEW_ROOT} THEN excluded.root_cohort ELSE t.root_cohort END
    ),
    updated_at = now()
"""  # noqa: S608 (the substitutions are constants: _NEW_ROOT and the column names)

# The same rollup computed from scratch from the stored spans: the reference the merge
# above must always agree with (tests compare them), and a repair tool.
_RECOMPUTE_ROLLUP = """
WITH spans AS (
    SELECT s.*, (extract(epoch FROM s.start_time) * 1000000)::bigint AS start_us
    FROM tracestore_span s
    WHERE s.project_id = %(project_id)s AND s.trace_id = ANY(%(trace_ids)s::bytea[])
),
agg AS (
    SELECT
        project_id,
        trace_id,
        min(start_time) AS start_time,
        max(end_time) AS end_time,
        count(*) AS span_count,
        count(*) FILTER (WHERE status_code = 2) AS error_count,
        coalesce(array_agg(DISTINCT model ORDER BY model) FILTER (WHERE model IS NOT NULL),
            '{}') AS models,
        coalesce(array_agg(DISTINCT micro_model ORDER BY micro_model)
            FILTER (WHERE micro_model IS NOT NULL), '{}') AS micro_models,
        coalesce(array_agg(DISTINCT route ORDER BY route) FILTER (WHERE route IS NOT NULL),
            '{}') AS routes,
        bool_or(is_fallback) AS is_fallback,
        coalesce(sum(prompt_tokens), 0) AS prompt_tokens,
        coalesce(sum(completion_tokens), 0) AS completion_tokens,
        (array_agg(service_name ORDER BY start_us, span_id))[1] AS first_service
    FROM spans GROUP BY project_id, trace_id
),
roots AS (
    SELECT DISTINCT ON (trace_id) trace_id, span_id, start_time, name, service_name, cohort,
        (extract(epoch FROM end_time) * 1000000)::bigint * 1000 - start_us * 1000 AS duration_ns
    FROM spans WHERE parent_span_id IS NULL
    ORDER BY trace_id, start_us, span_id
),
sources AS (
    SELECT trace_id, jsonb_object_agg(key, jsonb_build_array(start_us, value)) AS cohort_sources
    FROM (
        SELECT DISTINCT ON (s.trace_id, e.key) s.trace_id, e.key, e.value, s.start_us
        FROM spans s CROSS JOIN LATERAL jsonb_each_text(s.cohort) AS e
        ORDER BY s.trace_id, e.key, s.start_us, e.value
    ) AS firsts
    GROUP BY trace_id
)
INSERT INTO tracestore_trace AS t (
    project_id, trace_id, start_time, end_time, duration_ns, root_span_id, root_start_time,
    root_name, service_name, span_count, error_count, models, micro_models, routes,
    is_fallback, prompt_tokens, completion_tokens, root_cohort, cohort_sources, cohort,
    updated_at
)
SELECT
    agg.project_id, agg.trace_id, agg.start_time, agg.end_time,
    coalesce(
        roots.duration_ns,
        (extract(epoch FROM agg.end_time - agg.start_time) * 1000000)::bigint * 1000
    ),
    roots.span_id, roots.start_time, roots.name,
    coalesce(roots.service_name, agg.first_service),
    agg.span_count, agg.error_count, agg.models, agg.micro_models, agg.routes,
    agg.is_fallback, agg.prompt_tokens, agg.completion_tokens, roots.cohort,
    coalesce(sources.cohort_sources, '{}'::jsonb),
    tracestore_cohort_values(sources.cohort_sources, roots.cohort),
    now()
FROM agg
LEFT JOIN roots USING (trace_id)
LEFT JOIN sources USING (trace_id)
ON CONFLICT (project_id, trace_id) DO UPDATE SET
    start_time = excluded.start_time,
    end_time = excluded.end_time,
    duration_ns = excluded.duration_ns,
    root_span_id = excluded.root_span_id,
    root_start_time = excluded.root_start_time,
    root_name = excluded.root_name,
    service_name = excluded.service_name,
    span_count = excluded.span_count,
    error_count = excluded.error_count,
    models = excluded.models,
    micro_models = excluded.micro_models,
    routes = excluded.routes,
    is_fallback = excluded.is_fallback,
    prompt_tokens = excluded.prompt_tokens,
    completion_tokens = excluded.completion_tokens,
    root_cohort = excluded.root_cohort,
    cohort_sources = excluded.cohort_sources,
    cohort = excluded.cohort,
    updated_at = now()
"""


_EMPTY_LIST = b"\x01[]"
_EMPTY_OBJECT = b"\x01{}"


# One encoder for every value: json.dumps with options builds a new encoder per call.
_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def _jsonb(value: object) -> bytes:
    """A jsonb value as binary COPY sends it: format version 1, then the JSON text."""
    return b"\x01" + _json(value).encode()


def _copy_rows(
    cursor: Any, statement: str, rows: list[tuple], types: Sequence[str] = _SPAN_COPY_TYPES
) -> None:
    # For "bytea" psycopg looks up by type the DB-API ``Binary`` dumper, written in Python
    # (a call per value, eight per span here); the plain bytes dumper is compiled.
    cursor.adapters.register_dumper(None, BytesBinaryDumper)
    with cursor.copy(statement) as copy:
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)


_DAY_NS = 86_400 * 10**9


def _oldest_kept_start_ns(now_ns: int) -> int:
    """Spans starting before this are flagged FLAG_OLD_START: older than
    MICROLENS_SPAN_MAX_AGE_DAYS, or than what the next retention run keeps (its cutoff is
    midnight UTC ``retention`` days before its own day, at the latest tomorrow), so that
    no acknowledged span is deleted by retention before it has been kept that long."""
    next_run_cutoff = (now_ns // _DAY_NS + 1 - settings.MICROLENS_RETENTION_DAYS) * _DAY_NS
    return max(next_run_cutoff, now_ns - settings.MICROLENS_SPAN_MAX_AGE_DAYS * _DAY_NS)


def _rows(
    project_id: int,
    spans: Sequence[SpanRow],
    attributes_json: Sequence[bytes | None] = (),
    oldest_start_ns: int = 0,
) -> list[tuple]:
    """COPY rows. JSON is serialised here: once per resource, not per span, not at all for
    the usual empty events, links and cohort, nor for attributes the decoder already wrote
    (``attributes_json``, by position; None where it did not). Decoding keeps hostile
    integers within their columns; a span built elsewhere that does not fit is refused
    here, as the database would refuse it, instead of being wrapped around by the binary
    format. A span starting before ``oldest_start_ns`` is flagged FLAG_OLD_START."""
    resources: dict[int, bytes] = {}
    rows = []
    encoded = iter(attributes_json)
    for (
        trace_id,
        span_id,
        parent_span_id,
        name,
        kind,
        start_ns,
        end_ns,
        status_code,
        status_message,
        service_name,
        scope_name,
        scope_version,
        attributes,
        resource_attributes,
        events,
        links,
        flags,
        span_kind,
        model,
        provider,
        micro_model,
        prompt_tokens,
        completion_tokens,
        input_text,
        output_text,
        route,
        label,
        confidence,
        expected_label,
        is_fallback,
        is_retry,
        cache_hit,
        is_mirrored,
        mirror_of,
        cohort,
    ) in spans:
        resource = resources.get(id(resource_attributes))
        if resource is None:
            resource = resources[id(resource_attributes)] = _jsonb(resource_attributes)
        if not (
            -_INT2 <= kind < _INT2
            and -_INT2 <= status_code < _INT2
            and -_INT4 <= flags < _INT4
            and (prompt_tokens is None or -_INT4 <= prompt_tokens < _INT4)
            and (completion_tokens is None or -_INT4 <= completion_tokens < _INT4)
        ):
            raise DataError(
                f"span {span_id.hex()}: kind, status code, flags or token count out of range"
            )
        if start_ns < oldest_start_ns:
            flags |= FLAG_OLD_START
        rows.append(
            (
                project_id,
                trace_id,
                span_id,
                parent_span_id,
                name,
                kind,
                # Integer arithmetic: through a float, a timestamp can land a microsecond
                # off, and PostgreSQL keeps microseconds exactly.
                start_ns // 1000 - _PG_EPOCH_US,
                end_ns // 1000 - _PG_EPOCH_US,
                end_ns - start_ns,
                status_code,
                status_message,
                service_name,
                scope_name,
                scope_version,
                next(encoded, None) or _jsonb(attributes),
                resource,
                _jsonb(events) if events else _EMPTY_LIST,
                _jsonb(links) if links else _EMPTY_LIST,
                flags,
                span_kind,
                model,
                provider,
                micro_model,
                prompt_tokens,
                completion_tokens,
                input_text,
                output_text,
                route,
                label,
                confidence,
                expected_label,
                is_fallback,
                is_retry,
                cache_hit,
                is_mirrored,
                mirror_of,
                _cohort_jsonb(cohort),
            )
        )
    return rows


class _TraceDelta:
    """One trace's aggregates over the spans of one batch (see _UPSERT_ROLLUPS)."""

    __slots__ = (
        "completion_tokens",
        "earliest",
        "end_us",
        "error_count",
        "is_fallback",
        "micro_models",
        "models",
        "prompt_tokens",
        "root",
        "routes",
        "sources",
        "span_count",
        "start_us",
    )

    def __init__(self, start_us: int, end_us: int, first: tuple[Any, ...]) -> None:
        self.start_us = start_us
        self.end_us = end_us
        # (start_us, span_id, end_us, name, service_name, cohort) of the span with the
        # smallest (start, span_id): among parentless spans (root), and among all.
        self.root: tuple[Any, ...] | None = None
        self.earliest = first
        self.span_count = 0
        self.error_count = 0
        self.models: set[str] = set()
        self.micro_models: set[str] = set()
        self.routes: set[str] = set()
        self.is_fallback = False
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.sources: dict[str, tuple[int, str]] = {}


def _rollup_deltas(spans: Sequence[SpanRow]) -> list[tuple]:
    """Per-trace aggregates of the spans this batch inserted, as COPY rows for
    tracestore_trace_delta (in trace_id order). One pass over the spans."""
    by_trace: dict[bytes, _TraceDelta] = {}
    for (
        trace_id,
        span_id,
        parent_span_id,
        name,
        _kind,
        start_ns,
        end_ns,
        status_code,
        _status_message,
        service_name,
        _scope_name,
        _scope_version,
        _attributes,
        _resource_attributes,
        _events,
        _links,
        _flags,
        _span_kind,
        model,
        _provider,
        micro_model,
        prompt_tokens,
        completion_tokens,
        _input_text,
        _output_text,
        route,
        _label,
        _confidence,
        _expected_label,
        is_fallback,
        _is_retry,
        _cache_hit,
        _is_mirrored,
        _mirror_of,
        cohort,
    ) in spans:
        start_us = start_ns // 1000
        end_us = end_ns // 1000
        d = by_trace.get(trace_id)
        if d is None:
            d = by_trace[trace_id] = _TraceDelta(
                start_us, end_us, (start_us, span_id, end_us, name, service_name, cohort)
            )
        else:
            if start_us < d.start_us:
                d.start_us = start_us
            if end_us > d.end_us:
                d.end_us = end_us
            first = d.earliest
            if start_us < first[0] or (start_us == first[0] and span_id < first[1]):
                d.earliest = (start_us, span_id, end_us, name, service_name, cohort)
        if parent_span_id is None:
            root = d.root
            if root is None or start_us < root[0] or (start_us == root[0] and span_id < root[1]):
                d.root = (start_us, span_id, end_us, name, service_name, cohort)
        d.span_count += 1
        if status_code == 2:
            d.error_count += 1
        if model:
            d.models.add(model)
        if micro_model:
            d.micro_models.add(micro_model)
        if route:
            d.routes.add(route)
        if is_fallback:
            d.is_fallback = True
        if prompt_tokens:
            d.prompt_tokens += prompt_tokens
        if completion_tokens:
            d.completion_tokens += completion_tokens
        if cohort:
            sources = d.sources
            for key, value in cohort.items():
                if key not in sources or (start_us, value) < sources[key]:
                    sources[key] = (start_us, value)
    deltas = []
    for trace_id in sorted(by_trace):
        d = by_trace[trace_id]
        root = d.root
        sources = d.sources
        # tracestore_cohort_values(cohort_sources, root_cohort) of this batch alone: the
        # rollup's cohort when the trace is new (merges recompute it).
        cohort = {k: v for k, (_, v) in sources.items()}
        if root is not None:
            root_start_us, root_span_id, root_end_us, root_name, service_name, root_cohort = root
            cohort |= root_cohort
            duration_ns = (root_end_us - root_start_us) * 1000
        else:
            root_start_us = root_span_id = root_name = root_cohort = None
            service_name = d.earliest[4]
            duration_ns = (d.end_us - d.start_us) * 1000
        deltas.append(
            (
                trace_id,
                d.start_us - _PG_EPOCH_US,
                d.end_us - _PG_EPOCH_US,
                duration_ns,
                root_span_id,
                None if root_start_us is None else root_start_us - _PG_EPOCH_US,
                root_name,
                service_name,
                d.span_count,
                d.error_count,
                _text_array(d.models),
                _text_array(d.micro_models),
                _text_array(d.routes),
                d.is_fallback,
                d.prompt_tokens,
                d.completion_tokens,
                None if root_cohort is None else _cohort_jsonb(root_cohort),
                _jsonb({k: list(v) for k, v in sources.items()}) if sources else _EMPTY_OBJECT,
                _cohort_jsonb(cohort),
            )
        )
    return deltas


_TEXT_OID = 25
_EMPTY_TEXT_ARRAY = struct.pack("!iii", 0, 0, _TEXT_OID)


# Traces of one service carry the same few models, routes and cohorts: their encodings
# are kept (bounded: cleared when full, as the key sets are small in practice).
_ENCODED_MAX = 4096
_arrays: dict[str, bytes] = {}
_cohorts: dict[tuple[tuple[str, str], ...], bytes] = {}


def _text_array(values: set[str]) -> bytes:
    """A text[] in PostgreSQL's binary format (array_recv): dimensions, no-nulls flag,
    element type, then the one dimension's length and lower bound, then each element as
    its length and UTF-8; sorted, as the rollup keeps them."""
    if not values:
        return _EMPTY_TEXT_ARRAY
    if len(values) == 1:
        (value,) = values
        encoded = _arrays.get(value)
        if encoded is None:
            if len(_arrays) >= _ENCODED_MAX:
                _arrays.clear()
            encoded = _arrays[value] = _pack_text_array([value])
        return encoded
    return _pack_text_array(sorted(values))


def _pack_text_array(values: list[str]) -> bytes:
    items = [value.encode() for value in values]
    return struct.pack("!iiiii", 1, 0, _TEXT_OID, len(items), 1) + b"".join(
        struct.pack("!i", len(item)) + item for item in items
    )


def _cohort_jsonb(cohort: dict[str, str]) -> bytes:
    """``_jsonb`` of a cohort (text values), remembered."""
    if not cohort:
        return _EMPTY_OBJECT
    key = tuple(cohort.items())
    try:
        encoded = _cohorts.get(key)
    except TypeError:  # a value that is not text (a record built by hand)
        return _jsonb(cohort)
    if encoded is None:
        if len(_cohorts) >= _ENCODED_MAX:
            _cohorts.clear()
        encoded = _cohorts[key] = _jsonb(cohort)
    return encoded


def _merge_rollups(cursor: Any, project_id: int, deltas: list[tuple]) -> None:
    """Merge a batch's deltas (``_rollup_deltas``) into its traces' rollups, inside the
    caller's transaction."""
    # Empty already unless an enclosing transaction merged a batch before this one.
    cursor.execute(_DELTA_PREPARE)
    _copy_rows(cursor, _COPY_DELTAS, deltas, _DELTA_COPY_TYPES)
    cursor.execute(_UPSERT_ROLLUPS, {"project_id": project_id})


# SpanRecord -> the same span as a row (its fields in order).
_record_row = operator.attrgetter(*(f.name for f in dataclasses.fields(SpanRecord)))


def store_spans(project_id: int, records: Sequence[SpanRecord]) -> StoreResult:
    """Write one batch of spans and merge it into its traces' rollups, in one transaction.

    Idempotent on (project, trace_id, span_id): a re-sent span is counted as a duplicate,
    stored once and merged into the rollup once. Returns only after the commit, so the
    caller may acknowledge.
    """
    return store_span_rows(project_id, [_record_row(r) for r in records])


# A lock held elsewhere or a server too slow to answer ends the batch's transaction
# after MICROLENS_INGEST_DB_TIMEOUT_SECONDS, per statement (server side, the connection
# stays usable); the receivers answer UNAVAILABLE and exporters retry. SET LOCAL: the
# bound ends with the transaction and never reaches other users of the connection.
_BOUND_TRANSACTION = (
    "SELECT set_config('statement_timeout', %(ms)s, true), set_config('lock_timeout', %(ms)s, true)"
)


def _bound_transaction(cursor: Any, timeout_ms: int) -> None:
    if timeout_ms > 0:
        cursor.execute(_BOUND_TRANSACTION, {"ms": str(timeout_ms)})


def store_span_rows(
    project_id: int, spans: Sequence[SpanRow], attributes_json: Sequence[bytes | None] = ()
) -> StoreResult:
    """``store_spans`` for spans as rows (``SpanRow``: a SpanRecord's fields in order), as
    the receivers decode them, with their attributes' jsonb if the decoder wrote it
    (``DecodeResult.attributes_json``).

    Raises ``TransientStorageError`` (retry later: nothing was committed) or
    ``PermanentStorageError`` (the database refuses this batch), never a driver error.
    """
    if not spans:
        return StoreResult(accepted=0, inserted=0, duplicates=0, traces=0)
    rows = _rows(project_id, spans, attributes_json, _oldest_kept_start_ns(time.time_ns()))
    timeout_ms = settings.MICROLENS_INGEST_DB_TIMEOUT_SECONDS * 1000
    new: Sequence[SpanRow]
    with storage_errors():
        try:
            # Fast path: almost every batch is new, so COPY straight into the table and
            # merge the whole batch into the rollups (no savepoint: a conflict undoes it all).
            with transaction.atomic(), connection.cursor() as cursor:
                _bound_transaction(cursor, timeout_ms)
                _copy_rows(cursor, _COPY_SPANS, rows)
                _merge_rollups(cursor, project_id, _rollup_deltas(spans))
            new = spans
        except (IntegrityError, UniqueViolation):
            # A retry or an overlapping batch, rolled back: stage it and keep only the
            # unseen spans, in a transaction of its own.
            with transaction.atomic(), connection.cursor() as cursor:
                _bound_transaction(cursor, timeout_ms)
                cursor.execute(_STAGE_DDL)
                _copy_rows(cursor, _COPY_STAGE, rows)
                cursor.execute(_INSERT_NEW_FROM_STAGE)
                inserted_keys = {(bytes(t), bytes(s)) for t, s in cursor.fetchall()}
                new = []
                for span in spans:
                    key = (span[0], span[1])
                    if key in inserted_keys:
                        inserted_keys.discard(key)  # a span twice in one batch counts once
                        new.append(span)
                if new:
                    _merge_rollups(cursor, project_id, _rollup_deltas(new))
    return StoreResult(
        accepted=len(spans),
        inserted=len(new),
        duplicates=len(spans) - len(new),
        traces=len({span[0] for span in spans}),
    )


def rebuild_trace_rollups(project_id: int, trace_ids: Sequence[bytes]) -> None:
    """Recompute rollups from the stored spans (repair, and the reference in tests)."""
    params: dict[str, Any] = {"project_id": project_id, "trace_ids": sorted(trace_ids)}
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_RECOMPUTE_ROLLUP, params)


# -- retention -----------------------------------------------------------------------------


def maintain_span_partitions(now: datetime | None = None) -> RetentionResult:
    """Create the partitions ahead and apply the retention setting (daily beat task and
    ``manage.py apply_retention``)."""
    return apply_retention(
        now or timezone.now(),
        retention_days=settings.MICROLENS_RETENTION_DAYS,
        days_ahead=settings.MICROLENS_PARTITION_DAYS_AHEAD,
    )
