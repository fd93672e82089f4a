"""Spans through the API: the micro-model decision spans across traces (a search over the
decision facts, then the spans themselves from tracestore), a trace's spans, one span."""

from __future__ import annotations

import re
from dataclasses import asdict
from datetime import datetime
from typing import Any, cast

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param
from rest_framework.views import APIView

from evaluators.queries import (
    evaluations_by_span,
    evaluations_for_spans,
    expected_labels_of_spans,
)
from tracestore.cursors import InvalidCursor, decode_cursor, encode_cursor
from tracestore.queries import get_span, get_spans, get_trace

from .. import metrics
from ..access import visible_project_ids
from ..metric_filters import QUERY_PARAMS, ProjectNotFound, parse_metric_query
from .metrics import _PARAMETERS
from .serializers import ErrorSerializer, SpanSerializer
from .views import TRACE_ID_PATH

_ERRORS = {401: ErrorSerializer, 403: ErrorSerializer}
# The key of the last decision on the previous page, by the shared codec.
_CURSOR_KIND = "spans"
_CURSOR_SHAPE = (datetime, re.compile(r"[0-9a-f]{32}"), re.compile(r"[0-9a-f]{16}"), int)


class SpanPageSerializer(serializers.Serializer):
    next = serializers.URLField(allow_null=True, help_text="The next (older) page, or null.")
    results = SpanSerializer(many=True)


class SpanListSerializer(serializers.Serializer):
    results = SpanSerializer(many=True)


class SpanQuerySerializer(serializers.Serializer):
    cursor = serializers.CharField(required=False, help_text="From the previous page's `next`.")
    trace_id = serializers.RegexField(r"^[0-9a-fA-F]{32}$", required=False)
    label = serializers.CharField(required=False, help_text="The micro model's predicted label.")  # type: ignore[assignment]  # a field named like a Field attribute
    fallback = serializers.BooleanField(required=False, allow_null=True, default=None)
    error = serializers.BooleanField(required=False, allow_null=True, default=None)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=200, default=50)


def _encode(key: metrics.DecisionKey) -> str:
    return encode_cursor(_CURSOR_KIND, (key.trace_start, key.trace_id, key.span_id, key.project_id))


def _decode(cursor: str) -> metrics.DecisionKey:
    try:
        at, trace_id, span_id, project_id = decode_cursor(cursor, _CURSOR_KIND, _CURSOR_SHAPE)
    except InvalidCursor as exc:
        raise exceptions.ValidationError({"cursor": [str(exc)]}) from exc
    # The shape has checked each value's type.
    return metrics.DecisionKey(
        cast(int, project_id), cast(str, trace_id), cast(str, span_id), cast(datetime, at)
    )


def _with_evaluations(views: list[Any], evaluations: dict) -> list[dict[str, Any]]:
    """Spans with their evaluations, and their expected label as LabelCheck and label
    quality count it (the span's attribute, or feedback) with its source."""
    expected = expected_labels_of_spans(
        [(v.project_id, v.trace_id, v.span_id, v.expected_label) for v in views]
    )
    out = []
    for view in views:
        label = expected.get((view.project_id, view.trace_id, view.span_id))
        out.append(
            {
                **asdict(view),
                "expected_label": label.label if label else None,
                "expected_label_source": label.source if label else None,
                "evaluations": evaluations.get((view.trace_id, view.span_id), []),
            }
        )
    return out


class SpanListView(APIView):
    query_params = (
        *(p for p in QUERY_PARAMS if p not in ("group_by", "interval")),
        *("cursor", "trace_id", "label", "fallback", "error", "limit"),
    )

    @extend_schema(
        operation_id="spans_list",
        summary="Micro-model decision spans across traces, newest trace first",
        description=(
            "The spans microlens judges: each micro-model decision whose trace started in"
            " range (as the metrics count it), with its evaluations, filtered like the"
            " metrics. Listed once the dashboard's minute fold has seen the trace. All of"
            " a trace's spans: `/api/v1/traces/<trace_id>/spans/`."
        ),
        parameters=[
            *(p for p in _PARAMETERS if p.name not in ("name", "group_by", "interval")),
            SpanQuerySerializer,
        ],
        responses={200: SpanPageSerializer, 400: ErrorSerializer, **_ERRORS},
    )
    def get(self, request: Request) -> Response:
        query = SpanQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        data = query.validated_data
        try:
            parsed = parse_metric_query(request.query_params, visible_project_ids(request.user))
        except ProjectNotFound as exc:
            raise exceptions.NotFound(str(exc)) from exc
        except metrics.InvalidQuery as exc:
            raise exceptions.ValidationError({"query": [str(exc)]}) from exc
        keys = metrics.find_decisions(
            parsed.filters,
            label=data.get("label"),
            fallback=data.get("fallback"),
            error=data.get("error"),
            trace_id=data["trace_id"].lower() if data.get("trace_id") else None,
            before=_decode(data["cursor"]) if data.get("cursor") else None,
            limit=data["limit"] + 1,
        )
        page, more = keys[: data["limit"]], len(keys) > data["limit"]
        views = get_spans([(k.project_id, k.trace_id, k.span_id, k.trace_start) for k in page])
        evaluations = evaluations_for_spans(
            list(parsed.filters.project_ids), [(v.trace_id, v.span_id) for v in views]
        )
        next_url = (
            replace_query_param(request.build_absolute_uri(), "cursor", _encode(page[-1]))
            if more
            else None
        )
        body = {"next": next_url, "results": _with_evaluations(views, evaluations)}
        return Response(SpanPageSerializer(body).data)


class TraceSpanListView(APIView):
    @extend_schema(
        operation_id="trace_spans_list",
        summary="Every span of one trace, by start time, with their evaluations",
        parameters=[TRACE_ID_PATH],
        responses={200: SpanListSerializer, 404: ErrorSerializer, **_ERRORS},
    )
    def get(self, request: Request, trace_id: str) -> Response:
        trace = get_trace(visible_project_ids(request.user), trace_id)
        if trace is None:
            raise exceptions.NotFound("No trace with this id in your projects.")
        by_span = evaluations_by_span([trace.summary.project_id], trace.summary.trace_id)
        evaluations = {(trace.summary.trace_id, s): v for s, v in by_span.items()}
        return Response(
            SpanListSerializer({"results": _with_evaluations(trace.spans, evaluations)}).data
        )


class SpanDetailView(APIView):
    @extend_schema(
        operation_id="spans_retrieve",
        summary="One span with its evaluations",
        parameters=[
            TRACE_ID_PATH,
            OpenApiParameter(
                "span_id",
                str,
                OpenApiParameter.PATH,
                description="The span id, 16 hex characters (case-insensitive).",
                pattern="^[0-9a-fA-F]{16}$",
            ),
        ],
        responses={200: SpanSerializer, 404: ErrorSerializer, **_ERRORS},
    )
    def get(self, request: Request, trace_id: str, span_id: str) -> Response:
        span = get_span(visible_project_ids(request.user), trace_id, span_id)
        if span is None:
            raise exceptions.NotFound("No span with these ids in your projects.")
        evaluations = evaluations_for_spans([span.project_id], [(span.trace_id, span.span_id)])
        return Response(SpanSerializer(_with_evaluations([span], evaluations)[0]).data)
