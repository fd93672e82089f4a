"""tracestore's writes: named service functions that own their transaction."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone
from psycopg.types.json import Jsonb

from .contracts import ProjectRef, SpanRecord, StoreResult
from .models import ApiKey, Project

API_KEY_PREFIX = "ml_"
_LAST_USED_GRANULARITY = timedelta(minutes=1)


class StorageUnavailable(RuntimeError):
    """The database cannot take the batch now (down, overloaded): the client should retry."""


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
    return bool(
        ApiKey.objects.filter(digest=_digest(raw_key), revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
    )


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
_COLUMN_LIST = ", ".join(_SPAN_COLUMNS)

_STAGE_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS tracestore_span_stage "
    "(LIKE tracestore_span INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
)

# Rollup rows are created empty, then locked in trace_id order: concurrent batches that
# touch the same trace serialise here, and the later one recomputes from a snapshot that
# includes the earlier one's committed spans, so no update is lost whatever the order.
# A row this statement creates is not visible to its own SELECT, but needs no FOR UPDATE:
# another batch inserting the same key waits on our uncommitted insert until we commit.
_LOCK_TRACES = """
WITH created AS (
    INSERT INTO tracestore_trace (project_id, trace_id)
    SELECT %(project_id)s, t FROM unnest(%(trace_ids)s::bytea[]) AS t ORDER BY t
    ON CONFLICT (project_id, trace_id) DO NOTHING
)
SELECT 1 FROM tracestore_trace
WHERE project_id = %(project_id)s AND trace_id = ANY(%(trace_ids)s::bytea[])
ORDER BY trace_id FOR UPDATE
"""

_INSERT_SPANS = (
    f"INSERT INTO tracestore_span ({_COLUMN_LIST}) "  # noqa: S608 (constant column names)
    f"SELECT {_COLUMN_LIST} FROM tracestore_span_stage "
    "ON CONFLICT (project_id, trace_id, span_id) DO NOTHING"
)

# The whole rollup is recomputed from the trace's stored spans: exact whatever order the
# spans arrived in. Cohort values: the root span's win, then the earliest span's.
_RECOMPUTE_ROLLUP = """
WITH agg AS (
    SELECT
        s.project_id,
        s.trace_id,
        min(s.start_time) AS start_time,
        max(s.end_time) AS end_time,
        (array_agg(s.span_id ORDER BY s.start_time) FILTER (WHERE s.parent_span_id IS NULL))[1]
            AS root_span_id,
        (array_agg(s.name ORDER BY s.start_time) FILTER (WHERE s.parent_span_id IS NULL))[1]
            AS root_name,
        (array_agg(s.duration_ns ORDER BY s.start_time)
            FILTER (WHERE s.parent_span_id IS NULL))[1] AS root_duration_ns,
        coalesce(
            (array_agg(s.service_name ORDER BY s.start_time)
                FILTER (WHERE s.parent_span_id IS NULL))[1],
            (array_agg(s.service_name ORDER BY s.start_time))[1]
        ) AS service_name,
        count(*) AS span_count,
        count(*) FILTER (WHERE s.status_code = 2) AS error_count,
        coalesce(array_agg(DISTINCT s.model) FILTER (WHERE s.model IS NOT NULL), '{}')
            AS models,
        coalesce(array_agg(DISTINCT s.micro_model) FILTER (WHERE s.micro_model IS NOT NULL), '{}')
            AS micro_models,
        coalesce(array_agg(DISTINCT s.route) FILTER (WHERE s.route IS NOT NULL), '{}') AS routes,
        bool_or(s.is_fallback) AS is_fallback,
        coalesce(sum(s.prompt_tokens), 0) AS prompt_tokens,
        coalesce(sum(s.completion_tokens), 0) AS completion_tokens
    FROM tracestore_span s
    WHERE s.project_id = %(project_id)s AND s.trace_id = ANY(%(trace_ids)s::bytea[])
    GROUP BY s.project_id, s.trace_id
),
cohort AS (
    SELECT project_id, trace_id, jsonb_object_agg(key, value) AS cohort
    FROM (
        SELECT DISTINCT ON (s.trace_id, e.key) s.project_id, s.trace_id, e.key, e.value
        FROM tracestore_span s CROSS JOIN LATERAL jsonb_each(s.cohort) AS e
        WHERE s.project_id = %(project_id)s AND s.trace_id = ANY(%(trace_ids)s::bytea[])
        ORDER BY s.trace_id, e.key, (s.parent_span_id IS NULL) DESC, s.start_time
    ) AS firsts
    GROUP BY project_id, trace_id
)
UPDATE tracestore_trace AS t SET
    start_time = agg.start_time,
    end_time = agg.end_time,
    duration_ns = coalesce(
        agg.root_duration_ns,
        (extract(epoch FROM agg.end_time - agg.start_time) * 1e9)::bigint
    ),
    root_span_id = agg.root_span_id,
    root_name = agg.root_name,
    service_name = agg.service_name,
    span_count = agg.span_count,
    error_count = agg.error_count,
    models = agg.models,
    micro_models = agg.micro_models,
    routes = agg.routes,
    is_fallback = agg.is_fallback,
    prompt_tokens = agg.prompt_tokens,
    completion_tokens = agg.completion_tokens,
    cohort = coalesce(cohort.cohort, '{}'::jsonb),
    updated_at = now()
