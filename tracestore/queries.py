"""tracestore's reads. Every function takes the caller's project ids and returns contracts
dataclasses (hex ids, plain types), never model objects."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import JSONField, OuterRef, Q, QuerySet, Subquery

from . import contracts, span_fields
from .contracts import (
    FallbackAnswer,
    MicroModelDecision,
    ProjectRef,
    SpanUsage,
    SpanView,
    TraceDetail,
    TraceFacts,
    TraceSummary,
)
from .models import CohortDimension, Project, Span, Trace

_TRACE_ID_HEX = re.compile(r"[0-9a-fA-F]{32}")
_SPAN_ID_HEX = re.compile(r"[0-9a-fA-F]{16}")

_SUMMARY_COLUMNS = (
    "project_id",
    "trace_id",
    "start_time",
    "end_time",
    "duration_ns",
    "root_span_id",
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
    "cohort",
)
_SUMMARY_SELECT = ", ".join(_SUMMARY_COLUMNS)

# The text a trace search reads of a span: its name, input and output, each cut to its
# first 16,000 characters. The cut keeps every tsvector far below PostgreSQL's 1 MB limit
# (a longer one would fail the span's insert through the index), and tsvector positions
# stop at 16,383 anyway. Migration 0010 indexes exactly this expression (``prefix`` ''),
# so a search must repeat it verbatim for the index to serve it.
SPAN_TEXT_CHARS = 16_000
SPAN_TEXT_VECTOR = (
    "to_tsvector('simple'::regconfig,"
    f" left(coalesce({{prefix}}name, ''), {SPAN_TEXT_CHARS}) || ' ' ||"
    f" left(coalesce({{prefix}}input_text, ''), {SPAN_TEXT_CHARS}) || ' ' ||"
    f" left(coalesce({{prefix}}output_text, ''), {SPAN_TEXT_CHARS}))"
)
# Every word of the search text, as the same parser splits it, each as a prefix: "clas"
# finds "classify". Words the parser drops (punctuation alone) leave the query NULL,
# which matches nothing.
_SPAN_TEXT_QUERY = (
    "(SELECT to_tsquery('simple'::regconfig, string_agg(quote_literal(w) || ':*', ' & '))"
    " FROM unnest(tsvector_to_array(to_tsvector('simple'::regconfig, %s))) AS w)"
)


def span_text_condition(
    project_column: str, trace_column: str, text: str, since: datetime
) -> tuple[str, list[Any]]:
    """SQL (and its parameters) true when a span of the outer row's trace, started at or
    after ``since``, has every word of ``text`` (as word prefixes) in its name, input or
    output. ``project_column`` and ``trace_column`` name the outer row's columns (constant
    SQL of the caller, never input). A trace's spans start no earlier than the trace, so
    ``since`` (the range's start) only prunes day partitions."""
    vector = SPAN_TEXT_VECTOR.format(prefix="s.")
    sql = (
        "EXISTS (SELECT 1 FROM tracestore_span s"  # noqa: S608 (constant SQL; values are parameters)
        f" WHERE s.project_id = {project_column} AND s.trace_id = {trace_column}"
        f" AND s.start_time >= %s AND {vector} @@ {_SPAN_TEXT_QUERY})"
    )
    return sql, [since, text]


def span_text_check(
    project_column: str, trace_column: str, start_column: str, text: str
) -> tuple[str, list[Any]]:
    """``span_text_condition`` checked row by row: true when a span of the outer row's
    trace (which started at ``start_column``) has every word of ``text``. A scalar
    subquery, which the planner keeps per row rather than turning into a join over every
    matching span: for a word most traces hold, a newest-first walk then stops after the
    page's rows instead of first collecting the whole window's matches (1.1 s for a day
    at 20 M spans, 39 s for 30 days; docs/benchmarks.md)."""
    vector = SPAN_TEXT_VECTOR.format(prefix="s.")
    sql = (
        "(SELECT 1 FROM tracestore_span s"  # noqa: S608 (constant SQL; values are parameters)
        f" WHERE s.project_id = {project_column} AND s.trace_id = {trace_column}"
        f" AND s.start_time >= {start_column} AND {vector} @@ {_SPAN_TEXT_QUERY}"
        " LIMIT 1) IS NOT NULL"
    )
    return sql, [text]


def span_text_matches_at_least(
    project_ids: Sequence[int], text: str, start: datetime, end: datetime, count: int
) -> bool:
    """Whether at least ``count`` spans started in ``[start, end)`` hold every word of
    ``text``: read through the text index, stopping at ``count``. Tells a search which of
    the two forms above to use."""
    vector = SPAN_TEXT_VECTOR.format(prefix="s.")
    sql = (
        "SELECT count(*) FROM (SELECT 1 FROM tracestore_span s"  # noqa: S608 (constant SQL; values are parameters)
        " WHERE s.project_id = ANY(%s::bigint[]) AND s.start_time >= %s AND s.start_time < %s"
        f" AND {vector} @@ {_SPAN_TEXT_QUERY} LIMIT %s) AS matches"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [list(project_ids), start, end, text, count])
        (found,) = cursor.fetchone()
    return found >= count


def trace_service_condition(
    project_column: str, trace_column: str, service: str
) -> tuple[str, list[Any]]:
    """SQL true when the outer row's trace came from ``service`` (its root's service, or
    its first span's until the root arrives): one primary-key lookup per row."""
    sql = (
        "EXISTS (SELECT 1 FROM tracestore_trace t"  # noqa: S608 (constant SQL; values are parameters)
        f" WHERE t.project_id = {project_column} AND t.trace_id = {trace_column}"
        " AND t.service_name = %s)"
    )
    return sql, [service]


def recent_service_names(project_ids: Sequence[int], *, scan: int, limit: int) -> list[str]:
    """The distinct services of each project's newest ``scan`` traces, at most ``limit``
    of them in name order (value suggestions: bounded whatever the table's size)."""
    if not project_ids:
        return []
    sql = (
        "SELECT DISTINCT service_name FROM unnest(%s::bigint[]) AS p(id) CROSS JOIN LATERAL"
        " (SELECT t.service_name FROM tracestore_trace t WHERE t.project_id = p.id"
        " AND t.start_time IS NOT NULL ORDER BY t.start_time DESC LIMIT %s) AS head"
        " WHERE service_name IS NOT NULL AND service_name <> '' ORDER BY 1 LIMIT %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [list(project_ids), scan, limit])
        return [row[0] for row in cursor.fetchall()]


def trace_summaries(keys: Sequence[tuple[int, str]]) -> dict[tuple[int, str], TraceSummary]:
    """The rollups of the traces ``keys`` (project id, trace id hex), in one query; keys
    with no trace (yet) are absent."""
    if not keys:
        return {}
    sql = (
        f"SELECT {_SUMMARY_SELECT} FROM tracestore_trace"  # noqa: S608 (constant columns)
        " WHERE (project_id, trace_id) IN"
        " (SELECT * FROM unnest(%s::bigint[], %s::bytea[]))"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [[k[0] for k in keys], [bytes.fromhex(k[1]) for k in keys]])
        rows = [dict(zip(_SUMMARY_COLUMNS, row, strict=True)) for row in cursor]
    summaries = {}
    for row in rows:
        row["cohort"] = json.loads(row["cohort"])
        summary = _summary(row)
        summaries[(summary.project_id, summary.trace_id)] = summary
    return summaries


def cohort_dimensions() -> list[tuple[str, str]]:
    """The configured cohort dimensions as (key, display name), by display name."""
    return list(CohortDimension.objects.order_by("display_name").values_list("key", "display_name"))


def cohort_dimension_keys() -> list[str]:
    """The configured cohort dimensions' keys, sorted: what ingest extracts."""
    return list(CohortDimension.objects.order_by("key").values_list("key", flat=True))


def project_ids_for_user(user_id: int, is_superuser: bool) -> list[int]:
    """The projects a dashboard user may read: all of them for a superuser, else their own."""
    projects = Project.objects.all() if is_superuser else Project.objects.filter(members=user_id)
    return list(projects.order_by("id").values_list("id", flat=True))


def list_projects(project_ids: list[int]) -> list[ProjectRef]:
    rows = Project.objects.filter(id__in=project_ids).order_by("name").values_list("id", "name")
    return [ProjectRef(id=pk, name=name) for pk, name in rows]


def recent_traces(
    project_ids: list[int],
    *,
    limit: int,
    before: tuple[datetime, str, int] | None = None,
    service: str | None = None,
) -> list[TraceSummary]:
    """Traces newest first, ``limit`` of them, strictly after the ``before`` cursor
    (start_time, trace_id hex, project id) in that order when given. The project id tells
    apart one trace id exported to two projects.

    Keyset pagination on ``trace_project_recent_idx``: each project's index is walked from
    the cursor in a LATERAL subquery and the per-project heads are merged, so the cost is
    ``limit`` index entries per project whatever the page depth (no OFFSET, no sort of the
    whole table). ``trace_id``, then the project, break ties between traces that started at
    the same instant.
    """
    if not project_ids or limit <= 0:
        return []
    conditions = ["t.project_id = p.id", "t.start_time IS NOT NULL"]
    params: dict[str, Any] = {"project_ids": list(project_ids), "limit": limit}
    if before is not None:
        before_time, before_trace, before_project = before
        if not _TRACE_ID_HEX.fullmatch(before_trace):
            raise ValueError("the cursor's trace id must be 32 hex characters")
        # The plain `start_time <=` bound lets the index scan start at the cursor; the
        # OR then drops the cursor's own trace and its earlier same-instant neighbours
        # (the same trace id in projects the cursor has passed, too).
        conditions.append(
            "t.start_time <= %(before_time)s AND "
            "(t.start_time < %(before_time)s OR t.trace_id < %(before_trace)s"
            " OR (t.trace_id = %(before_trace)s AND p.id < %(before_project)s))"
        )
        params["before_time"] = before_time
        params["before_trace"] = bytes.fromhex(before_trace)
        params["before_project"] = before_project
    if service:
        conditions.append("t.service_name = %(service)s")
        params["service"] = service
    sql = (
        f"SELECT {_SUMMARY_SELECT} FROM unnest(%(project_ids)s::bigint[]) AS p(id) "  # noqa: S608 (constant columns and conditions; values are parameters)
        "CROSS JOIN LATERAL ("
        f" SELECT {', '.join('t.' + c for c in _SUMMARY_COLUMNS)} FROM tracestore_trace t"
        f" WHERE {' AND '.join(conditions)}"
        " ORDER BY t.start_time DESC, t.trace_id DESC LIMIT %(limit)s"
        ") AS head "
        "ORDER BY start_time DESC, trace_id DESC, project_id DESC LIMIT %(limit)s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = [dict(zip(_SUMMARY_COLUMNS, row, strict=True)) for row in cursor]
    for row in rows:
        # Django has psycopg hand jsonb over as text (JSONField decodes it); raw SQL decodes.
        row["cohort"] = json.loads(row["cohort"])
    return [_summary(row) for row in rows]


def get_trace(project_ids: list[int], trace_id_hex: str) -> TraceDetail | None:
    """One trace with all its spans (ordered by start time), or None when the id is not
    32 hex characters or names no trace in the caller's projects."""
    if not project_ids or not _TRACE_ID_HEX.fullmatch(trace_id_hex or ""):
        return None
    trace_id = bytes.fromhex(trace_id_hex)
    row = (
        Trace.objects.filter(project_id__in=project_ids, trace_id=trace_id)
        .order_by("project_id")
        .values(*(c if c != "models" else "models_used" for c in _SUMMARY_COLUMNS))
        .first()
    )
    if row is None:
        return None
    row["models"] = row.pop("models_used")
    spans = (
        Span.objects.filter(project_id=row["project_id"], trace_id=trace_id)
        .order_by("start_time", "span_id")
        .defer("received_at")
    )
    summary = _summary(row)
    return TraceDetail(summary=summary, spans=[_span_view(span, summary.cohort) for span in spans])


def get_span(project_ids: list[int], trace_id_hex: str, span_id_hex: str) -> SpanView | None:
    """One span, or None when the ids are malformed or name no span in the caller's
    projects (down the primary key: project, trace id, span id)."""
    if not project_ids or not _TRACE_ID_HEX.fullmatch(trace_id_hex or ""):
        return None
    if not _SPAN_ID_HEX.fullmatch(span_id_hex or ""):
        return None
    spans = (
        Span.objects.filter(
            project_id__in=project_ids,
            trace_id=bytes.fromhex(trace_id_hex),
            span_id=bytes.fromhex(span_id_hex),
        )
        .order_by("project_id")
        .defer("received_at")
    )
    found = _with_trace_cohort(spans[:1])
    return _span_view(*found[0]) if found else None


def get_spans(keys: Sequence[tuple[int, str, str, datetime]]) -> list[SpanView]:
    """The spans named by (project id, trace id hex, span id hex, their trace's start
    time), in the order given; keys naming no stored span are left out. One query down the
    primary key; no span starts before its trace, so the earliest trace start skips the
    older day partitions."""
    if not keys:
        return []
    wanted = {(p, t.lower(), s.lower()) for p, t, s, _ in keys}
    rows = Span.objects.filter(
        project_id__in=sorted({p for p, _, _, _ in keys}),
        trace_id__in=[bytes.fromhex(t) for _, t, _, _ in keys],
        span_id__in=[bytes.fromhex(s) for _, _, s, _ in keys],
        start_time__gte=min(at for *_, at in keys),
    ).defer("received_at")
    found = {}
    for span, trace_cohort in _with_trace_cohort(rows):
        view = _span_view(span, trace_cohort)
        key = (span.project_id, view.trace_id, view.span_id)
        if key in wanted:
            found[key] = view
    ordered = [found.get((p, t.lower(), s.lower())) for p, t, s, _ in keys]
    return [view for view in ordered if view is not None]


# Attributes read for costing: a provider-reported cost wins over tokens x price; cached
# prompt tokens (part of the prompt count) may have their own price.
REPORTED_COST_KEYS = ("llm.cost.total", "gen_ai.usage.cost", "llm.usage.total_cost")
CACHED_TOKEN_KEYS = (
    "llm.token_count.prompt_details.cache_read",
    "gen_ai.usage.cache_read_input_tokens",
    "gen_ai.usage.cached_tokens",
)


def _first_attribute_sql(keys: tuple[str, ...]) -> str:
    # Numeric attributes only; a non-numeric value reads as absent.
    parts = [
        f"CASE WHEN jsonb_typeof(s.attributes -> '{k}') = 'number' "
        f"THEN (s.attributes ->> '{k}')::float8 END"
        for k in keys
    ]
    return f"coalesce({', '.join(parts)})"


def changed_trace_keys(
    since: datetime,
    until: datetime,
    *,
    after: tuple[datetime, int, str] | None = None,
    limit: int = 2000,
) -> list[tuple[datetime, int, str]]:
    """Traces whose rollup changed in ``[since, until)``, as (updated_at, project_id, trace
    id hex), ordered by that tuple, strictly after the ``after`` cursor when given.

    The dashboard's metric rollups fold these incrementally. ``updated_at`` is the writing
    transaction's start time, so a caller must re-read a margin before its last watermark
    to catch transactions that committed late. Walks each project's
    ``trace_project_updated_idx`` (no scan of the trace table).
    """
    params: dict[str, Any] = {"since": since, "until": until, "limit": limit}
    cursor_sql = ""
    if after is not None:
        params["after_time"], params["after_project"] = after[0], after[1]
        params["after_trace"] = bytes.fromhex(after[2])
        # The plain bound lets the index scan start at the cursor; the row comparison
        # then drops what the previous page already returned at that instant.
        cursor_sql = (
            " AND t.updated_at >= %(after_time)s AND (t.updated_at, t.project_id, t.trace_id)"
            " > (%(after_time)s, %(after_project)s, %(after_trace)s)"
        )
    sql = (
        "SELECT updated_at, project_id, trace_id FROM tracestore_project p "  # noqa: S608 (constant SQL; values are parameters)
        "CROSS JOIN LATERAL ("
        " SELECT t.updated_at, t.project_id, t.trace_id FROM tracestore_trace t"
        " WHERE t.project_id = p.id AND t.updated_at >= %(since)s AND t.updated_at < %(until)s"
        f"{cursor_sql}"
        # Index order (updated_at only), but WITH TIES so the last instant comes whole
        # and the outer sort by (updated_at, project, trace id) pages through it exactly.
        " ORDER BY t.updated_at FETCH FIRST %(limit)s ROWS WITH TIES"
        ") AS head ORDER BY updated_at, project_id, trace_id LIMIT %(limit)s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [(at, project_id, bytes(tid).hex()) for at, project_id, tid in cursor]


def trace_facts(keys: list[tuple[int, str]]) -> list[TraceFacts]:
    """The facts the metrics need of each (project_id, trace id hex) trace: one query for
    the rollups and one for the spans that carry a model, a micro model or tokens. Traces
    with no start time (no span stored) are left out."""
    if not keys:
        return []
    project_ids = [project_id for project_id, _ in keys]
    trace_ids = [bytes.fromhex(trace_hex) for _, trace_hex in keys]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT t.project_id, t.trace_id, t.updated_at, t.start_time, t.end_time,"
            " t.duration_ns, t.is_fallback, t.error_count, t.prompt_tokens,"
            " t.completion_tokens, t.cohort"
            " FROM unnest(%s::bigint[], %s::bytea[]) AS k(project_id, trace_id)"
            " JOIN tracestore_trace t USING (project_id, trace_id)"
            " WHERE t.start_time IS NOT NULL",
            [project_ids, trace_ids],
        )
        traces = cursor.fetchall()
        if not traces:
            return []
        low = min(row[3] for row in traces)
        high = max(row[4] for row in traces)
        # The start-time bounds let PostgreSQL skip the day partitions outside the chunk.
        cursor.execute(
            "SELECT s.project_id, s.trace_id, s.span_id, s.start_time, s.duration_ns,"  # noqa: S608 (constant SQL; values are parameters)
            " s.micro_model, s.model, s.route, s.label, s.expected_label, s.confidence,"
            " s.is_fallback, s.is_retry, s.cache_hit, s.status_code,"
            " coalesce(s.prompt_tokens, 0), coalesce(s.completion_tokens, 0),"
            f" {_first_attribute_sql(CACHED_TOKEN_KEYS)},"
            f" {_first_attribute_sql(REPORTED_COST_KEYS)},"
            " s.is_mirrored, s.mirror_of"
            " FROM unnest(%s::bigint[], %s::bytea[]) AS k(project_id, trace_id)"
            " JOIN tracestore_span s USING (project_id, trace_id)"
            " WHERE s.start_time >= %s AND s.start_time <= %s"
            " AND (s.micro_model IS NOT NULL OR s.model IS NOT NULL"
            "  OR s.prompt_tokens IS NOT NULL OR s.completion_tokens IS NOT NULL"
            "  OR (s.is_fallback AND s.label IS NOT NULL))"
            " ORDER BY s.project_id, s.trace_id, s.start_time, s.span_id",
            [project_ids, trace_ids, low, high],
        )
        spans = cursor.fetchall()
    decisions: dict[tuple[int, bytes], list[MicroModelDecision]] = {}
    usage: dict[tuple[int, bytes], list[SpanUsage]] = {}
    answers: dict[tuple[int, bytes], list[FallbackAnswer]] = {}
    for row in spans:
        key = (row[0], bytes(row[1]))
        if row[5] is None and row[11] and row[8]:
            answers.setdefault(key, []).append(
                FallbackAnswer(span_id=bytes(row[2]).hex(), start_time=row[3], label=row[8])
            )
        if row[5] is not None:
            decisions.setdefault(key, []).append(
                MicroModelDecision(
                    span_id=bytes(row[2]).hex(),
                    start_time=row[3],
                    micro_model=row[5],
                    model=row[6],
                    route=row[7],
                    label=row[8],
                    expected_label=row[9],
                    confidence=row[10],
                    is_fallback=row[11],
                    is_retry=row[12],
                    cache_hit=row[13],
                    is_error=row[14] == 2,
                    duration_ms=row[4] / 1e6,
                    is_mirrored=row[19],
                    mirror_of=row[20],
                )
            )
        if row[6] is not None and (row[15] or row[16] or row[18] is not None):
            usage.setdefault(key, []).append(
                SpanUsage(
                    model=row[6],
                    start_time=row[3],
                    prompt_tokens=row[15],
                    completion_tokens=row[16],
                    cached_tokens=int(row[17] or 0),
                    reported_cost=row[18],
                )
            )
    out = []
    for row in traces:
        key = (row[0], bytes(row[1]))
        cohort = row[10]
        out.append(
            TraceFacts(
                project_id=row[0],
                trace_id=key[1].hex(),
                updated_at=row[2],
                start_time=row[3],
                duration_ms=(row[5] or 0) / 1e6,
                is_fallback=row[6],
                error_count=row[7],
                prompt_tokens=row[8],
                completion_tokens=row[9],
                cohort=json.loads(cohort) if isinstance(cohort, str) else dict(cohort),
                decisions=decisions.get(key, []),
                usage=usage.get(key, []),
                fallback_answers=tuple(answers.get(key, ())),
            )
        )
    return out


def _hex(value: bytes | memoryview | None) -> str | None:
    return None if value is None else bytes(value).hex()


def _summary(row: dict[str, Any]) -> TraceSummary:
    duration_ns = row["duration_ns"]
    return TraceSummary(
        project_id=row["project_id"],
        trace_id=bytes(row["trace_id"]).hex(),
        start_time=row["start_time"],
        end_time=row["end_time"],
        duration_ms=None if duration_ns is None else duration_ns / 1e6,
        root_span_id=_hex(row["root_span_id"]),
        root_name=row["root_name"],
        service_name=row["service_name"],
        span_count=row["span_count"],
        error_count=row["error_count"],
        models=list(row["models"]),
        micro_models=list(row["micro_models"]),
        routes=list(row["routes"]),
        is_fallback=row["is_fallback"],
        prompt_tokens=row["prompt_tokens"],
        completion_tokens=row["completion_tokens"],
        cohort=dict(row["cohort"]),
    )


def _with_trace_cohort(spans: QuerySet[Span]) -> list[tuple[Span, dict[str, str] | None]]:
    """``spans``, each with its trace's cohort (down the trace's primary key, one lookup per
    span, in the same query)."""
    trace = Trace.objects.filter(project_id=OuterRef("project_id"), trace_id=OuterRef("trace_id"))
    annotated = spans.annotate(
        trace_cohort=Subquery(trace.values("cohort")[:1], output_field=JSONField())
    )
    return [(span, span.trace_cohort) for span in annotated]


# SpanView's fields read off the stored span as they are, by the field table's column
# names; _span_view converts the others. Every SpanView field is one or the other.
_VIEW_CONVERTED = ("trace_id", "span_id", "parent_span_id", "duration_ms", "cohort", "project_id")
_VIEW_FIELDS = {f.name for f in dataclasses.fields(SpanView)}
_VIEW_COPIED = tuple(
    f.column
    for f in span_fields.SPAN_FIELDS
    if f.column in _VIEW_FIELDS and f.column not in _VIEW_CONVERTED
)
if {*_VIEW_COPIED, *_VIEW_CONVERTED} != _VIEW_FIELDS:
    raise span_fields.SpanFieldMismatch(
        "SpanView: no span column for "
        + ", ".join(sorted(_VIEW_FIELDS - {*_VIEW_COPIED, *_VIEW_CONVERTED}))
    )


def _span_view(span: Span, trace_cohort: dict[str, str] | None) -> SpanView:
    """A span as the API shows it, with its trace's cohort (the one metrics, traces and
    evaluations group by): the span's own values are in its attributes and resource."""
    return SpanView(
        trace_id=bytes(span.trace_id).hex(),
        span_id=bytes(span.span_id).hex(),
        parent_span_id=_hex(span.parent_span_id),
        duration_ms=span.duration_ns / 1e6,
        # The trace row is written with its spans; should it be missing, the span's own.
        cohort=dict(trace_cohort) if trace_cohort is not None else span.cohort,
        project_id=span.project_id,
        **{column: getattr(span, column) for column in _VIEW_COPIED},
    )


# -- evaluators' reads -------------------------------------------------------------------

_MODEL_SPAN_FIELDS = (
    "project_id",
    "trace_id",
    "span_id",
    "parent_span_id",
    "name",
    "start_time",
    "status_code",
    "span_kind",
    "model",
    "micro_model",
    "input_text",
    "output_text",
    "route",
    "label",
    "confidence",
    "expected_label",
    "is_fallback",
    "attributes",
    "is_mirrored",
)


def _model_span(row: dict[str, Any]) -> contracts.ModelSpan:
    return contracts.ModelSpan(
        **{
            **row,
            "trace_id": bytes(row["trace_id"]).hex(),
            "span_id": bytes(row["span_id"]).hex(),
            "parent_span_id": _hex(row["parent_span_id"]),
        }
    )


def _traces_with_model_spans(
    traces: Sequence[Mapping[str, Any]], order_field: str
) -> list[contracts.TraceModelSpans]:
    by_trace: dict[tuple[int, bytes], list[contracts.ModelSpan]] = {}
    retrieval: set[tuple[int, bytes]] = set()
    if traces:
        keys = Q()
        for t in traces:
            keys |= Q(project_id=t["project_id"], trace_id=bytes(t["trace_id"]))
        # The traces' time span bounds the spans' start times: only those day partitions
        # are read.
        starts = [t["start_time"] for t in traces if t["start_time"] is not None]
        ends = [t["end_time"] for t in traces if t["end_time"] is not None]
        if starts and ends and len(starts) == len(traces):
            keys &= Q(start_time__gte=min(starts), start_time__lte=max(ends))
        spans = (
            Span.objects.filter(keys)
            .filter(Q(model__isnull=False) | Q(micro_model__isnull=False))
            .order_by("project_id", "trace_id", "start_time", "span_id")
            .values(*_MODEL_SPAN_FIELDS)
        )
        for row in spans:
            key = (row["project_id"], bytes(row["trace_id"]))
            by_trace.setdefault(key, []).append(_model_span(row))
        retrievers = (
            Span.objects.filter(keys)
            .filter(span_kind="RETRIEVER")
            .values_list("project_id", "trace_id")
            .distinct()
        )
        retrieval = {(project_id, bytes(trace_id)) for project_id, trace_id in retrievers}
    return [
        contracts.TraceModelSpans(
            project_id=t["project_id"],
            trace_id=bytes(t["trace_id"]).hex(),
            position=(t[order_field], t["project_id"], bytes(t["trace_id"]).hex()),
            cohort=dict(t["cohort"]),
            spans=by_trace.get((t["project_id"], bytes(t["trace_id"])), []),
            has_retrieval=(t["project_id"], bytes(t["trace_id"])) in retrieval,
        )
        for t in traces
    ]


def quiet_traces_with_models(
    *, after: tuple[datetime, int, str] | None, quiet_before: datetime, limit: int
) -> list[contracts.TraceModelSpans]:
    """Traces of every project that used a model and received no span since
    ``quiet_before``, in (updated_at, project, trace id) order strictly after ``after``.

    A trace that receives a span later moves forward in this order and is read again, so a
    reader that resumes from the last position sees every span once its trace is quiet.
    """
    traces = Trace.objects.filter(updated_at__lte=quiet_before).exclude(models_used=[])
    if after is not None:
        at, project_id, trace_hex = after
        trace_id = bytes.fromhex(trace_hex)
        traces = traces.filter(
            Q(updated_at__gt=at)
            | Q(updated_at=at, project_id__gt=project_id)
            | Q(updated_at=at, project_id=project_id, trace_id__gt=trace_id)
        )
    rows = list(
        traces.order_by("updated_at", "project_id", "trace_id").values(
            "project_id", "trace_id", "updated_at", "start_time", "end_time", "cohort"
        )[:limit]
    )
    return _traces_with_model_spans(rows, "updated_at")


def traces_with_models_started_between(
    *,
    start: datetime,
    end: datetime,
    after: tuple[datetime, int, str] | None,
    limit: int,
    project_ids: list[int] | None = None,
) -> list[contracts.TraceModelSpans]:
    """Traces that used a model and started in [start, end), in (start_time, project,
    trace id) order strictly after ``after`` (backfills)."""
    traces = Trace.objects.filter(start_time__gte=start, start_time__lt=end).exclude(models_used=[])
    if project_ids is not None:
        traces = traces.filter(project_id__in=project_ids)
    if after is not None:
        at, project_id, trace_hex = after
        trace_id = bytes.fromhex(trace_hex)
        traces = traces.filter(
            Q(start_time__gt=at)
            | Q(start_time=at, project_id__gt=project_id)
            | Q(start_time=at, project_id=project_id, trace_id__gt=trace_id)
        )
    rows = list(
        traces.order_by("start_time", "project_id", "trace_id").values(
            "project_id", "trace_id", "start_time", "end_time", "cohort"
        )[:limit]
    )
    return _traces_with_model_spans(rows, "start_time")


def count_traces_with_models_started_between(
    *, start: datetime, end: datetime, project_ids: list[int] | None = None
) -> int:
    traces = Trace.objects.filter(start_time__gte=start, start_time__lt=end).exclude(models_used=[])
    if project_ids is not None:
        traces = traces.filter(project_id__in=project_ids)
    return traces.count()


_DOCUMENT_KEY = re.compile(r"retrieval\.documents\.(\d+)\.document\.content")


def trace_context(project_id: int, trace_id_hex: str) -> contracts.TraceContext | None:
    """A trace's root input/output, its retrieved documents (in span then document order)
    and its model spans; None when the trace is unknown."""
    if not _TRACE_ID_HEX.fullmatch(trace_id_hex or ""):
        return None
    trace_id = bytes.fromhex(trace_id_hex)
    trace = Trace.objects.filter(project_id=project_id, trace_id=trace_id).values(
        "root_span_id", "cohort"
    )
    summary = trace.first()
    if summary is None:
        return None
    rows = (
        Span.objects.filter(project_id=project_id, trace_id=trace_id)
        .order_by("start_time", "span_id")
        .values(*_MODEL_SPAN_FIELDS)
    )
    root_input = root_output = None
    documents: list[str] = []
    spans: list[contracts.ModelSpan] = []
    for row in rows:
        if row["parent_span_id"] is None and root_input is None and root_output is None:
            root_input, root_output = row["input_text"], row["output_text"]
        if (row["span_kind"] or "").upper() == "RETRIEVER":
            numbered = []
            for key, value in row["attributes"].items():
                match = _DOCUMENT_KEY.fullmatch(key)
                if match and isinstance(value, str) and value.strip():
                    numbered.append((int(match[1]), value))
            documents.extend(text for _, text in sorted(numbered))
        if row["model"] is not None or row["micro_model"] is not None:
            spans.append(_model_span(row))
    return contracts.TraceContext(
        project_id=project_id,
        trace_id=trace_id_hex.lower(),
        root_input=root_input,
        root_output=root_output,
        documents=documents,
        cohort=dict(summary["cohort"]),
        spans=spans,
    )


def traces_with_model_matching(
    model_regex: str,
    model_name: str,
    ended_since: datetime,
    *,
    after: tuple[int, str] | None = None,
    limit: int = 2000,
) -> list[tuple[int, str]]:
    """(project_id, trace id hex) of the traces that ended at or after ``ended_since`` and
    used a model named ``model_name`` or matching the PostgreSQL regular expression
    ``model_regex``, in primary key order, strictly after the ``after`` cursor.

    Read when a model price changes (rarely): one pass over the trace table in key order,
    page by page, rather than an index that every ingested batch would pay for.
    """
    params: list[Any] = [ended_since, model_name, model_regex]
    cursor_sql = ""
    if after is not None:
        cursor_sql = " AND (t.project_id, t.trace_id) > (%s, %s)"
        params += [after[0], bytes.fromhex(after[1])]
    sql = (
        "SELECT t.project_id, t.trace_id FROM tracestore_trace t"  # noqa: S608 (constant SQL; values are parameters)
        " WHERE t.end_time >= %s"
        " AND EXISTS (SELECT 1 FROM unnest(t.models) AS m WHERE m = %s OR m ~ %s)"
        f"{cursor_sql} ORDER BY t.project_id, t.trace_id LIMIT %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, limit])
        return [(project_id, bytes(tid).hex()) for project_id, tid in cursor.fetchall()]
