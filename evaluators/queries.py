"""evaluators' reads, for the API and pages: contracts dataclasses, scoped to the caller's
projects, never model objects."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from django.db import connection
from django.db.models import Count, Expression, F, FloatField, Q, QuerySet, Sum, TextField, Value
from django.db.models.fields.json import KT

from tracestore.cursors import decode_cursor, encode_cursor

from .contracts import (
    EvaluationCount,
    EvaluationHourCount,
    EvaluationPage,
    EvaluationView,
    ExpectedLabel,
    FeedbackNote,
    JudgeUse,
    resolve_expected_label,
)
from .models import EvaluationJob, EvaluationResult, Feedback, JobStatus

_HEX = re.compile(r"[0-9a-fA-F]+")
_CURSOR_KIND = "evaluations"
_CURSOR_SHAPE = (datetime, int)
# A verdict weighs 1 / its sampling probability in the whole traffic.
_WEIGHT = Value(1.0, output_field=FloatField()) / F("sampling_probability")
_WEIGHT_SQ = _WEIGHT / F("sampling_probability")


def _ids(value: str, length: int) -> bytes | None:
    if len(value) != length * 2 or not _HEX.fullmatch(value):
        return None
    return bytes.fromhex(value)


def _filtered(
    project_ids: Sequence[int],
    *,
    trace_id: str | None = None,
    span_ids: Sequence[str] | None = None,
    micro_model: str | None = None,
    evaluator: str | None = None,
    passed: bool | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> QuerySet[EvaluationResult]:
    rows = EvaluationResult.objects.filter(project_id__in=list(project_ids))
    if trace_id is not None:
        trace = _ids(trace_id, 16)
        if trace is None:
            return rows.none()
        rows = rows.filter(trace_id=trace)
    if span_ids is not None:
        spans = [s for s in (_ids(x, 8) for x in span_ids) if s is not None]
        rows = rows.filter(span_id__in=spans)
    if micro_model is not None:
        rows = rows.filter(micro_model__name=micro_model)
    if evaluator is not None:
        rows = rows.filter(evaluator=evaluator)
    if passed is not None:
        rows = rows.filter(passed=passed)
    if start is not None:
        rows = rows.filter(span_start_time__gte=start)
    if end is not None:
        rows = rows.filter(span_start_time__lt=end)
    return rows


def _view(row: EvaluationResult) -> EvaluationView:
    return EvaluationView(
        id=row.id,
        project_id=row.project_id,
        trace_id=bytes(row.trace_id).hex(),
        span_id=bytes(row.span_id).hex(),
        span_start_time=row.span_start_time,
        micro_model=row.micro_model.name,
        evaluator=row.evaluator,
        evaluator_version=row.evaluator_version,
        score=row.score,
        passed=row.passed,
        threshold=row.threshold,
        reason=row.reason,
        judge=row.judge,
        latency_ms=row.latency_ms,
        sampling_probability=row.sampling_probability,
        predicted_label=row.predicted_label,
        expected_label=row.expected_label,
        source=row.source,
        created_at=row.created_at,
        updated_at=row.updated_at,
        cohort=dict(row.cohort or {}),
        judge_version=row.judge_version,
        judge_fallback=row.judge_fallback,
    )


def evaluation_views(
    project_ids: Sequence[int],
    *,
    trace_id: str | None = None,
    span_ids: Sequence[str] | None = None,
    evaluator: str | None = None,
) -> list[EvaluationView]:
    rows = _filtered(project_ids, trace_id=trace_id, span_ids=span_ids, evaluator=evaluator)
    return [_view(r) for r in rows.select_related("micro_model").order_by("span_start_time", "id")]


def evaluations_by_span(
    project_ids: Sequence[int], trace_id: str
) -> dict[str, list[EvaluationView]]:
    """A trace's evaluations grouped by span id hex (for the trace detail)."""
    grouped: dict[str, list[EvaluationView]] = {}
    for view in evaluation_views(project_ids, trace_id=trace_id):
        grouped.setdefault(view.span_id, []).append(view)
    return grouped