FROM agg LEFT JOIN cohort USING (project_id, trace_id)
WHERE t.project_id = agg.project_id AND t.trace_id = agg.trace_id
"""


def _timestamp(ns: int) -> datetime:
    return datetime.fromtimestamp(ns // 1000 / 1e6, tz=UTC)


def _row(project_id: int, r: SpanRecord) -> tuple:
    return (
        project_id,
        r.trace_id,
        r.span_id,
        r.parent_span_id,
        r.name,
        r.kind,
        _timestamp(r.start_time_ns),
        _timestamp(r.end_time_ns),
        r.end_time_ns - r.start_time_ns,
        r.status_code,
        r.status_message,
        r.service_name,
        r.scope_name,
        r.scope_version,
        Jsonb(r.attributes),
        Jsonb(r.resource_attributes),
        Jsonb(r.events),
        Jsonb(r.links),
        r.flags,
        r.span_kind,
        r.model,
        r.provider,
        r.micro_model,
        r.prompt_tokens,
        r.completion_tokens,
        r.input_text,
        r.output_text,
        r.route,
        r.label,
        r.confidence,
        r.expected_label,
        r.is_fallback,
        r.is_retry,
        r.cache_hit,
        r.is_mirrored,
        r.mirror_of,
        Jsonb(r.cohort),
    )


def store_spans(project_id: int, records: Sequence[SpanRecord]) -> StoreResult:
    """Write one batch of spans and their traces' rollups in one transaction.

    Idempotent on (project, trace_id, span_id): a re-sent span is counted as a duplicate
    and stored once. Returns only after the commit, so the caller may acknowledge.
    """
    if not records:
        return StoreResult(accepted=0, inserted=0, duplicates=0, traces=0)
    trace_ids = sorted({r.trace_id for r in records})
    params = {"project_id": project_id, "trace_ids": trace_ids}
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_STAGE_DDL)
        cursor.execute(_LOCK_TRACES, params)
        with cursor.copy(f"COPY tracestore_span_stage ({_COLUMN_LIST}) FROM STDIN") as copy:
            for record in records:
                copy.write_row(_row(project_id, record))
        cursor.execute(_INSERT_SPANS)
        inserted = cursor.rowcount
        cursor.execute(_RECOMPUTE_ROLLUP, params)
    return StoreResult(
        accepted=len(records),
        inserted=inserted,
        duplicates=len(records) - inserted,
        traces=len(trace_ids),
    )
