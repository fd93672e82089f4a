"""Dashboard pages: parse the request, call one query, render one template."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import plotly
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import BadRequest
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import Resolver404
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET
from django.views.defaults import page_not_found

from evaluators.queries import (
    evaluations_by_span,
    expected_labels,
    list_evaluations,
    trace_feedback,
)
from tracestore.queries import get_trace

from . import metrics, pages
from .access import visible_project_ids
from .charts import waterfall_figure
from .chat import span_chat
from .metric_filters import MetricQuery, ProjectNotFound, parse_metric_query
from .metrics.pricing import cost_breakdown
from .pagination import InvalidCursor, trace_page
from .span_tree import span_tree

PAGE_SIZE = 50
LOGIN_URL = "dashboard:login"
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


# Query parameters that switch the traces page from "recent" to a search of metric facts.
TRACE_FILTERS = ("micro_model", "route", "model", "label", "fallback", "status", "min_ms",
                 "min_cost", "failed", "range", "start", "end")  # fmt: skip


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


def _render_page(request: HttpRequest, template: str, page: pages.Page) -> HttpResponse:
    return render(
        request,
        template,
        {
            **page.context,
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


@require_GET
@login_required(login_url=LOGIN_URL)
def overview(request: HttpRequest) -> HttpResponse:
    with metrics.partial_hours_once(), _invalid_query_is_400():
        page = pages.overview_page(_metric_query(request))
    return _render_page(request, "dashboard/overview.html", page)


@require_GET
@login_required(login_url=LOGIN_URL)
def micro_model(request: HttpRequest, name: str) -> HttpResponse:
    with metrics.partial_hours_once(), _invalid_query_is_400():
        page = pages.micro_model_page(
            _metric_query(request), name, request.GET.get("dimension"), request.GET.get("target")
        )
    return _render_page(request, "dashboard/micro_model.html", page)


@require_GET
@login_required(login_url=LOGIN_URL)
def cohorts(request: HttpRequest) -> HttpResponse:
    with metrics.partial_hours_once(), _invalid_query_is_400():
        page = pages.cohorts_page(_metric_query(request), request.GET.get("dimension"))
    return _render_page(request, "dashboard/cohorts.html", page)


def _search_traces(request: HttpRequest) -> HttpResponse:
    query = _metric_query(request)
    params = request.GET
    try:
        min_ms = float(params["min_ms"]) if params.get("min_ms") else None
        min_cost = float(params["min_cost"]) if params.get("min_cost") else None
    except ValueError as exc:
        raise BadRequest("min_ms and min_cost are numbers") from exc
    trace_ids = None
    if params.get("failed"):
        trace_ids = failed_trace_ids(query, params.get("failed") or "")
    rows = metrics.find_traces(
        query.filters,
        label=params.get("label") or None,
        fallback={"yes": True, "no": False}.get(params.get("fallback", "")),
        error={"error": True, "ok": False}.get(params.get("status", "")),
        min_duration_ms=min_ms,
        min_cost_usd=min_cost,
        trace_ids=trace_ids,
        limit=PAGE_SIZE,
    )
    return render(
        request,
        "dashboard/trace_search.html",
        {
            "rows": rows,
            "params": params,
            "filters": query.filters,
            "range_name": query.range_name,
            "ranges": pages.RANGES,
            "dimensions": metrics.cohort_dimensions(),
            "query_string": params.urlencode(),
        },
    )


def failed_trace_ids(query: MetricQuery, evaluator: str) -> list[str]:
    page = list_evaluations(
        list(query.filters.project_ids),
        limit=500,
        micro_model=query.filters.micro_model,
        evaluator=None if evaluator in ("any", "1", "yes") else evaluator,
        passed=False,
        start=query.filters.start,
        end=query.filters.end,
    )
    return sorted({view.trace_id for view in page.results})


@require_GET
@login_required(login_url=LOGIN_URL)
def trace_list(request: HttpRequest) -> HttpResponse:
    if any(request.GET.get(key) for key in TRACE_FILTERS) or any(
        key.startswith("cohort.") for key in request.GET
    ):
        with _invalid_query_is_400():
            return _search_traces(request)
    service = request.GET.get("service", "").strip()
    project_ids = visible_project_ids(request.user)
    try:
        page = trace_page(
            project_ids,
            cursor=request.GET.get("before") or None,
            size=PAGE_SIZE,
            service=service,
        )
    except InvalidCursor as exc:
        raise BadRequest(str(exc)) from exc
    return render(
        request,
        "dashboard/trace_list.html",
        {
            "page": page,
            "service": service,
            "paged": "before" in request.GET,
            "has_projects": bool(project_ids),
            **_otlp_endpoints(),
        },
    )


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