def evaluations_for_spans(
    project_ids: Sequence[int], spans: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], list[EvaluationView]]:
    """Evaluations of spans in several traces, grouped by (trace id hex, span id hex):
    one query down the (project, trace id) index."""
    traces = [t for t in (_ids(trace, 16) for trace, _ in spans) if t is not None]
    span_ids = [s for s in (_ids(span, 8) for _, span in spans) if s is not None]
    if not traces or not span_ids:
        return {}
    wanted = {(trace.lower(), span.lower()) for trace, span in spans}
    rows = EvaluationResult.objects.filter(
        project_id__in=list(project_ids), trace_id__in=traces, span_id__in=span_ids
    )
    grouped: dict[tuple[str, str], list[EvaluationView]] = {}
    for row in rows.select_related("micro_model").order_by("evaluator", "id"):
        view = _view(row)
        if (view.trace_id, view.span_id) in wanted:
            grouped.setdefault((view.trace_id, view.span_id), []).append(view)
    return grouped


def get_evaluation(project_ids: Sequence[int], evaluation_id: int) -> EvaluationView | None:
    """One evaluation result, or None when it is not in the caller's projects."""
    row = (
        EvaluationResult.objects.filter(project_id__in=list(project_ids), id=evaluation_id)
        .select_related("micro_model")
        .first()
    )
    return None if row is None else _view(row)


def _encode(view: EvaluationView) -> str:
    return encode_cursor(_CURSOR_KIND, (view.span_start_time, view.id))


def _decode(cursor: str) -> tuple[datetime, int]:
    # The shape has checked each value's type.
    return cast(tuple[datetime, int], tuple(decode_cursor(cursor, _CURSOR_KIND, _CURSOR_SHAPE)))


