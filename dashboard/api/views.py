"""API views: parse, call one query, serialise. Errors go through errors.py."""

from __future__ import annotations

from dataclasses import asdict

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param
from rest_framework.views import APIView

from evaluators.queries import evaluations_by_span, expected_labels
from tracestore.cursors import InvalidCursor
from tracestore.queries import get_trace

from ..access import visible_project_ids
from ..pagination import trace_page
from .serializers import (
    ErrorSerializer,
    TraceDetailSerializer,
    TraceListQuerySerializer,
    TracePageSerializer,
)

_ERRORS = {401: ErrorSerializer, 403: ErrorSerializer}
TRACE_ID_PATH = OpenApiParameter(
    "trace_id",
    str,
    OpenApiParameter.PATH,
    description="The trace id, 32 hex characters (case-insensitive).",
    pattern="^[0-9a-fA-F]{32}$",
)


class TraceListView(APIView):
    query_params = ("cursor", "service", "limit")

    @extend_schema(
        operation_id="traces_list",
        summary="Recent traces, newest first",
        parameters=[TraceListQuerySerializer],
        responses={200: TracePageSerializer, 400: ErrorSerializer, **_ERRORS},
    )
    def get(self, request: Request) -> Response:
        query = TraceListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        try:
            page = trace_page(
                visible_project_ids(request.user),
                cursor=query.validated_data.get("cursor"),
                size=query.validated_data["limit"],
                service=query.validated_data.get("service"),
            )
        except InvalidCursor as exc:
            raise exceptions.ValidationError({"cursor": [str(exc)]}) from exc
        next_url = (
            replace_query_param(request.build_absolute_uri(), "cursor", page.next_cursor)
            if page.next_cursor
            else None
        )
        return Response(TracePageSerializer({"next": next_url, "results": page.traces}).data)


class TraceDetailView(APIView):
    @extend_schema(
        operation_id="traces_retrieve",
        summary="One trace with all its spans",
        parameters=[TRACE_ID_PATH],
        responses={200: TraceDetailSerializer, 404: ErrorSerializer, **_ERRORS},
    )
    def get(self, request: Request, trace_id: str) -> Response:
        trace = get_trace(visible_project_ids(request.user), trace_id)
        if trace is None:
            raise exceptions.NotFound("No trace with this id in your projects.")
        evaluations = evaluations_by_span([trace.summary.project_id], trace.summary.trace_id)
        expected = expected_labels(
            trace.summary.project_id,
            trace.summary.trace_id,
            [(span.span_id, span.expected_label) for span in trace.spans],
        )
        spans = []
        for span in trace.spans:
            label = expected.get(span.span_id)
            spans.append(
                {
                    **asdict(span),
                    "expected_label": label.label if label else None,
                    "expected_label_source": label.source if label else None,
                    "evaluations": evaluations.get(span.span_id, []),
                }
            )
        return Response(TraceDetailSerializer({"summary": trace.summary, "spans": spans}).data)
