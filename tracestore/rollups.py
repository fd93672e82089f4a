"""The per-trace rollup: each batch's per-trace deltas, merged into ``tracestore_trace``.

Used inside the transactions of ``services.store_span_rows`` (the merge) and
``services.rebuild_trace_rollups`` (the recomputation from the stored spans); owns none.
"""

from __future__ import annotations

import operator
import struct
from collections.abc import Sequence
from typing import Any

from .decode import SpanRow
from .span_copy import (
    EMPTY_OBJECT,
    ENCODED_MAX,
    PG_EPOCH_US,
    cohort_jsonb,
    copy_rows,
    jsonb,
)
from .span_fields import (
    COHORT,
    COMPLETION_TOKENS,
    END_TIME_NS,
    IS_FALLBACK,
    MICRO_MODEL,
    MODEL,
    NAME,
    PARENT_SPAN_ID,
    PROMPT_TOKENS,
    ROUTE,
    SERVICE_NAME,
    SPAN_ID,
    START_TIME_NS,
    STATUS_CODE,
    TRACE_ID,
)

_TIMESTAMPTZ = "int8"  # microseconds since 2000-01-01 UTC (see span_copy)
_JSONB = "bytea"  # version byte + JSON text (see span_copy)

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


# The fields a delta reads, by their positions in a span's row.
_delta_fields = operator.itemgetter(
    TRACE_ID,
    SPAN_ID,
    PARENT_SPAN_ID,
    NAME,
    START_TIME_NS,
    END_TIME_NS,
    STATUS_CODE,
    SERVICE_NAME,
    MODEL,
    MICRO_MODEL,
    PROMPT_TOKENS,
    COMPLETION_TOKENS,
    ROUTE,
    IS_FALLBACK,
    COHORT,
)


def rollup_deltas(spans: Sequence[SpanRow]) -> list[tuple]:
    """Per-trace aggregates of the spans this batch inserted, as COPY rows for
    tracestore_trace_delta (in trace_id order). One pass over the spans."""
    by_trace: dict[bytes, _TraceDelta] = {}
    for (
        trace_id,
        span_id,
        parent_span_id,
        name,
        start_ns,
        end_ns,
        status_code,
        service_name,
        model,
        micro_model,
        prompt_tokens,
        completion_tokens,
        route,
        is_fallback,
        cohort,
    ) in map(_delta_fields, spans):
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
                d.start_us - PG_EPOCH_US,
                d.end_us - PG_EPOCH_US,
                duration_ns,
                root_span_id,
                None if root_start_us is None else root_start_us - PG_EPOCH_US,
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
                None if root_cohort is None else cohort_jsonb(root_cohort),
                jsonb({k: list(v) for k, v in sources.items()}) if sources else EMPTY_OBJECT,
                cohort_jsonb(cohort),
            )
        )
    return deltas


_TEXT_OID = 25
_EMPTY_TEXT_ARRAY = struct.pack("!iii", 0, 0, _TEXT_OID)


# Traces of one service carry the same few models and routes: their encodings are kept
# (bounded: cleared when full, as the sets are small in practice).
_arrays: dict[str, bytes] = {}


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
            if len(_arrays) >= ENCODED_MAX:
                _arrays.clear()
            encoded = _arrays[value] = _pack_text_array([value])
        return encoded
    return _pack_text_array(sorted(values))


def _pack_text_array(values: list[str]) -> bytes:
    items = [value.encode() for value in values]
    return struct.pack("!iiiii", 1, 0, _TEXT_OID, len(items), 1) + b"".join(
        struct.pack("!i", len(item)) + item for item in items
    )


def merge_rollups(cursor: Any, project_id: int, deltas: list[tuple]) -> None:
    """Merge a batch's deltas (``rollup_deltas``) into its traces' rollups, inside the
    caller's transaction."""
    # Empty already unless an enclosing transaction merged a batch before this one.
    cursor.execute(_DELTA_PREPARE)
    copy_rows(cursor, _COPY_DELTAS, deltas, _DELTA_COPY_TYPES)
    cursor.execute(_UPSERT_ROLLUPS, {"project_id": project_id})


def recompute_rollups(cursor: Any, project_id: int, trace_ids: Sequence[bytes]) -> None:
    """Recompute the traces' rollups from their stored spans, inside the caller's
    transaction."""
    cursor.execute(_RECOMPUTE_ROLLUP, {"project_id": project_id, "trace_ids": sorted(trace_ids)})
