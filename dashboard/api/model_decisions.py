"""``/api/v1/micro-models/<name>/shadow/`` and ``.../thresholds/``: what a micro model's
decisions say about a candidate (shadow agreement) and about its confidence threshold."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import metrics
from ..access import visible_project_ids
from ..metric_filters import ProjectNotFound, parse_metric_query
from ..metrics.shadow import shadow_agreement
from ..metrics.thresholds import parse_target, threshold_table
from .serializers import ErrorSerializer

_PARAMS = ("start", "end", "range", "project", "cohort.<key>", "group_by")

_PARAMETERS = [
    OpenApiParameter("name", str, OpenApiParameter.PATH, description="The live micro model."),
    OpenApiParameter("start", OpenApiTypes.DATETIME, description="Default: end - 24 h."),
    OpenApiParameter("end", OpenApiTypes.DATETIME, description="Default: now."),
    OpenApiParameter(
        "range", str, enum=["1h", "24h", "7d", "30d"], description="Instead of start."
    ),
    OpenApiParameter("project", int, description="One of your projects (default: all)."),
    OpenApiParameter("cohort.<key>", str, description="One cohort filter."),
    OpenApiParameter(
        "group_by",
        str,
        description="A cohort dimension key: one row per value besides the overall row"
        ' (cohort "").',
    ),
]


def _query(request: Request, name: str) -> tuple[metrics.Filters, str | None]:
    try:
        query = parse_metric_query(request.query_params, visible_project_ids(request.user))
    except ProjectNotFound as exc:
        raise exceptions.NotFound(str(exc)) from exc
    except metrics.InvalidQuery as exc:
        raise exceptions.ValidationError({"query": [str(exc)]}) from exc
    dimension = query.group_by
    if dimension is not None and dimension not in {k for k, _ in metrics.cohort_dimensions()}:
        raise exceptions.ValidationError(
            {"group_by": [f"{dimension!r} is not a cohort dimension."]}
        )
    return query.filters.with_(micro_model=name), dimension


def _answer(filters: metrics.Filters, dimension: str | None, body: Mapping[str, Any]) -> Response:
    return Response(
        {
            "micro_model": filters.micro_model,
            "start": filters.start.isoformat(),
            "end": filters.end.isoformat(),
            "group_by": dimension,
            **body,
        }
    )


class ShadowAgreementView(APIView):
    query_params = _PARAMS

    @extend_schema(
        operation_id="micro_models_shadow_retrieve",
        summary="Shadow vs live agreement of the candidates mirroring a micro model",
        parameters=_PARAMETERS,
        responses={200: OpenApiTypes.OBJECT, 400: ErrorSerializer, 401: ErrorSerializer},
    )
    def get(self, request: Request, name: str) -> Response:
        filters, dimension = _query(request, name)
        try:
            rows = shadow_agreement(filters, dimension)
        except metrics.InvalidQuery as exc:
            raise exceptions.ValidationError({"query": [str(exc)]}) from exc
        return _answer(filters, dimension, {"results": rows})


class ThresholdsView(APIView):
    query_params = (*_PARAMS, "target")

    @extend_schema(
        operation_id="micro_models_thresholds_retrieve",
        summary="Confidence thresholds: accuracy kept, share escalated, cost per 1,000",
        parameters=[
            *_PARAMETERS,
            OpenApiParameter(
                "target",
                str,
                description="Target accuracy of the decisions kept: 0.95 or 95% (default).",
            ),
        ],
        responses={200: OpenApiTypes.OBJECT, 400: ErrorSerializer, 401: ErrorSerializer},
    )
    def get(self, request: Request, name: str) -> Response:
        filters, dimension = _query(request, name)
        try:
            table = threshold_table(
                filters, parse_target(request.query_params.get("target")), dimension
            )
        except metrics.InvalidQuery as exc:
            raise exceptions.ValidationError({"query": [str(exc)]}) from exc
        return _answer(filters, dimension, table)