def list_evaluations(
    project_ids: Sequence[int],
    *,
    limit: int = 50,
    cursor: str | None = None,
    trace_id: str | None = None,
    micro_model: str | None = None,
    evaluator: str | None = None,
    passed: bool | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> EvaluationPage:
    """Evaluations newest span first, keyset-paginated on (span start, id)."""
    rows = _filtered(
        project_ids,
        trace_id=trace_id,
        micro_model=micro_model,
        evaluator=evaluator,
        passed=passed,
        start=start,
        end=end,
    )
    if cursor:
        at, last_id = _decode(cursor)
        rows = rows.filter(Q(span_start_time__lt=at) | Q(span_start_time=at, id__lt=last_id))
    page = list(rows.select_related("micro_model").order_by("-span_start_time", "-id")[: limit + 1])
    views = [_view(r) for r in page[:limit]]
    next_cursor = _encode(views[-1]) if len(page) > limit else None
    return EvaluationPage(results=views, next_cursor=next_cursor)


def evaluation_counts(
    project_ids: Sequence[int],
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    micro_model: str | None = None,
    evaluator: str | None = None,
    group_by: str | None = None,
    cohort: tuple[str, str] | None = None,
    per_micro_model: bool = False,
) -> list[EvaluationCount]:
    """Failed and evaluated counts per evaluator, and per ``group_by`` ("micro_model" or a
    cohort key; results without that key are left out), counted in the database. Not
    applicable verdicts are neither. ``cohort`` keeps results with that (key, value).
    ``per_micro_model`` counts per micro model too (each count names it), so that one
    query answers a cohort key for every micro model."""
    rows = _filtered(
        project_ids, micro_model=micro_model, evaluator=evaluator, start=start, end=end
    ).filter(passed__isnull=False)
    rows, group = _grouped(rows, group_by, cohort)
    by_micro_model: dict[str, F] = {"mm": F("micro_model__name")} if per_micro_model else {}
    counted = (
        rows.order_by()
        .annotate(group=group, **by_micro_model)
        .values("evaluator", "group", *by_micro_model)
        .annotate(
            evaluated=Count("id"),
            failed=Count("id", filter=Q(passed=False)),
            weighted_evaluated=Sum(_WEIGHT),
            weighted_failed=Sum(_WEIGHT, filter=Q(passed=False), default=0.0),
            weighted_sq_evaluated=Sum(_WEIGHT_SQ),
            weighted_sq_failed=Sum(_WEIGHT_SQ, filter=Q(passed=False), default=0.0),
        )
        .order_by("evaluator", "group")
    )
    return [
        EvaluationCount(
            evaluator=row["evaluator"],
            group=None if row["group"] is None else str(row["group"]),
            failed=row["failed"],
            evaluated=row["evaluated"],
            weighted_failed=float(row["weighted_failed"]),
            weighted_evaluated=float(row["weighted_evaluated"]),
            weighted_sq_failed=float(row["weighted_sq_failed"]),
            weighted_sq_evaluated=float(row["weighted_sq_evaluated"]),
            micro_model=row["mm"] if per_micro_model else None,
        )
        for row in counted
    ]


def pending_counts(
    project_ids: Sequence[int],
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    micro_model: str | None = None,
    group_by: str | None = None,
    cohort: tuple[str, str] | None = None,
) -> dict[tuple[str, str | None], int]:
    """(evaluator, group) -> jobs scheduled for spans started in ``[start, end)`` that have
    not run yet (pending or running): shown beside each fail rate, which counts only what
    has run. Grouped like ``evaluation_counts``; read from the open jobs' partial index."""
    rows = EvaluationJob.objects.filter(
        project_id__in=list(project_ids), status__in=[JobStatus.PENDING, JobStatus.RUNNING]
    )
    if start is not None:
        rows = rows.filter(span_start_time__gte=start)
    if end is not None:
        rows = rows.filter(span_start_time__lt=end)
    if micro_model is not None:
        rows = rows.filter(micro_model__name=micro_model)
    rows, group = _grouped(rows, group_by, cohort)
    counted = (
        rows.order_by().annotate(group=group).values("evaluator", "group").annotate(n=Count("id"))
    )
    return {
        (row["evaluator"], None if row["group"] is None else str(row["group"])): row["n"]
        for row in counted
    }


# -- expected labels (span attribute or feedback) ---------------------------------------------


def feedback_labels(keys: Sequence[tuple[int, str]]) -> dict[tuple[int, str], dict[str, str]]:
    """Expected labels posted as feedback for the traces ``keys`` (project id, trace id
    hex): per trace, span id hex -> label, "" for feedback on the whole trace. Feed them
    with each span's attribute to ``contracts.resolve_expected_label``."""
    by_project: dict[int, list[bytes]] = {}
    for project_id, trace_hex in keys:
        trace = _ids(trace_hex, 16)
        if trace is not None:
            by_project.setdefault(project_id, []).append(trace)
    found: dict[tuple[int, str], dict[str, str]] = {}
    for project_id, traces in by_project.items():
        rows = Feedback.objects.filter(
            project_id=project_id, trace_id__in=traces, expected_label__isnull=False
        ).exclude(expected_label="")
        for trace_id, span_id, label in rows.values_list("trace_id", "span_id", "expected_label"):
            if label:
                found.setdefault((project_id, bytes(trace_id).hex()), {})[bytes(span_id).hex()] = (
                    label
                )
    return found


def expected_labels(
    project_id: int, trace_id: str, spans: Sequence[tuple[str, str | None]]
) -> dict[str, ExpectedLabel]:
    """Expected label and its source of each (span id hex, attribute expected label) of
    one trace, for the trace page and API; spans with neither are left out."""
    found = expected_labels_of_spans([(project_id, trace_id, s, a) for s, a in spans])
    return {span_id: label for (_, _, span_id), label in found.items()}


def expected_labels_of_spans(
    spans: Sequence[tuple[int, str, str, str | None]],
) -> dict[tuple[int, str, str], ExpectedLabel]:
    """Expected label and its source of each (project id, trace id hex, span id hex,
    attribute expected label), keyed by the first three; spans with neither left out."""
    posted = feedback_labels([(p, t.lower()) for p, t, _, _ in spans])
    found = {}
    for project_id, trace_id, span_id, attribute in spans:
        trace_posted = posted.get((project_id, trace_id.lower()), {})
        expected = resolve_expected_label(attribute, trace_posted, span_id)
        if expected is not None:
            found[(project_id, trace_id, span_id)] = expected
    return found


def feedback_changed_traces(since: datetime, until: datetime) -> list[tuple[int, str]]:
    """(project id, trace id hex) of traces whose feedback was posted or updated in
    ``[since, until)``: their decisions' expected labels may have changed."""
    rows = (
        Feedback.objects.filter(updated_at__gte=since, updated_at__lt=until)
        .values_list("project_id", "trace_id")
        .distinct()
        .order_by("project_id", "trace_id")
    )
    return [(project_id, bytes(trace_id).hex()) for project_id, trace_id in rows]


# -- for rollups kept by other apps ----------------------------------------------------------

_HOUR = "date_trunc('hour', span_start_time AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"


def judge_uses(since: datetime) -> list[JudgeUse]:
    """Which judge, at which version, decided the results written since ``since``, per
    evaluator, fallbacks apart (``microlens status``)."""
    rows = (
        EvaluationResult.objects.filter(updated_at__gte=since)
        .values("evaluator", "judge", "judge_version", "judge_fallback")
        .annotate(results=Count("id"))
        .order_by("evaluator", "judge", "judge_version", "judge_fallback")
    )
    return [
        JudgeUse(
            evaluator=row["evaluator"],
            judge=row["judge"],
            judge_version=row["judge_version"],
            fallback=row["judge_fallback"],
            results=row["results"],
        )
        for row in rows
    ]


def changed_evaluation_hours(since: datetime) -> set[tuple[int, datetime]]:
    """(project id, UTC hour of the span) of every result written or updated since
    ``since`` (a new verdict, a re-run, late feedback), and of every hour whose results
    were deleted or moved to a renamed micro model since then: the hours whose counts
    changed."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT project_id, {_HOUR} FROM evaluators_evaluationresult"  # noqa: S608 (constant SQL; values are parameters)
            " WHERE updated_at >= %s"
            " UNION SELECT project_id, hour FROM evaluators_evaluationhourchange"
            " WHERE changed_at >= %s",
            [since, since],
        )
        return set(cursor.fetchall())


def evaluation_hour_counts(
    project_id: int, hours: Sequence[datetime], cohort_keys: Sequence[str]
) -> list[EvaluationHourCount]:
    """Applicable verdicts of ``hours`` (UTC hour starts) per hour x micro model x evaluator,
    for all cohorts (dim_key '') and per value of each of ``cohort_keys`` the result's
    cohort has. Counted in the database, down the (project, span start) index."""
    sql = (
        "SELECT h.hour, m.name, r.evaluator, d.key, d.value, count(*),"
        " count(*) FILTER (WHERE NOT r.passed), sum(1.0 / r.sampling_probability),"
        " coalesce(sum(1.0 / r.sampling_probability) FILTER (WHERE NOT r.passed), 0),"
        " sum(1.0 / (r.sampling_probability * r.sampling_probability)),"
        " coalesce(sum(1.0 / (r.sampling_probability * r.sampling_probability))"
        " FILTER (WHERE NOT r.passed), 0)"
        " FROM unnest(%s::timestamptz[]) AS h(hour)"
        " JOIN evaluators_evaluationresult r ON r.project_id = %s"
        " AND r.span_start_time >= h.hour AND r.span_start_time < h.hour + interval '1 hour'"
        " JOIN evaluators_micromodel m ON m.id = r.micro_model_id"
        " CROSS JOIN LATERAL (SELECT '' AS key, '' AS value UNION ALL"
        " SELECT e.key, e.value FROM jsonb_each_text(r.cohort) AS e"
        " WHERE e.key = ANY(%s::text[]) AND e.value IS NOT NULL) AS d"
        " WHERE r.passed IS NOT NULL"
        " GROUP BY 1, 2, 3, 4, 5"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [list(hours), project_id, list(cohort_keys)])
        return [
            EvaluationHourCount(
                hour=row[0],
                micro_model=row[1],
                evaluator=row[2],
                dim_key=row[3],
                dim_value=row[4],
                evaluated=row[5],
                failed=row[6],
                weighted_evaluated=float(row[7]),
                weighted_failed=float(row[8]),
                weighted_sq_evaluated=float(row[9]),
                weighted_sq_failed=float(row[10]),
            )
            for row in cursor.fetchall()
        ]


def _grouped(
    rows: QuerySet, group_by: str | None, cohort: tuple[str, str] | None
) -> tuple[QuerySet, Expression | F]:
    """Results or jobs narrowed to ``cohort`` and the expression they are grouped by: the
    micro model's name, a cohort key's value (rows without that key left out) or nothing."""
    if cohort is not None:
        rows = rows.filter(cohort__contains={cohort[0]: cohort[1]})
    if group_by == "micro_model":
        return rows, F("micro_model__name")
    if group_by:
        return rows.filter(cohort__has_key=group_by), KT(f"cohort__{group_by}")
    return rows, Value(None, output_field=TextField())


def trace_feedback(project_id: int, trace_id: str) -> dict[str, FeedbackNote]:
    """Span id hex ('' for the whole trace) -> the feedback given for it, for one trace."""
    trace = _ids(trace_id, 16)
    if trace is None:
        return {}
    rows = Feedback.objects.filter(project_id=project_id, trace_id=trace).values_list(
        "span_id", "expected_label", "thumbs_up", "comment", "author", "updated_at"
    )
    return {
        bytes(span).hex(): FeedbackNote(bytes(span).hex(), label, thumbs, comment, author, at)
        for span, label, thumbs, comment, author, at in rows
    }


def failed_evaluation_condition(
    project_column: str,
    trace_column: str,
    *,
    evaluator: str | None,
    micro_model: str | None,
    cohort: Mapping[str, str],
    count: bool = False,
) -> tuple[str, list[Any]]:
    """SQL (and its parameters) true when a span of the outer row's trace has a failed
    verdict of ``evaluator`` (None: any evaluator), of ``micro_model`` when given, whose
    cohort holds every value of ``cohort``: the same verdicts the eval fail rate counts as
    failed. ``project_column`` and ``trace_column`` name the outer row's columns (constant
    SQL of the caller, never input); each row costs a lookup down the (project, trace)
    index of the results. With ``count``, the SQL is instead the number of those verdicts."""
    conditions = [
        f"r.project_id = {project_column}",
        f"r.trace_id = {trace_column}",
        "r.passed = false",
    ]
    params: list[Any] = []
    if evaluator is not None:
        conditions.append("r.evaluator = %s")
        params.append(evaluator)
    if micro_model is not None:
        conditions.append(
            "r.micro_model_id IN (SELECT m.id FROM evaluators_micromodel m WHERE m.name = %s)"
        )
        params.append(micro_model)
    if cohort:
        conditions.append("r.cohort @> %s::jsonb")
        params.append(json.dumps(dict(cohort)))
    sql = (
        f"{'(SELECT count(*)' if count else 'EXISTS (SELECT 1'}"  # noqa: S608 (constant SQL; values are parameters)
        f" FROM evaluators_evaluationresult r WHERE {' AND '.join(conditions)})"
    )
    return sql, params
