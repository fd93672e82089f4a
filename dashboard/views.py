"""Dashboard pages: parse the request, call one query, render one template."""

from __future__ import annotations

from pathlib import Path

import plotly
from django.contrib.auth.decorators import login_required
from django.core.exceptions import BadRequest
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET

from tracestore.queries import get_trace

from .access import visible_project_ids
from .charts import waterfall_figure
from .pagination import InvalidCursor, trace_page
from .span_tree import span_tree

PAGE_SIZE = 50
LOGIN_URL = "dashboard:login"
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
# Where exporters send traces (the receiver's default port), for the empty state.
OTLP_GRPC_ENDPOINT = "localhost:4317"


@require_GET
@login_required(login_url=LOGIN_URL)
def trace_list(request: HttpRequest) -> HttpResponse:
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
            "otlp_endpoint": OTLP_GRPC_ENDPOINT,
        },
    )


@require_GET
@login_required(login_url=LOGIN_URL)
def trace_detail(request: HttpRequest, trace_id: str) -> HttpResponse:
    trace = get_trace(visible_project_ids(request.user), trace_id)
    if trace is None:
        raise Http404("No such trace in your projects.")
    rows = span_tree(trace.spans)
    return render(
        request,
        "dashboard/trace_detail.html",
        {"trace": trace.summary, "rows": rows, "waterfall": waterfall_figure(rows)},
    )


# Served from here rather than a CDN (installs may be offline). The URL carries the plotly
# version, so the file can be cached for good.
@require_GET
@cache_control(public=True, max_age=365 * 24 * 3600, immutable=True)
def plotly_js(request: HttpRequest) -> FileResponse:
    return FileResponse(PLOTLY_JS.open("rb"), content_type="text/javascript; charset=utf-8")
