"""Dashboard pages: parse the request, call one query, render one template."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import plotly
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import BadRequest
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    JsonResponse,
    QueryDict,
    StreamingHttpResponse,
)
from django.shortcuts import render
from django.urls import Resolver404
from django.utils import timezone
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET
from django.views.defaults import page_not_found

from evaluators.queries import (
    evaluations_by_span,
    expected_labels,
    trace_feedback,
)
from tracestore.cursors import InvalidCursor
from tracestore.queries import get_trace

from . import metrics, pages, trace_search
from .access import visible_project_ids
from .charts import waterfall_figure
from .chat import span_chat
from .metric_filters import (
    COHORT_PREFIX,
    DEFAULT_RANGE,
    RANGES,
    MetricQuery,
    ProjectNotFound,
    parse_metric_query,
)
from .metrics.pricing import cost_breakdown
from .pagination import trace_page
from .span_tree import span_tree

PAGE_SIZE = 50
LOGIN_URL = "dashboard:login"
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


# Most traces one export holds (narrow the range or the filters for the rest).
EXPORT_LIMIT = 10_000


def _metric_query(request: HttpRequest) -> MetricQuery:
    try:
        return parse_metric_query(request.GET, visible_project_ids(request.user))
    except ProjectNotFound as exc:
        raise Http404(str(exc)) from exc
    except metrics.InvalidQuery as exc:
        raise BadRequest(str(exc)) from exc


@contextmanager
def _invalid_query_is_400() -> Iterator[None]:
    """A combination the metrics cannot answer (e.g. a route filter on eval fail rates)."""
    try:
        yield
    except metrics.InvalidQuery as exc:
        raise BadRequest(str(exc)) from exc


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """400 page (the project's handler400): says what was wrong with the query."""
    message = str(exception) if isinstance(exception, BadRequest) else "Bad request."
    return render(request, "dashboard/bad_request.html", {"message": message}, status=400)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """404 (the project's handler404): JSON under /api/, like every other API answer."""
    if request.path.startswith("/api/"):
        message = "No such API endpoint." if isinstance(exception, Resolver404) else None
        detail = message or (str(exception) if exception.args else "Not found.")
        return JsonResponse({"error": {"code": "not_found", "message": detail}}, status=404)
    return page_not_found(request, exception)


def _render_page(
    request: HttpRequest, template: str, page: pages.Page, extra: dict[str, Any] | None = None
) -> HttpResponse:
    return render(
        request,
        template,
        {
            **page.context,
            **(extra or {}),
            "figures": page.figures,
            "query_string": request.GET.urlencode(),
            **_otlp_endpoints(),
        },
    )


def _otlp_endpoints() -> dict[str, str]:
    """Where apps send traces, for the empty states: the stack's configured receivers."""
    return {
        "otlp_grpc_endpoint": settings.MICROLENS_OTLP_GRPC_ENDPOINT,
        "otlp_http_endpoint": settings.MICROLENS_OTLP_HTTP_ENDPOINT,
    }


def _traces_query(request: HttpRequest, query: MetricQuery, *, cohort: bool = True) -> str:
    """The Traces page's parameters for a metric page's filters and window: links from a
    number to the traces it counts add the number's own filters to these. Without
    ``cohort`` for a page that splits by cohort instead of filtering by one."""
    f = query.filters if cohort else query.filters.with_(cohort=None)
    params = QueryDict(mutable=True)
    params.update(trace_search.window_params(f.start, f.end, query.range_name))
    if request.GET.get("project"):
        params["project"] = request.GET["project"]
    for name in ("route", "model"):
        if getattr(f, name) is not None:
            params[name] = getattr(f, name)
    if f.cohort is not None:
        params[COHORT_PREFIX + f.cohort[0]] = f.cohort[1]
    return params.urlencode()


@require_GET
@login_required(login_url=LOGIN_URL)
def overview(request: HttpRequest) -> HttpResponse:
    with metrics.partial_hours_once(), _invalid_query_is_400():
        query = _metric_query(request)
        page = pages.overview_page(query)
    return _render_page(
        request, "dashboard/overview.html", page, {"traces_query": _traces_query(request, query)}
    )


@require_GET
@login_required(login_url=LOGIN_URL)
def micro_model(request: HttpRequest, name: str) -> HttpResponse:
    with metrics.partial_hours_once(), _invalid_query_is_400():
        query = _metric_query(request)
        page = pages.micro_model_page(
            query, name, request.GET.get("dimension"), request.GET.get("target")
        )
    return _render_page(
        request,
        "dashboard/micro_model.html",
        page,
        {
            "traces_query": _traces_query(request, query),
            "without_cohort_query": _without(request.GET, *_cohort_params(request.GET)),
        },
    )


def _cohort_params(params: QueryDict) -> list[str]:
    return [name for name in params if name.startswith(COHORT_PREFIX)]


@require_GET
@login_required(login_url=LOGIN_URL)
def cohorts(request: HttpRequest) -> HttpResponse:
    with metrics.partial_hours_once(), _invalid_query_is_400():
        query = _metric_query(request)
        page = pages.cohorts_page(query, request.GET.get("dimension"))
    return _render_page(
        request,
        "dashboard/cohorts.html",
        page,
        {
            "traces_query": _traces_query(request, query, cohort=False),
            # A cohort value's row opens the micro model page (or, with no micro model
            # filter, the overview) filtered to that cohort, over the same window.
            "page_query": _without(
                request.GET, "dimension", "micro_model", *_cohort_params(request.GET)
            ),
        },
    )


def _trace_query(request: HttpRequest) -> trace_search.TraceQuery:
    try:
        return trace_search.parse_trace_query(request.GET, visible_project_ids(request.user))
    except ProjectNotFound as exc:
        raise Http404(str(exc)) from exc
    except metrics.InvalidQuery as exc:
        raise BadRequest(str(exc)) from exc


# The filter bar's text fields: parameter, label, input size.
_TEXT_FIELDS = (
    ("service", "Service", 10),
    ("micro_model", "Micro model", 12),
    ("route", "Route", 8),
    ("model", "Model", 10),
    ("label", "Label", 8),
    ("expected_label", "Expected label", 8),
)


def _filter_bar(
    request: HttpRequest,
    project_ids: tuple[int, ...],
    window: tuple[datetime, datetime] | None = None,
) -> dict[str, Any]:
    """The filter bar's fields, values and suggestions; ``window`` is the search's (the
    newest traces of any time have none: their custom fields offer the last 24 h)."""
    params = request.GET
    offered = trace_search.suggestions(project_ids)
    ranges = trace_search.range_suggestions(project_ids, *(window or (None, None)))
    if window is None:
        now = timezone.now()
        window = (now - RANGES[DEFAULT_RANGE], now)
    fields = [
        {"name": name, "label": label, "size": size, "value": params.get(name, ""),
         "suggestions": offered.get(name, [])}
        for name, label, size in _TEXT_FIELDS
    ]  # fmt: skip
    fields += [
        {"name": COHORT_PREFIX + key, "label": display, "size": 8,
         "value": params.get(COHORT_PREFIX + key, ""),
         "suggestions": offered.get(COHORT_PREFIX + key, [])}
        for key, display in metrics.cohort_dimensions()
    ]  # fmt: skip
    return {
        "params": params,
        "fields": fields,
        "evaluators": offered["failed_evaluator"],
        "duration_suggestions": ranges["duration"],
        "cost_suggestions": ranges["cost"],
        "custom_start": window[0],
        "custom_end": window[1],
        "ranges": trace_search.range_names(),
        "query_string": params.urlencode(),
        "export_query": _without(params, "cursor", "before"),
    }


def _without(params: QueryDict, *names: str) -> str:
    kept = params.copy()
    for name in names:
        kept.pop(name, None)
    return kept.urlencode()


@require_GET
@login_required(login_url=LOGIN_URL)
def trace_list(request: HttpRequest) -> HttpResponse:
    """The Traces page: the newest traces as they arrive, or (with any filter but the
    project) a search of the folded facts in a time range (trace_search.py)."""
    if trace_search.is_search(request.GET):
        query = _trace_query(request)
        common_text = trace_search.text_is_common(query)
        with _invalid_query_is_400():
            found = trace_search.search_traces(
                query,
                cursor=request.GET.get("cursor") or None,
                size=PAGE_SIZE,
                common_text=common_text,
            )
        return render(
            request,
            "dashboard/trace_list.html",
            {
                **_filter_bar(request, query.project_ids, (query.start, query.end)),
                "search": found,
                "counts": trace_search.match_counts(query, common_text=common_text),
                "range_name": query.range_name,
                "start": query.start,
                "end": query.end,
                "base_query": _without(request.GET, "cursor"),
                "has_projects": bool(query.project_ids),
            },
        )
    project_ids = visible_project_ids(request.user)
    if request.GET.get("project"):
        project_ids = list(_trace_query(request).project_ids)
    try:
        page = trace_page(project_ids, cursor=request.GET.get("before") or None, size=PAGE_SIZE)
    except InvalidCursor as exc:
        raise BadRequest(str(exc)) from exc
    return render(
        request,
        "dashboard/trace_list.html",
        {
            **_filter_bar(request, tuple(project_ids)),
            "page": page,
            "paged": "before" in request.GET,
            "base_query": _without(request.GET, "before"),
            "has_projects": bool(project_ids),
            **_otlp_endpoints(),
        },
    )


EXPORT_COLUMNS = ("trace_id", "project_id", "start_time", "root_name", "service", "micro_model",
                  "route", "label", "expected_label", "fallback", "error", "duration_ms",
                  "prompt_tokens", "completion_tokens", "cost_usd", "unpriced_models",
                  "cohort")  # fmt: skip


def _export_record(row: trace_search.TraceRow) -> dict[str, Any]:
    return {
        "trace_id": row.trace_id,
        "project_id": row.project_id,
        "start_time": row.start_time.isoformat(),
        "root_name": row.root_name,
        "service": row.service_name,
        "micro_model": row.micro_model,
        "route": row.route,
        "label": row.label,
        "expected_label": row.expected_label,
        "fallback": row.is_fallback,
        "error": row.is_error,
        "duration_ms": row.duration_ms,
        "prompt_tokens": row.prompt_tokens,
        "completion_tokens": row.completion_tokens,
        "cost_usd": row.cost_usd,
        "unpriced_models": list(row.unpriced_models),
        "cohort": row.cohort,
    }


class _Echo:
    """A file whose write returns the line (csv.writer into a stream)."""

    def write(self, value: str) -> str:
        return value


def _csv_lines(rows: Iterator[trace_search.TraceRow]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(EXPORT_COLUMNS)
    for row in rows:
        record = _export_record(row)
        record["cohort"] = json.dumps(row.cohort, sort_keys=True)
        record["unpriced_models"] = " ".join(row.unpriced_models)
        yield writer.writerow(["" if record[c] is None else record[c] for c in EXPORT_COLUMNS])


def _json_chunks(rows: Iterator[trace_search.TraceRow], limit: int) -> Iterator[str]:
    yield f'{{"limit": {limit}, "traces": ['
    count = 0
    for count, row in enumerate(rows, 1):
        yield ("," if count > 1 else "") + "\n" + json.dumps(_export_record(row))
    truncated = "true" if count >= limit else "false"
    yield f'\n], "count": {count}, "truncated": {truncated}}}\n'


@require_GET
@login_required(login_url=LOGIN_URL)
def trace_export(request: HttpRequest, fmt: str) -> StreamingHttpResponse:
    """The filtered set of the Traces page (same parameters; the cursor is ignored) as CSV
    or JSON, newest first, at most EXPORT_LIMIT traces, streamed as it is read."""
    query = _trace_query(request)
    rows = trace_search.iter_traces(query, limit=EXPORT_LIMIT)
    if fmt == "csv":
        response = StreamingHttpResponse(_csv_lines(rows), content_type="text/csv; charset=utf-8")
    else:
        response = StreamingHttpResponse(
            _json_chunks(rows, EXPORT_LIMIT), content_type="application/json"
        )
    response["Content-Disposition"] = f'attachment; filename="traces.{fmt}"'
    return response


@require_GET
@login_required(login_url=LOGIN_URL)
def trace_detail(request: HttpRequest, trace_id: str) -> HttpResponse:
    project_ids = visible_project_ids(request.user)
    trace = get_trace(project_ids, trace_id)
    if trace is None:
        raise Http404("No such trace in your projects.")
    rows = span_tree(trace.spans)
    decisions = [s for s in trace.spans if s.micro_model]
    # The expected label counts the same whether the span carried it or feedback brought it.
    expected = expected_labels(
        trace.summary.project_id,
        trace.summary.trace_id,
        [(s.span_id, s.expected_label) for s in decisions],
    )
    # The feedback forms are per decision: no decision, no form, no read.
    given = trace_feedback(trace.summary.project_id, trace.summary.trace_id) if decisions else {}
    costs = cost_breakdown(trace.spans)
    return render(
        request,
        "dashboard/trace_detail.html",
        {
            "trace": trace.summary,
            "rows": rows,
            "details": [(row, span_chat(row.span)) for row in rows],
            "waterfall": waterfall_figure(rows),
            "decisions": [(s, expected.get(s.span_id)) for s in decisions],
            "feedback_forms": [
                (s, expected.get(s.span_id), given.get(s.span_id)) for s in decisions
            ],
            "trace_feedback": given.get(""),
            "evaluations": evaluations_by_span(project_ids, trace.summary.trace_id),
            "costs": costs,
            # The priced part, with the models left out named beside it.
            "total_cost": sum(c.cost_usd for c in costs if c.cost_usd is not None),
            "unpriced_models": sorted({c.model for c in costs if c.cost_usd is None}),
        },
    )


# Served from here rather than a CDN (installs may be offline). The URL carries the plotly
# version, so the file can be cached for good.
@require_GET
@cache_control(public=True, max_age=365 * 24 * 3600, immutable=True)
def plotly_js(request: HttpRequest) -> FileResponse:
    return FileResponse(PLOTLY_JS.open("rb"), content_type="text/javascript; charset=utf-8")
